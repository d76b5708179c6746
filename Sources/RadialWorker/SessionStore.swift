import RadialModel
import RadialRPC

/// The KV caches of the sessions a worker holds, within a byte budget; sessions idle longer than the TTL are
/// evicted. A session belongs to the client that created it (`owner`, the credential its calls carried): another
/// client can neither write to it, rebuild, adopt nor close it (PERMISSION_DENIED). Not thread-safe: `ShardHost`
/// touches it only while holding its lock.
final class SessionStore {
    private struct Entry {
        let cache: KVCache
        var lastUsed: ContinuousClock.Instant
        /// The principal that created it (nil: a server that tells no clients apart).
        let owner: String?
    }

    let budgetBytes: Int
    /// K/V one session may hold here: no single client can take the whole budget from the others.
    let maxSessionBytes: Int
    let ttl: Duration
    private let shard: LlamaShard
    private static let initialCapacity = 64
    private var sessions: [UInt64: Entry] = [:]
    /// Sessions closed or evicted recently, so a late request for one is NOT_FOUND with the reason instead of
    /// silently starting an empty cache (RestoreSession can rebuild it). Bounded.
    private var gone: [UInt64: String] = [:]
    private var goneOrder: [UInt64] = []

    /// `maxSessionBytes`: default a quarter of the budget.
    init(shard: LlamaShard, budgetBytes: Int, ttl: Duration, maxSessionBytes: Int? = nil) {
        self.shard = shard
        self.budgetBytes = budgetBytes
        self.maxSessionBytes = maxSessionBytes ?? budgetBytes / 4
        self.ttl = ttl
    }

    private func makeCache() -> KVCache { shard.makeCache(initialCapacity: Self.initialCapacity) }

    /// Bytes a new session's cache holds once it has room for `position` (the same doubling as KVCache).
    private func freshBytes(reserving position: Int) -> Int {
        var capacity = Self.initialCapacity
        while capacity <= position { capacity *= 2 }
        return KVCache.bytes(layers: shard.range.count, kvDim: shard.config.kvDim,
                             positions: min(capacity, shard.config.contextLength))
    }

    var count: Int { sessions.count }
    var usedBytes: Int { sessions.values.reduce(0) { $0 + $1.cache.bytes } }

    /// Why a Forward for a session cannot be computed here: FAILED_PRECONDITION messages start with this, so a
    /// coordinator can tell "rebuild the session" (RestoreSession) from other refusals.
    static let notHeld = "session not held here"

    /// Caches for a batch's rows (in row order), creating sessions seen for the first time, after checking that
    /// every row appends to its session and that the growth fits the budget. Nothing changes when it throws.
    /// `contiguous` (the `fill` policy, where every position reaches every shard as a token or a fill): a session's
    /// rows must continue exactly where it stands — a session this worker does not hold must start at position 0,
    /// and no position may be missing — or the attention would silently run over K/V that is not there (say,
    /// after this worker restarted between two steps). Under `mask` a shard legitimately never sees positions
    /// that skipped it, so only order is checked.
    func caches(for rows: [(session: UInt64, position: Int)], owner: String? = nil, contiguous: Bool = true) throws -> [KVCache] {
        let maxPositions = shard.config.contextLength
        var highest: [UInt64: Int] = [:]
        var positions: [UInt64: [(row: Int, position: Int)]] = [:]
        for (i, row) in rows.enumerated() {
            guard row.position < maxPositions else {
                throw RPCError(.outOfRange, "row \(i): position \(row.position) is beyond the context limit of \(maxPositions) tokens")
            }
            if let reason = gone[row.session], sessions[row.session] == nil {
                throw RPCError(.notFound, "session \(row.session) is not on this worker: \(reason)")
            }
            try checkOwner(row.session, owner)
            positions[row.session, default: []].append((i, row.position))
        }
        // A session's rows may come in any order (deferred fills beside the tokens that follow them), but they must
        // be distinct positions the session does not hold yet: the shard computes layer by layer, fills first.
        for (session, list) in positions {
            let sorted = list.sorted { $0.position < $1.position }
            let held = sessions[session]?.cache.length ?? 0
            if contiguous, let first = sorted.first, first.position != held {
                let why = sessions[session] == nil
                    ? "it starts at position \(first.position), not 0 (rebuild it with RestoreSession)"
                    : "it holds positions 0-\(held - 1) and the batch starts at \(first.position) (rebuild it with RestoreSession)"
                if first.position > held {
                    throw RPCError(.failedPrecondition, "\(Self.notHeld): row \(first.row): session \(session): \(why)")
                }
            }
            var minimum = held
            for entry in sorted {
                if contiguous && entry.position > minimum {
                    throw RPCError(.failedPrecondition, "\(Self.notHeld): row \(entry.row): session \(session) position \(entry.position) leaves a gap (position \(minimum) missing)")
                }
                guard entry.position >= minimum else {
                    let why = entry.position < held ? "is behind the session (it holds \(held) positions); rebuild it with RestoreSession"
                        : "appears twice in the batch"
                    throw RPCError(.failedPrecondition, "row \(entry.row): session \(session) position \(entry.position) \(why)")
                }
                minimum = entry.position + 1
            }
            highest[session] = sorted.last!.position
        }
        var growth = 0
        for (session, position) in highest {
            if let cache = sessions[session]?.cache {
                growth += cache.bytes(reserving: position) - cache.bytes
            } else {
                growth += freshBytes(reserving: position)
            }
        }
        let used = usedBytes
        if used + growth > budgetBytes {
            throw RPCError(.resourceExhausted,
                           "KV budget full: \(mib(budgetBytes)) MiB, \(sessions.count) sessions hold \(mib(used)) MiB, this batch needs \(mib(growth)) MiB more (close sessions or raise --kv-budget-mb)")
        }
        let perPosition = KVCache.bytes(layers: shard.range.count, kvDim: shard.config.kvDim, positions: 1)
        for (session, position) in highest where (position + 1) * perPosition > maxSessionBytes {
            throw RPCError(.resourceExhausted,
                           "session \(session) would hold \(position + 1) positions (\(mib((position + 1) * perPosition)) MiB of K/V) here, over the per-session cap of \(mib(maxSessionBytes)) MiB (--max-session-kv-mb)")
        }
        let now = ContinuousClock.now
        return rows.map { row in
            if sessions[row.session] == nil { sessions[row.session] = Entry(cache: makeCache(), lastUsed: now, owner: owner) }
            sessions[row.session]!.lastUsed = now
            return sessions[row.session]!.cache
        }
    }

