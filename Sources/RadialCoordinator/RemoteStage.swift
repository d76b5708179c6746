import Metrics
import RadialModel
import RadialProtocol
import RadialRPC
import Synchronization

/// Failover settings of remote stages.
public struct FailoverPolicy: Sendable {
    /// How long a stage waits for some worker of its range to answer when none does (a restarting worker).
    public var wait: Duration = .seconds(30)
    /// Bytes of hidden-state history all sessions may keep per stage for replay; a session past it loses its
    /// history (and with it failover) rather than the process its memory.
    public var maxHistoryBytes = 1 << 30
    /// Where failovers are reported (the coordinator's log).
    public var log: @Sendable (String) -> Void = { _ in }
    public init() {}
}

/// A layer range served by one or more workers (replicas) over gRPC, with the handshake this coordinator made with
/// them and the K/V and routing policy it settles with each (Configure, once per worker lifetime: a Forward names
/// the policy by the id the worker answered).
///
/// Each session lives on one replica (new sessions go to the one holding the fewest). The stage keeps, per
/// session, the rows it sent (hidden state in, layers run) in the groups they were computed in. When a call fails
/// because its worker is gone, timed out, restarted and lost the session, or was replaced by something else,
/// the stage rebuilds each of the call's sessions on a live replica — or on the same worker once it answers
/// again, waiting up to `FailoverPolicy.wait` — with one RestoreSession for all of them, and sends the call again.
/// Replay computes every row exactly as it first was, so the output equals a fault-free run.
public final class RemoteStage: Stage {
    public let clients: [WorkerClient]
    let handshake: Handshake
    let policy: StagePolicy
    let timeout: Duration
    let failover: FailoverPolicy
    let expect: StageIdentity
    private let state = Mutex(State())

    /// What one session sent this stage: rows in order, cut into the calls they were computed in.
    struct History {
        var rows: [TokenEntry] = []      // layers: nil all, [] a fill, else those run
        var hidden: [Float] = []
        /// Per call: rows of this session in it, and whether the whole call was wider than the decode kernels'
        /// row limit (then it ran sgemm, and replay must use exactly this group to get the same bits).
        var calls: [(rows: Int, wide: Bool)] = []
        var bytes: Int { hidden.count * MemoryLayout<Float>.size }
    }

    struct State {
        var assignment: [UInt64: Int] = [:]
        var histories: [UInt64: History] = [:]
        var historyBytes = 0
        /// Sessions whose history was dropped (over the budget): they cannot fail over.
        var unrecoverable: Set<UInt64> = []
        var failovers = 0
        /// Per replica: the id its worker gave this stage's policy (Configure).
        var policyIDs: [Int: UInt64] = [:]
    }

    public init(clients: [WorkerClient], handshake: Handshake, policy: StagePolicy, timeout: Duration,
                failover: FailoverPolicy = FailoverPolicy()) {
        precondition(!clients.isEmpty && clients.allSatisfy { $0.layers == clients[0].layers }, "replicas serve one range")
        self.clients = clients
        self.handshake = handshake
        self.policy = policy
        self.timeout = timeout
        self.failover = failover
        let info = clients[0].info
        expect = StageIdentity(layers: info.layers, activations: info.activations.isEmpty ? "f32" : info.activations,
                               routerFingerprint: info.routerFingerprint)
    }

    public var layers: LayerRange { clients[0].layers }
    public var name: String { clients.map(\.address).joined(separator: "|") }
    var dim: Int { Int(clients[0].info.hiddenSize) }

    /// Failovers so far, and the bytes of history kept (Status).
    public var failoverCount: Int { state.withLock { $0.failovers } }
    public var historyBytes: Int { state.withLock { $0.historyBytes } }

    /// Settles the policy with every worker of the range now (at start-up, so a refusal stops the coordinator
    /// before it serves); later a worker that restarted is settled again as part of its failover.
    public func settle() async throws {
        for c in clients.indices { _ = try await policyID(c) }
    }

    /// The id `clients[c]` gave this stage's policy, settling it first when it has none (or `again`).
    private func policyID(_ c: Int, again: Bool = false) async throws -> UInt64 {
        if !again, let id = state.withLock({ $0.policyIDs[c] }) { return id }
        let reply = try await clients[c].channel.unary(Method.workerConfigure, ConfigureRequest(handshake: handshake, expect: expect, policy: policy),
                                                      response: ConfigureReply.self, options: CallOptions(timeout: .seconds(10)))
        state.withLock { $0.policyIDs[c] = reply.policyID }
        return reply.policyID
    }

