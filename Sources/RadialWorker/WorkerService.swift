import Foundation
import RadialModel
import RadialProtocol
import RadialRouter
import RadialRPC
import Synchronization

/// What a worker is: one model's shard, its identity on the wire, and its limits.
public struct WorkerConfig: Sendable {
    public var workerID: String
    public var kvBudgetBytes: Int
    public var sessionTTL: Duration
    /// Largest number of rows (tokens plus fills) one Forward may carry.
    public var maxBatchTokens: Int
    /// The protocol version this worker speaks (tests set another to check that coordinators refuse it).
    public var protocolVersion: UInt32 = ProtocolVersion.current

    public init(workerID: String, kvBudgetBytes: Int = 2 << 30, sessionTTL: Duration = .seconds(600), maxBatchTokens: Int = 4096) {
        self.workerID = workerID
        self.kvBudgetBytes = kvBudgetBytes
        self.sessionTTL = sessionTTL
        self.maxBatchTokens = maxBatchTokens
    }
}

/// radial.Worker: runs Forward batches through a shard, keeping each session's K/V for the shard's layers.
///
/// Forward runs inline on the server's completion-queue thread as the call arrives (no Task), not handed to another thread: a worker computes one
/// batch at a time anyway (its matmuls already use every core), and each hand-off costs a thread wake-up on the
/// token's critical path (measured: 0.5 ms per hop on loopback with two hand-offs, see README). Model work and
/// session-table changes hold `lock`, so a session's cache is advanced by one call at a time whatever thread a
/// call arrives on. Info reads a snapshot, so status never waits for a batch.
public final class WorkerService: Sendable {
    public let shard: LlamaShard
    public let config: WorkerConfig
    public let handshake: Handshake
    /// The router routed tokens consult, layer by layer (nil: this worker refuses routed tokens).
    public let router: Router?
    private let routerFingerprint: String
    private let lock = NSLock()
    // Touched only while holding `lock`.
    nonisolated(unsafe) private let store: SessionStore
    private let stats = Mutex(Stats())

    private struct Stats {
        var counters = WorkerCounters()
        var latency = LatencyWindow()
        var sessions = 0
        var kvUsedBytes = 0
    }

    public init(shard: LlamaShard, fingerprint: String, config: WorkerConfig, router: Router? = nil) {
        self.shard = shard
        self.config = config
        self.router = router
        routerFingerprint = router?.fingerprint ?? ""
        handshake = Handshake(protocolVersion: config.protocolVersion, modelFingerprint: fingerprint)
        store = SessionStore(shard: shard, budgetBytes: config.kvBudgetBytes, ttl: config.sessionTTL)
    }

    public func register(on server: RPCServer) {
        server.addUnarySync(Method.workerInfo, InfoRequest.self) { [self] request, _ in try info(request) }
        server.addUnarySync(Method.workerForward, ForwardRequest.self) { [self] request, _ in try forward(request) }
        server.addUnarySync(Method.workerCloseSession, CloseSessionRequest.self) { [self] request, _ in try closeSessions(request) }
        // A restore replays a whole history: long, and rare; off the I/O thread.
        server.addUnary(Method.workerRestoreSession, RestoreSessionRequest.self, offloaded: true) { [self] request, _ in
            try restore(request)
        }
    }

    /// Evicts idle sessions every quarter TTL until the task is cancelled.
    public func evictIdleSessions() async {
        let period = max(config.sessionTTL / 4, .milliseconds(100))
        while !Task.isCancelled {
            try? await Task.sleep(for: period)
            locked {
                _ = store.evictIdle()
                publishStore()
            }
        }
    }

    // MARK: - Methods

