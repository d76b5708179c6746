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

/// radial.Worker: a `ShardHost` behind the wire. Checks each call's handshake, settles coordinators' policies
/// (Configure), and reports Info.
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
    private let policies = SettledPolicies()

    public init(shard: LlamaShard, fingerprint: String, config: WorkerConfig, router: Router? = nil) {
        self.config = config
        self.router = router
        routerFingerprint = router?.fingerprint ?? ""
        handshake = Handshake(protocolVersion: config.protocolVersion, modelFingerprint: fingerprint)
        host = ShardHost(shard: shard, kvBudgetBytes: config.kvBudgetBytes, sessionTTL: config.sessionTTL,
                         maxBatchTokens: config.maxBatchTokens, maxSessionBytes: config.maxSessionBytes, maps: router?.maps ?? [])
    }

    public func register(on server: RPCServer) {
        server.addUnarySync(Method.workerInfo, InfoRequest.self) { [self] request, _ in try info(request) }
        // Sessions belong to the client that created them: each call passes on who made it (`principal`).
        server.addUnarySync(Method.workerForward, ForwardRequest.self) { [self] request, context in
            try measuredForward(request, from: context.principal)
        }
        server.addUnarySync(Method.workerCloseSession, CloseSessionRequest.self) { [self] request, context in
            try closeSessions(request, from: context.principal)
        }
        server.addUnarySync(Method.workerAdoptSession, AdoptSessionRequest.self) { [self] request, context in
            try request.handshake.check(against: handshake, peer: "the coordinator")
            return AdoptSessionReply(positions: try host.adopt(session: request.sessionID, positions: request.positions, owner: context.principal))
        }
        server.addUnarySync(Method.workerConfigure, ConfigureRequest.self) { [self] request, _ in try configure(request) }
        // A restore replays a whole history: long, and rare; off the I/O thread.
        server.addUnary(Method.workerRestoreSession, RestoreSessionRequest.self, offloaded: true) { [self] request, context in
            try restore(request, from: context.principal)
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
    func measuredForward(_ request: ForwardRequest, from principal: String? = nil) throws -> ForwardReply {
        let reply: ForwardReply
        do { reply = try forward(request, from: principal) } catch {
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

    /// Settles a coordinator's policy after checking that this worker is what the coordinator expects.
    func configure(_ request: ConfigureRequest) throws -> ConfigureReply {
        try request.handshake.check(against: handshake, peer: "the coordinator")
        try check(request.expect)
        return ConfigureReply(policyID: try policies.settle(request.policy, router: router, modelLayers: shard.config.layerCount))
    }

    private func check(_ expect: StageIdentity) throws {
        if expect != identity {
            throw RPCError.failedPrecondition("this worker serves \(identity); the coordinator expects \(expect) (it was restarted or replaced: the coordinator must handshake again)")
        }
    }

    func forward(_ request: ForwardRequest, from principal: String? = nil) throws -> ForwardReply {
        try request.handshake.check(against: handshake, peer: "the coordinator")
        if let expect = request.expect { try check(expect) }
        let policy = try policies.lookup(request.policyID)
        let dim = shard.config.dim
        for (name, tensor) in [("hidden", request.hidden), ("fill_hidden", request.fillHidden)] where tensor.shape[0] > 0 {
            guard tensor.shape[1] == dim else {
                throw RPCError.invalidArgument("ForwardRequest.\(name): rows are \(tensor.shape[1]) wide, this model's hidden size is \(dim)")
            }
        }
        let routed = request.tokens.contains(where: \.routed)
        if routed && policy.chooser == nil {
            throw RPCError.invalidArgument("ForwardRequest.policy_id: policy \(request.policyID) routes nothing, but a token is routed")
        }
        let out = try host.forward(tokens: request.tokens, hidden: request.hidden.floats(), fills: request.fills,
                                   fillHidden: request.fillHidden.floats(), kvPolicy: policy.kvPolicy,
                                   chooser: routed ? policy.chooser : nil, owner: principal)
        return ForwardReply(hidden: WireTensor(out.hidden, shape: [request.tokens.count, dim], dtype: request.hidden.dtype),
                            computeSeconds: out.computeSeconds,
                            // Only when some token could skip: an empty list means "all of this worker's layers".
                            layersRun: request.tokens.contains { $0.routed || $0.layers != nil }
                                ? out.layersRun.map { shard.range.indices.filter($0.contains) } : [])
    }

    func closeSessions(_ request: CloseSessionRequest, from principal: String? = nil) throws -> CloseSessionReply {
        try request.handshake.check(against: handshake, peer: "the coordinator")
        let (closed, freed) = host.close(request.sessionIDs, owner: principal)
        return CloseSessionReply(closed: closed, freedBytes: UInt64(freed))
    }

    /// Rebuilds sessions from the hidden states that entered this worker at each of their positions.
    func restore(_ request: RestoreSessionRequest, from principal: String? = nil) throws -> RestoreSessionReply {
        try request.handshake.check(against: handshake, peer: "the coordinator")
        let dim = shard.config.dim
        guard request.hidden.shape[0] == 0 || request.hidden.shape[1] == dim else {
            throw RPCError.invalidArgument("RestoreSessionRequest.hidden: rows are \(request.hidden.shape[1]) wide, this model's hidden size is \(dim)")
        }
        var last: [UInt64: Int] = [:]
        for (i, row) in request.history.enumerated() {
            if let before = last[row.sessionID], before >= row.position {
                throw RPCError.invalidArgument("RestoreSessionRequest.history[\(i)]: session \(row.sessionID)'s positions must increase (\(row.position) after \(before))")
            }
            last[row.sessionID] = row.position
        }
        let bytes = try host.restore(history: request.history.map { .init(session: $0.sessionID, position: $0.position, layers: $0.layers) },
                                     hidden: request.hidden.floats(), kvPolicy: request.kvPolicy, groups: request.groupSizes,
                                     owner: principal)
        return RestoreSessionReply(positions: request.history.count, kvBytes: UInt64(bytes), sessions: last.count)
    }
}