    /// Asks each replica in turn whether it holds the session; the one that does keeps it. Its history before now
    /// is not here, so it cannot fail over (like a session over the history budget).
    public func adopt(session: UInt64, positions: Int) async -> Bool {
        for (i, client) in clients.enumerated() {
            let request = AdoptSessionRequest(handshake: handshake, sessionID: session, positions: positions)
            if (try? await client.channel.unary(Method.workerAdoptSession, request, response: AdoptSessionReply.self,
                                                 options: CallOptions(timeout: .seconds(10)))) != nil {
                state.withLock { s in
                    s.assignment[session] = i
                    s.unrecoverable.insert(session)
                }
                return true
            }
        }
        return false
    }

    public func forward(_ batch: StageBatch) async throws -> StageOutput {
        // Split the batch by the replica each session lives on (one call per replica, concurrently).
        let sessions = Set(batch.tokens.map(\.sessionID) + batch.fills.map(\.sessionID))
        let placed = state.withLock { s -> [UInt64: Int] in
            var load = Array(repeating: 0, count: clients.count)
            for (_, c) in s.assignment { load[c] += 1 }
            for id in sessions.sorted() where s.assignment[id] == nil {
                let healthy = clients.indices.filter { clients[$0].snapshot().healthy }
                let c = (healthy.isEmpty ? Array(clients.indices) : healthy).min { load[$0] < load[$1] }!
                s.assignment[id] = c
                load[c] += 1
            }
            return s.assignment.filter { sessions.contains($0.key) }
        }
        let replicas = Set(placed.values)
        if replicas.count == 1 { return try await send(batch, from: replicas.first!) }
        var parts: [(replica: Int, tokens: [Int], batch: StageBatch)] = []
        for r in replicas.sorted() {
            let tokens = batch.tokens.indices.filter { placed[batch.tokens[$0].sessionID] == r }
            let fills = batch.fills.indices.filter { placed[batch.fills[$0].sessionID] == r }
            parts.append((r, tokens, StageBatch(tokens: tokens.map { batch.tokens[$0] }, hidden: Pipeline.gather(batch.hidden, tokens, dim),
                                                fills: fills.map { batch.fills[$0] }, fillHidden: Pipeline.gather(batch.fillHidden, fills, dim))))
        }
        let outputs = try await withThrowingTaskGroup(of: (Int, StageOutput).self) { group in
            for (i, p) in parts.enumerated() { group.addTask { (i, try await self.send(p.batch, from: p.replica)) } }
            var out: [Int: StageOutput] = [:]
            for try await (i, o) in group { out[i] = o }
            return out
        }
        var hidden = [Float](repeating: 0, count: batch.tokens.count * dim)
        var layersRun = Array(repeating: LayerSet(), count: batch.tokens.count)
        for (i, p) in parts.enumerated() {
            let o = outputs[i]!
            for (j, t) in p.tokens.enumerated() {
                hidden[(t * dim)..<((t + 1) * dim)] = o.hidden[(j * dim)..<((j + 1) * dim)]
                layersRun[t] = o.layersRun[j]
            }
        }
        return StageOutput(hidden: hidden, layersRun: layersRun)
    }

    /// One call to the replica holding these sessions; on a worker failure, the sessions move (or wait) and the
    /// call is sent again, a few times at most.
    private func send(_ batch: StageBatch, from replica: Int) async throws -> StageOutput {
        var current = replica, attempt = 0
        while true {
            do {
                let out = try await call(current, batch)
                record(batch, out)
                return out
            } catch let error as RPCError where attempt < 4 && isWorkerFailure(error) {
                attempt += 1
                let sessions = Set(batch.tokens.map(\.sessionID) + batch.fills.map(\.sessionID))
                current = try await failOver(sessions, from: current, after: error)
            }
        }
    }

