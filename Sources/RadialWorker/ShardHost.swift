import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import Synchronization

/// A shard and the K/V caches of the sessions it serves, in this process: what a worker computes with, without
/// the wire. `WorkerService` puts it behind radial.Worker; the coordinator's `LocalStage` holds one directly, so
/// the pipeline runs the very same code in-process (tests, `radial run` style tools) as across machines.
///
/// Model work and session-table changes hold `lock`, so a session's cache is advanced by one call at a time
/// whatever thread a call arrives on; `snapshot` reads counters without waiting for a batch.
public final class ShardHost: Sendable {
    public let shard: LlamaShard
    public let maxBatchTokens: Int
    /// Runs a token leaves through a fitted map when it skips them (the worker's router's).
    public let maps: [RunMap]
    private let lock = NSLock()
    // Touched only while holding `lock`.
    nonisolated(unsafe) private let store: SessionStore
    private let stats = Mutex(Snapshot())

    /// Counters and the session table's size, as Info reports them.
    public struct Snapshot: Sendable {
        public var counters = WorkerCounters()
        public var latency = LatencyWindow()
        public var sessions = 0
        public var kvUsedBytes = 0
    }

    /// What one batch produced: the rows' hidden states leaving the shard, and per row the layers it ran.
    public struct Output: Sendable {
        public var hidden: [Float]
        public var layersRun: [LayerSet]
        public var computeSeconds: Double
    }

    /// `maxSessionBytes`: K/V one session may hold (default: a quarter of `kvBudgetBytes`).
    public init(shard: LlamaShard, kvBudgetBytes: Int, sessionTTL: Duration, maxBatchTokens: Int, maxSessionBytes: Int? = nil,
                maps: [RunMap] = []) {
        self.shard = shard
        self.maps = maps
        self.maxBatchTokens = maxBatchTokens
        store = SessionStore(shard: shard, budgetBytes: kvBudgetBytes, ttl: sessionTTL, maxSessionBytes: maxSessionBytes)
    }

    public var snapshot: Snapshot { stats.withLock { $0 } }

    /// Runs `tokens` (hidden: tokens.count rows) through the shard after the deferred K/V `fills` (fillHidden:
    /// fills.count rows; they run no layer, only write K/V under `kvPolicy`). Errors are RPCErrors with the status
    /// a remote caller should see.
    public func forward(tokens: [TokenEntry], hidden: [Float], fills: [KVFillEntry], fillHidden: [Float],
                        kvPolicy: SkippedLayerKV, chooser: (any LayerChooser)?, owner: String? = nil) throws -> Output {
        let dim = shard.config.dim
        let rows = fills.count + tokens.count
        guard rows <= maxBatchTokens else {
            throw RPCError(.resourceExhausted, "a batch of \(rows) rows is over this worker's limit of \(maxBatchTokens)")
        }
        guard hidden.count == tokens.count * dim, fillHidden.count == fills.count * dim else {
            throw RPCError.invalidArgument("hidden states: \(hidden.count) and \(fillHidden.count) floats for \(tokens.count) tokens and \(fills.count) fills of \(dim)")
        }
        // A NaN or an infinity would spread through attention into every later token of the session.
        for (name, values) in [("hidden", hidden), ("fill_hidden", fillHidden)] {
            if let i = values.firstIndex(where: { !$0.isFinite }) {
                throw RPCError.invalidArgument("ForwardRequest.\(name): row \(i / dim) holds \(values[i]) (hidden states must be finite)")
            }
        }
        // One row per fill, then per token: fills are earlier positions of their sessions, which later rows attend
        // to. A fill runs no layer (empty set), only writes K/V under `kvPolicy`.
        var rowKeys = fills.map { (session: $0.sessionID, position: $0.position) }
        var plans: [(layers: LayerSet?, layersBefore: Int, routed: Bool)] = Array(repeating: (LayerSet(), 0, false), count: fills.count)
        for (i, t) in tokens.enumerated() {
            if let outside = t.layers?.first(where: { !shard.range.contains($0) }) {
                throw RPCError.invalidArgument("ForwardRequest.tokens[\(i)]: layer \(outside) is not on this worker (it holds \(shard.range))")
            }
            rowKeys.append((t.sessionID, t.position))
            plans.append((t.layers.map { LayerSet($0) }, t.layersBefore, t.routed))
        }
        let keys = rowKeys, rowPlans = plans
        let fillRows = fills.count
        let clock = ContinuousClock()
        let (seconds, ran, out) = try locked { () throws -> (Double, [LayerSet], [Float]) in
            let start = clock.now
            let caches = try store.caches(for: keys, owner: owner, contiguous: kvPolicy == .fill)
            let shardTokens = (0..<rows).map {
                ShardToken(cache: caches[$0], position: keys[$0].position, layers: rowPlans[$0].layers, layersBefore: rowPlans[$0].layersBefore,
                           routed: rowPlans[$0].routed)
            }
            // Fills and tokens in one buffer, computed in place (no fills: the request's own array, copied only
            // because the decoded request still shares it).
            var all = fills.isEmpty ? hidden : fillHidden + hidden
            let ran: [LayerSet]
            do {
                ran = try all.withUnsafeMutableBufferPointer {
                    try shard.forward($0.baseAddress!, tokens: shardTokens, kvPolicy: kvPolicy, chooser: chooser, maps: maps)
                }
            } catch let error as ModelError {
                throw RPCError.invalidArgument(error.description)
            }
            publishStore()
            return ((clock.now - start).seconds, Array(ran[fillRows...]), fillRows == 0 ? all : Array(all[(fillRows * dim)...]))
        }
        let runs = ran.reduce(0) { $0 + $1.count }
        stats.withLock { s in
            s.counters.forwardCalls += 1
            s.counters.tokens += UInt64(tokens.count)
            s.counters.kvFills += UInt64(fills.count)
            s.counters.layerRuns += UInt64(runs)
            s.counters.layerSkips += UInt64(tokens.count * shard.range.count - runs)
            s.counters.busySeconds += seconds
            s.latency.add(seconds)
        }
        return Output(hidden: out, layersRun: ran, computeSeconds: seconds)
    }