    func info(_ request: InfoRequest) throws -> WorkerInfo {
        // Info answers any peer (so a coordinator can say what is wrong), but names the mismatch in its reply.
        var info = WorkerInfo(handshake: handshake, workerID: config.workerID, layers: shard.range,
                              modelLayers: shard.config.layerCount, hiddenSize: shard.config.dim)
        let s = stats.withLock { $0 }
        info.kvBudgetBytes = UInt64(config.kvBudgetBytes)
        info.kvUsedBytes = UInt64(s.kvUsedBytes)
        info.sessions = s.sessions
        info.maxBatchTokens = config.maxBatchTokens
        info.rssBytes = ProcessMemory.residentBytes
        info.weightBytes = UInt64(shard.weightBytes)
        info.counters = s.counters
        info.routerFingerprint = routerFingerprint
        info.activations = QuantizedMatrix.activations.rawValue
        info.counters.forwardP50ms = s.latency.quantile(0.5) * 1000
        info.counters.forwardP99ms = s.latency.quantile(0.99) * 1000
        return info
    }

    func forward(_ request: ForwardRequest) throws -> ForwardReply {
        try request.handshake.check(against: handshake, peer: "the coordinator")
        let dim = shard.config.dim
        let rows = request.fills.count + request.tokens.count
        guard rows <= config.maxBatchTokens else {
            throw RPCError(.resourceExhausted, "a batch of \(rows) rows is over this worker's limit of \(config.maxBatchTokens)")
        }
        for (name, tensor) in [("hidden", request.hidden), ("fill_hidden", request.fillHidden)] where tensor.shape[0] > 0 {
            guard tensor.shape[1] == dim else {
                throw RPCError.invalidArgument("ForwardRequest.\(name): rows are \(tensor.shape[1]) wide, this model's hidden size is \(dim)")
            }
        }
        var plans: [LayerSet?] = Array(repeating: LayerSet(), count: request.fills.count)
        for (i, t) in request.tokens.enumerated() {
            if let layers = t.layers {
                if let outside = layers.first(where: { !shard.range.contains($0) }) {
                    throw RPCError.invalidArgument("ForwardRequest.tokens[\(i)]: layer \(outside) is not on this worker (it holds \(shard.range))")
                }
                plans.append(LayerSet(layers))
            } else {
                plans.append(nil)
            }
        }
        let chooser = try chooser(for: request)
        // Fills first: they are earlier positions of their sessions, which later rows attend to.
        let keys = request.fills.map { (session: $0.sessionID, position: $0.position) }
            + request.tokens.map { (session: $0.sessionID, position: $0.position) }
        let routed = Array(repeating: false, count: request.fills.count) + request.tokens.map(\.routed)
        let before = Array(repeating: 0, count: request.fills.count) + request.tokens.map(\.layersBefore)
        let policy = request.kvPolicy, fillRows = request.fills.count
        let clock = ContinuousClock()
        let (seconds, ran, out) = try locked { () throws -> (Double, [LayerSet], [Float]) in
            let start = clock.now
            let caches = try store.caches(for: keys)
            let tokens = (0..<rows).map {
                ShardToken(cache: caches[$0], position: keys[$0].position, layers: plans[$0], layersBefore: before[$0], routed: routed[$0])
            }
            var hidden = request.fillHidden.floats() + request.hidden.floats()
            let ran: [LayerSet]
            do {
                ran = try hidden.withUnsafeMutableBufferPointer {
                    try shard.forward($0.baseAddress!, tokens: tokens, kvPolicy: policy, chooser: chooser)
                }
            } catch let error as ModelError {
                throw RPCError.invalidArgument(error.description)
            }
            publishStore()
            return ((clock.now - start).seconds, Array(ran[fillRows...]), Array(hidden[(fillRows * dim)...]))
        }
        let runs = ran.reduce(0) { $0 + $1.count }
        stats.withLock { s in
            s.counters.forwardCalls += 1
            s.counters.tokens += UInt64(request.tokens.count)
            s.counters.kvFills += UInt64(request.fills.count)
            s.counters.layerRuns += UInt64(runs)
            s.counters.layerSkips += UInt64(request.tokens.count * shard.range.count - runs)
            s.counters.busySeconds += seconds
            s.latency.add(seconds)
        }
        return ForwardReply(hidden: WireTensor(out, shape: [request.tokens.count, dim], dtype: request.hidden.dtype),
                            computeSeconds: seconds,
                            // Only when some token could skip: an empty list means "all of this worker's layers".
                            layersRun: request.tokens.contains { $0.routed || $0.layers != nil }
                                ? ran.map { shard.range.indices.filter($0.contains) } : [])
    }