    private func call(_ replica: Int, _ batch: StageBatch) async throws -> StageOutput {
        let client = clients[replica]
        let request = ForwardRequest(handshake: handshake, tokens: batch.tokens, hidden: WireTensor(batch.hidden, shape: [batch.tokens.count, dim]),
                                     fills: batch.fills, fillHidden: WireTensor(batch.fillHidden, shape: [batch.fills.count, dim]),
                                     policyID: try await policyID(replica), expect: expect)
        let reply = try await client.forward(request, timeout: timeout)
        guard reply.hidden.shape == [batch.tokens.count, dim] else {
            throw RPCError(.internal, "worker \(client.address) answered \(reply.hidden.shape) for \(batch.tokens.count) rows of \(dim)")
        }
        guard reply.layersRun.isEmpty || reply.layersRun.count == batch.tokens.count else {
            throw RPCError(.internal, "worker \(client.address) reported layers for \(reply.layersRun.count) of \(batch.tokens.count) rows")
        }
        return StageOutput(hidden: reply.hidden.floats(),
                           layersRun: reply.layersRun.isEmpty ? Array(repeating: LayerSet.all(layers), count: batch.tokens.count)
                                                              : reply.layersRun.map { LayerSet($0) })
    }

    /// A failure that moving the sessions can cure: the worker is gone or slow, restarted without them (or without
    /// this stage's policy), or now serves something else.
    private func isWorkerFailure(_ e: RPCError) -> Bool {
        switch e.code {
        case .unavailable, .deadlineExceeded, .notFound: return true
        case .failedPrecondition:
            // A worker that now serves something else is only worth failing over from when a replica can take over;
            // alone, it is refused by name at once.
            return e.message.hasPrefix("session not held here") || e.message.hasPrefix("policy ")
                || (e.message.hasPrefix("this worker serves") && clients.count > 1)
        default: return false
        }
    }

