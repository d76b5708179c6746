import Foundation
import Metrics
import RadialModel
import RadialProtocol
import RadialRouter
import RadialRPC
import Synchronization

/// What a worker is: one model's shard, its identity on the wire, and its limits.
public struct WorkerConfig: Sendable {
    public var workerID: String
    public var kvBudgetBytes: Int
    /// K/V one session may hold (nil: a quarter of the budget).
    public var maxSessionBytes: Int?
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

/// radial.Worker: a `ShardHost` behind the wire. Checks each call's handshake, decodes the routing policy, and
/// reports Info.
///
/// Forward runs inline on the server's completion-queue thread as the call arrives (no Task): a worker computes one
/// batch at a time anyway (its matmuls already use every core), and each hand-off costs a thread wake-up on the
/// token's critical path (measured: 0.5 ms per hop on loopback with two hand-offs). Info reads a snapshot, so
/// status never waits for a batch.
public final class WorkerService: Sendable {
    public let host: ShardHost
    public var shard: LlamaShard { host.shard }
    public let config: WorkerConfig
    public let handshake: Handshake
    /// The router routed tokens consult, layer by layer (nil: this worker refuses routed tokens).
    public let router: Router?
    private let routerFingerprint: String

    public init(shard: LlamaShard, fingerprint: String, config: WorkerConfig, router: Router? = nil) {
        self.config = config
        self.router = router
        routerFingerprint = router?.fingerprint ?? ""
        handshake = Handshake(protocolVersion: config.protocolVersion, modelFingerprint: fingerprint)
        host = ShardHost(shard: shard, kvBudgetBytes: config.kvBudgetBytes, sessionTTL: config.sessionTTL,
                         maxBatchTokens: config.maxBatchTokens, maxSessionBytes: config.maxSessionBytes)
    }

    public func register(on server: RPCServer) {
        server.addUnarySync(Method.workerInfo, InfoRequest.self) { [self] request, _ in try info(request) }
        server.addUnarySync(Method.workerForward, ForwardRequest.self) { [self] request, _ in try measuredForward(request) }
        server.addUnarySync(Method.workerCloseSession, CloseSessionRequest.self) { [self] request, _ in try closeSessions(request) }
        server.addUnarySync(Method.workerAdoptSession, AdoptSessionRequest.self) { [self] request, _ in
            try request.handshake.check(against: handshake, peer: "the coordinator")
            return AdoptSessionReply(positions: try host.adopt(session: request.sessionID, positions: request.positions))
        }
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
            host.evictIdle()
        }
    }

    // MARK: - Methods

    func info(_ request: InfoRequest) throws -> WorkerInfo {
        // Info answers any peer (so a coordinator can say what is wrong), but names the mismatch in its reply.
        var info = WorkerInfo(handshake: handshake, workerID: config.workerID, layers: shard.range,
                              modelLayers: shard.config.layerCount, hiddenSize: shard.config.dim)
        let s = host.snapshot
        info.kvBudgetBytes = UInt64(config.kvBudgetBytes)
        info.kvUsedBytes = UInt64(s.kvUsedBytes)
        info.sessions = s.sessions
        info.maxBatchTokens = config.maxBatchTokens
        info.rssBytes = ProcessMemory.residentBytes
        info.weightBytes = UInt64(shard.weightBytes)
        info.counters = s.counters
        info.routerFingerprint = routerFingerprint
        info.activations = shard.activations.rawValue
        info.counters.forwardP50ms = s.latency.quantile(0.5) * 1000
        info.counters.forwardP99ms = s.latency.quantile(0.99) * 1000
        return info
    }

    /// What this worker serves, as a coordinator's Forward must expect it.
    public var identity: StageIdentity {
        StageIdentity(layers: shard.range, activations: shard.activations.rawValue, routerFingerprint: routerFingerprint)
    }