    /// The router under the request's policy, when any token is routed. The coordinator must route with the very
    /// router this worker holds: it decides whether a token visits at all, and the two must agree.
    private func chooser(for request: ForwardRequest) throws -> RouterChooser? {
        guard request.tokens.contains(where: \.routed) else { return nil }
        guard let routing = request.routing else { throw RPCError.invalidArgument("ForwardRequest.routing: missing for routed tokens") }
        guard let router else {
            throw RPCError.failedPrecondition("this worker has no router (start it with --router); the coordinator routes with \(routing.routerFingerprint.prefix(16))")
        }
        guard routing.routerFingerprint == routerFingerprint else {
            throw RPCError.failedPrecondition("the coordinator routes with router \(routing.routerFingerprint.prefix(16)), this worker holds \(routerFingerprint.prefix(16))")
        }
        let layers = shard.config.layerCount
        if let bad = routing.alwaysRun.first(where: { $0 >= layers }) {
            throw RPCError.invalidArgument("ForwardRequest.routing.always_run: layer \(bad) is not in the model (0-\(layers - 1))")
        }
        let policy = RoutingPolicy(threshold: routing.threshold, alwaysRun: LayerSet(routing.alwaysRun), minLayers: routing.minLayers,
                                   modelLayers: shard.config.layerCount)
        do { try policy.validate() } catch { throw RPCError.invalidArgument("ForwardRequest.routing: \(error)") }
        return RouterChooser(router: router, policy: policy)
    }

    func closeSessions(_ request: CloseSessionRequest) throws -> CloseSessionReply {
        try request.handshake.check(against: handshake, peer: "the coordinator")
        let ids = request.sessionIDs
        let (closed, freed) = locked {
            let result = store.close(ids)
            publishStore()
            return result
        }
        return CloseSessionReply(closed: closed, freedBytes: UInt64(freed))
    }

    /// Rebuilds a session from the hidden states that entered this worker at each of its positions.
    func restore(_ request: RestoreSessionRequest) throws -> RestoreSessionReply {
        try request.handshake.check(against: handshake, peer: "the coordinator")
        let dim = shard.config.dim
        guard request.hidden.shape[0] == 0 || request.hidden.shape[1] == dim else {
            throw RPCError.invalidArgument("RestoreSessionRequest.hidden: rows are \(request.hidden.shape[1]) wide, this model's hidden size is \(dim)")
        }
        let positions = request.history.map(\.position)
        guard zip(positions, positions.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw RPCError.invalidArgument("RestoreSessionRequest.history: positions must increase")
        }
        let session = request.sessionID, history = request.history, policy = request.kvPolicy
        let bytes = try locked { () throws -> Int in
            var hidden = request.hidden.floats()
            let cache = store.reset(session)
            let tokens = history.map { ShardToken(cache: cache, position: $0.position, layers: $0.layers.map { LayerSet($0) }) }
            if !tokens.isEmpty {
                do {
                    _ = try hidden.withUnsafeMutableBufferPointer { try shard.forward($0.baseAddress!, tokens: tokens, kvPolicy: policy) }
                } catch let error as ModelError {
                    _ = store.close([session])
                    throw RPCError.invalidArgument(error.description)
                }
            }
            publishStore()
            return cache.bytes
        }
        return RestoreSessionReply(positions: history.count, kvBytes: UInt64(bytes))
    }

    // MARK: - Compute lock

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Copies the session table's size into the snapshot Info reads (holding the lock).
    private func publishStore() {
        let sessions = store.count, used = store.usedBytes
        stats.withLock { $0.sessions = sessions; $0.kvUsedBytes = used }
    }
}