    /// PERMISSION_DENIED when `session` exists and another client created it.
    func checkOwner(_ session: UInt64, _ owner: String?) throws {
        if let entry = sessions[session], entry.owner != owner {
            throw RPCError(.permissionDenied, "session \(session) belongs to another client of this worker")
        }
    }

    /// A fresh, empty cache for `session` (RestoreSession replaces whatever was there), owned by `owner`.
    func reset(_ session: UInt64, owner: String? = nil) -> KVCache {
        let cache = makeCache()
        sessions[session] = Entry(cache: cache, lastUsed: .now, owner: owner)
        gone[session] = nil
        return cache
    }

    /// Keeps a session's first `positions` positions for a coordinator that takes it over after a restart;
    /// returns how many it held. FAILED_PRECONDITION "session not held here" (nothing changes) when it holds fewer.
    func adopt(_ session: UInt64, positions: Int, owner: String? = nil) throws -> Int {
        try checkOwner(session, owner)
        guard let entry = sessions[session] else {
            throw RPCError(.failedPrecondition, "\(Self.notHeld): session \(session) is not on this worker")
        }
        let held = entry.cache.length
        guard held >= positions else {
            throw RPCError(.failedPrecondition, "\(Self.notHeld): session \(session) holds \(held) positions, not \(positions)")
        }
        entry.cache.truncate(to: positions)
        sessions[session]!.lastUsed = .now
        return held
    }

    /// Drops sessions (those of `owner`; others' are left alone); returns how many it dropped and the bytes freed.
    func close(_ ids: [UInt64], owner: String? = nil) -> (closed: Int, freed: Int) {
        var closed = 0, freed = 0
        for id in ids where sessions[id].map({ $0.owner == owner }) ?? true {
            if let entry = sessions.removeValue(forKey: id) {
                closed += 1
                freed += entry.cache.bytes
            }
            remember(id, "it was closed")
        }
        return (closed, freed)
    }

    /// Evicts sessions idle longer than the TTL; returns how many.
    func evictIdle(now: ContinuousClock.Instant = .now) -> Int {
        let stale = sessions.filter { now - $0.value.lastUsed > ttl }.map(\.key)
        for id in stale {
            sessions[id] = nil
            remember(id, "it was evicted after \(ttl) idle")
        }
        return stale.count
    }

    private func remember(_ id: UInt64, _ reason: String) {
        if gone.updateValue(reason, forKey: id) == nil { goneOrder.append(id) }
        if goneOrder.count > 4096 {
            gone[goneOrder.removeFirst()] = nil
        }
    }
}

func mib(_ bytes: Int) -> String {
    let m = Double(bytes) / 1_048_576
    return m >= 10 ? String(Int(m.rounded())) : String((m * 10).rounded() / 10)
}