    /// Rebuilds `sessions` on a live worker of this range (a replica, or the same worker once it is back) and
    /// returns its index. UNAVAILABLE when none answers within the failover wait.
    private func failOver(_ sessions: Set<UInt64>, from failed: Int, after error: RPCError) async throws -> Int {
        clients[failed].markUnhealthy()
        let lost = state.withLock { $0.unrecoverable.intersection(sessions) }
        if let id = lost.first {
            throw RPCError(.unavailable, "worker \(clients[failed].address) failed (\(error.code): \(error.message)) and session \(id) kept no history to rebuild (over the history budget, or adopted after a coordinator restart)")
        }
        let clock = ContinuousClock(), deadline = clock.now + failover.wait
        // The others first, the failed one last (it may be back: a restart).
        let order = Array(clients.indices.filter { $0 != failed }) + [failed]
        while true {
            var replaced: [String] = []
            for c in order {
                switch await check(clients[c]) {
                case .usable:
                    let started = clock.now
                    _ = try await policyID(c, again: true)
                    let rows = try await restore(sessions, on: clients[c])
                    failover.log("worker \(clients[failed].address) failed (\(error.code): \(error.message)); \(sessions.count) sessions (\(rows) rows) rebuilt on \(clients[c].address) in \(Int(((clock.now - started).seconds * 1000).rounded())) ms")
                    state.withLock { s in
                        for id in sessions { s.assignment[id] = c }
                        s.failovers += 1
                    }
                    Counter(label: "radial_failovers_total").increment()
                    Counter(label: "radial_sessions_rebuilt_total").increment(by: Int64(sessions.count))
                    return c
                case .serves(let other): replaced.append("worker \(clients[c].address) now serves \(other)")
                case .down: break
                }
            }
            // Every worker of the range answers as something else: refuse by name at once, nothing will come back.
            if replaced.count == clients.count {
                throw RPCError(.failedPrecondition, replaced.joined(separator: "; ") + "; the coordinator expects \(expect) (restart the coordinator to use the new layout)")
            }
            guard clock.now < deadline else {
                throw RPCError(.unavailable, "no worker for layers \(layers) answered within \(failover.wait) after \(clients[failed].address) failed (\(error.code): \(error.message))")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    enum Check { case usable, serves(StageIdentity), down }

    /// Whether a worker answers its handshake, and as the very worker this stage expects.
    private func check(_ client: WorkerClient) async -> Check {
        guard let info = await client.currentInfo(handshake: handshake, timeout: .seconds(1)) else { return .down }
        let identity = StageIdentity(layers: info.layers, activations: info.activations.isEmpty ? "f32" : info.activations,
                                     routerFingerprint: info.routerFingerprint)
        return identity == expect && info.handshake.modelFingerprint == handshake.modelFingerprint ? .usable : .serves(identity)
    }

    /// Replays the sessions' histories on `client` in one call. A session's rows keep their order; calls of up to
    /// the decode kernels' row limit are batch-invariant, so the sessions' narrow calls are packed together into
    /// batches of up to that many rows (a rebuild of many sessions then runs as few, full batches), while a wider
    /// call — one session's alone, the pipeline never mixes them — is replayed as exactly that group.
    /// Returns the rows replayed.
    private func restore(_ sessions: Set<UInt64>, on client: WorkerClient) async throws -> Int {
        let limit = Linear.quantizedMaxRows
        let histories = state.withLock { s in sessions.sorted().map { s.histories[$0] ?? History() } }
        // Per session: its rows cut into segments (merged narrow calls up to the limit, or one wide call).
        var queues: [[(start: Int, rows: Int, wide: Bool)]] = histories.map { h in
            var segments: [(start: Int, rows: Int, wide: Bool)] = [], at = 0
            for c in h.calls {
                if !c.wide, let last = segments.last, !last.wide, last.rows + c.rows <= limit {
                    segments[segments.count - 1].rows += c.rows
                } else {
                    segments.append((at, c.rows, c.wide))
                }
                at += c.rows
            }
            return segments
        }
        var rows: [TokenEntry] = [], hidden: [Float] = [], groups: [Int] = []
        func take(_ k: Int) {
            let seg = queues[k].removeFirst(), h = histories[k]
            rows += h.rows[seg.start..<(seg.start + seg.rows)]
            hidden += h.hidden[(seg.start * dim)..<((seg.start + seg.rows) * dim)]
        }
        while queues.contains(where: { !$0.isEmpty }) {
            var size = 0
            for k in queues.indices {
                while let seg = queues[k].first, !seg.wide, size + seg.rows <= limit {
                    take(k)
                    size += seg.rows
                }
            }
            if size == 0, let k = queues.firstIndex(where: { !$0.isEmpty }) {
                size = queues[k][0].rows
                take(k)
            }
            groups.append(size)
        }
        if rows.isEmpty { return 0 }
        let request = RestoreSessionRequest(handshake: handshake, history: rows, hidden: WireTensor(hidden, shape: [rows.count, dim]),
                                            kvPolicy: policy.kvPolicy, groupSizes: groups)
        _ = try await client.channel.unary(Method.workerRestoreSession, request, response: RestoreSessionReply.self,
                                           options: CallOptions(timeout: timeout))
        return rows.count
    }

    /// Keeps what a successful call sent, per session, for replay.
    private func record(_ batch: StageBatch, _ out: StageOutput) {
        let wide = batch.tokens.count + batch.fills.count > Linear.quantizedMaxRows
        state.withLock { s in
            var perSession: [UInt64: Int] = [:]
            // The worker computes fills first, then tokens: keep that order.
            for (j, f) in batch.fills.enumerated() where !s.unrecoverable.contains(f.sessionID) {
                s.histories[f.sessionID, default: History()].rows.append(TokenEntry(sessionID: f.sessionID, position: f.position, layers: []))
                s.histories[f.sessionID]!.hidden += batch.fillHidden[(j * dim)..<((j + 1) * dim)]
                perSession[f.sessionID, default: 0] += 1
            }
            for (j, t) in batch.tokens.enumerated() where !s.unrecoverable.contains(t.sessionID) {
                s.histories[t.sessionID, default: History()].rows.append(TokenEntry(sessionID: t.sessionID, position: t.position, layers: out.layersRun[j].sorted))
                s.histories[t.sessionID]!.hidden += batch.hidden[(j * dim)..<((j + 1) * dim)]
                perSession[t.sessionID, default: 0] += 1
            }
            for (id, n) in perSession {
                s.histories[id]!.calls.append((n, wide))
                s.historyBytes += n * dim * MemoryLayout<Float>.size
            }
            // Over budget: the newest-growing sessions lose their history (and failover) first.
            while s.historyBytes > failover.maxHistoryBytes, let (id, h) = s.histories.max(by: { $0.value.bytes < $1.value.bytes }) {
                s.historyBytes -= h.bytes
                s.histories[id] = nil
                s.unrecoverable.insert(id)
            }
        }
    }

    public func closeSessions(_ ids: [UInt64]) async {
        state.withLock { s in
            for id in ids {
                s.assignment[id] = nil
                if let h = s.histories.removeValue(forKey: id) { s.historyBytes -= h.bytes }
                s.unrecoverable.remove(id)
            }
        }
        // A session rebuilt elsewhere may linger on a worker that came back: tell every replica.
        await withTaskGroup(of: Void.self) { group in
            for c in clients { group.addTask { await c.closeSessions(ids, handshake: self.handshake) } }
        }
    }

    public func countSkipped(_ rows: Int) { clients[0].countSkipped(rows) }
}