    /// Forward, counted for Prometheus: calls by outcome, rows, layers run and skipped, K/V fills, compute time.
    func measuredForward(_ request: ForwardRequest) throws -> ForwardReply {
        let reply: ForwardReply
        do { reply = try forward(request) } catch {
            let code = (error as? RPCError)?.code.description.lowercased() ?? "unknown"
            Counter(label: "radial_worker_forward_calls_total", dimensions: [("outcome", code)]).increment()
            throw error
        }
        Counter(label: "radial_worker_forward_calls_total", dimensions: [("outcome", "ok")]).increment()
        Self.meters.compute.recordSeconds(reply.computeSeconds)
        Self.meters.rows.increment(by: Int64(request.tokens.count))
        Self.meters.fills.increment(by: Int64(request.fills.count))
        let run = reply.layersRun.isEmpty ? request.tokens.count * shard.range.count : reply.layersRun.reduce(0) { $0 + $1.count }
        Self.meters.layersRun.increment(by: Int64(run))
        Self.meters.layersSkipped.increment(by: Int64(request.tokens.count * shard.range.count - run))
        return reply
    }

    private static let meters = (compute: Timer(label: "radial_worker_forward_compute_seconds"),
                                 rows: Counter(label: "radial_worker_rows_total"),
                                 fills: Counter(label: "radial_worker_kv_fills_total"),
                                 layersRun: Counter(label: "radial_worker_layers_run_total"),
                                 layersSkipped: Counter(label: "radial_worker_layers_skipped_total"))

    /// Point-in-time figures for Prometheus, set just before each scrape.
    public func refreshGauges() {
        let s = host.snapshot
        Gauge(label: "radial_worker_sessions").record(s.sessions)
        Gauge(label: "radial_worker_kv_bytes").record(s.kvUsedBytes)
        Gauge(label: "radial_worker_kv_budget_bytes").record(config.kvBudgetBytes)
        Gauge(label: "radial_worker_weight_bytes").record(shard.weightBytes)
        Gauge(label: "radial_worker_rss_bytes").record(Int(ProcessMemory.residentBytes))
        Gauge(label: "radial_worker_first_layer").record(shard.range.lowerBound)
        Gauge(label: "radial_worker_layers").record(shard.range.count)
    }

    func forward(_ request: ForwardRequest) throws -> ForwardReply {
        try request.handshake.check(against: handshake, peer: "the coordinator")
        if let expect = request.expect, expect != identity {
            throw RPCError.failedPrecondition("this worker serves \(identity); the coordinator expects \(expect) (it was restarted or replaced: the coordinator must handshake again)")
        }
        let dim = shard.config.dim
        for (name, tensor) in [("hidden", request.hidden), ("fill_hidden", request.fillHidden)] where tensor.shape[0] > 0 {
            guard tensor.shape[1] == dim else {
                throw RPCError.invalidArgument("ForwardRequest.\(name): rows are \(tensor.shape[1]) wide, this model's hidden size is \(dim)")
            }
        }
        let out = try host.forward(tokens: request.tokens, hidden: request.hidden.floats(), fills: request.fills,
                                   fillHidden: request.fillHidden.floats(), kvPolicy: request.kvPolicy,
                                   chooser: try chooser(for: request))
        return ForwardReply(hidden: WireTensor(out.hidden, shape: [request.tokens.count, dim], dtype: request.hidden.dtype),
                            computeSeconds: out.computeSeconds,
                            // Only when some token could skip: an empty list means "all of this worker's layers".
                            layersRun: request.tokens.contains { $0.routed || $0.layers != nil }
                                ? out.layersRun.map { shard.range.indices.filter($0.contains) } : [])
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
        let (closed, freed) = host.close(request.sessionIDs)
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
        let bytes = try host.restore(session: request.sessionID, history: request.history.map { ($0.position, $0.layers) },
                                     hidden: request.hidden.floats(), kvPolicy: request.kvPolicy, groups: request.groupSizes)
        return RestoreSessionReply(positions: request.history.count, kvBytes: UInt64(bytes))
    }
}