    /// Drops `owner`'s sessions among `ids`; returns how many it dropped and the bytes freed.
    public func close(_ ids: [UInt64], owner: String? = nil) -> (closed: Int, freed: Int) {
        locked {
            let result = store.close(ids, owner: owner)
            publishStore()
            return result
        }
    }

    /// Keeps the first `positions` positions of a session this shard still holds (see `SessionStore.adopt`).
    public func adopt(session: UInt64, positions: Int, owner: String? = nil) throws -> Int {
        try locked {
            let held = try store.adopt(session, positions: positions, owner: owner)
            publishStore()
            return held
        }
    }

    /// One row of a session's history at this shard: the position, and the layers it ran here (nil: all, empty: a
    /// deferred fill).
    public struct HistoryRow: Sendable {
        public var session: UInt64
        public var position: Int
        public var layers: [Int]?
        public init(session: UInt64, position: Int, layers: [Int]?) {
            self.session = session
            self.position = position
            self.layers = layers
        }
    }

    /// Rebuilds sessions from the hidden states that entered this shard at each of their positions (`history`,
    /// each session's rows in increasing position order), replayed in batches of `groups` rows (empty: at most
    /// `Linear.quantizedMaxRows` each). Up to that limit a row's result does not depend on its batch, so rows of
    /// several sessions may share a batch; a wider batch must be the very group first computed. Every row is then
    /// computed as it first was and the K/V come out bit for bit the same. Every session named is emptied first;
    /// on an error all of them are dropped. Returns the K/V bytes they hold.
    public func restore(history: [HistoryRow], hidden: [Float], kvPolicy: SkippedLayerKV, groups: [Int] = [],
                        owner: String? = nil) throws -> Int {
        let dim = shard.config.dim
        var sizes = groups
        if sizes.isEmpty {
            var left = history.count
            while left > 0 { sizes.append(min(left, Linear.quantizedMaxRows)); left -= sizes.last! }
        }
        guard sizes.reduce(0, +) == history.count, hidden.count == history.count * dim else {
            throw RPCError.invalidArgument("RestoreSession: \(history.count) rows, groups of \(sizes.reduce(0, +)), \(hidden.count / max(dim, 1)) hidden rows")
        }
        if let bad = hidden.firstIndex(where: { !$0.isFinite }) {
            throw RPCError.invalidArgument("RestoreSessionRequest.hidden: row \(bad / dim) holds \(hidden[bad]) (hidden states must be finite)")
        }
        var order: [UInt64] = []
        for r in history where !order.contains(r.session) { order.append(r.session) }
        return try locked { () throws -> Int in
            for id in order { try store.checkOwner(id, owner) }
            var caches: [UInt64: KVCache] = [:]
            for id in order { caches[id] = store.reset(id, owner: owner) }
            var start = 0
            for size in sizes {
                let part = history[start..<(start + size)]
                var rows = Array(hidden[(start * dim)..<((start + size) * dim)])
                let tokens = part.map { ShardToken(cache: caches[$0.session]!, position: $0.position, layers: $0.layers.map { LayerSet($0) }) }
                do {
                    _ = try rows.withUnsafeMutableBufferPointer { try shard.forward($0.baseAddress!, tokens: tokens, kvPolicy: kvPolicy, maps: maps) }
                } catch let error as ModelError {
                    _ = store.close(order, owner: owner)
                    publishStore()
                    throw RPCError.invalidArgument(error.description)
                }
                start += size
            }
            publishStore()
            return caches.values.reduce(0) { $0 + $1.bytes }
        }
    }

    /// Evicts sessions idle longer than the TTL.
    public func evictIdle() {
        locked {
            _ = store.evictIdle()
            publishStore()
        }
    }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Copies the session table's size into the snapshot (holding the lock).
    private func publishStore() {
        let sessions = store.count, used = store.usedBytes
        stats.withLock { $0.sessions = sessions; $0.kvUsedBytes = used }
    }
}
