import CRadialProto
import RadialModel
import RadialRPC

// radial.Worker's messages as Swift values, each with its conversion to and from protobuf-c. Conversions from
// the wire validate, and name the field at fault (INVALID_ARGUMENT).

public struct InfoRequest: WireMessage, Equatable {
    public var handshake: Handshake
    public init(handshake: Handshake) { self.handshake = handshake }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "InfoRequest", radial__info_request__unpack, radial__info_request__free_unpacked) { m in
            InfoRequest(handshake: try Handshake.from(m.handshake, field: "InfoRequest.handshake"))
        }
    }

    public func wireBytes() -> [UInt8] {
        let arena = Arena()
        var m = Radial__InfoRequest()
        radial__info_request__init(&m)
        m.handshake = handshake.c(arena)
        return pack(m)
    }
}

public struct WorkerCounters: Sendable, Equatable {
    public var forwardCalls: UInt64 = 0
    public var tokens: UInt64 = 0
    public var layerRuns: UInt64 = 0
    public var layerSkips: UInt64 = 0
    public var kvFills: UInt64 = 0
    public var busySeconds: Double = 0
    public var forwardP50ms: Double = 0
    public var forwardP99ms: Double = 0
    public init() {}

    func c(_ arena: Arena) -> UnsafeMutablePointer<Radial__WorkerCounters> {
        var m = Radial__WorkerCounters()
        radial__worker_counters__init(&m)
        m.forward_calls = forwardCalls; m.tokens = tokens; m.layer_runs = layerRuns; m.layer_skips = layerSkips
        m.kv_fills = kvFills; m.busy_seconds = busySeconds; m.forward_p50_ms = forwardP50ms; m.forward_p99_ms = forwardP99ms
        return arena.message(m)
    }

    init(_ m: Radial__WorkerCounters) {
        forwardCalls = m.forward_calls; tokens = m.tokens; layerRuns = m.layer_runs; layerSkips = m.layer_skips
        kvFills = m.kv_fills; busySeconds = m.busy_seconds; forwardP50ms = m.forward_p50_ms; forwardP99ms = m.forward_p99_ms
    }
}

public struct WorkerInfo: WireMessage, Equatable {
    public var handshake: Handshake
    public var workerID: String
    public var layers: LayerRange
    public var modelLayers: Int
    public var hiddenSize: Int
    public var kvBudgetBytes: UInt64 = 0
    public var kvUsedBytes: UInt64 = 0
    public var sessions: Int = 0
    public var maxBatchTokens: Int = 0
    public var rssBytes: UInt64 = 0
    /// Bytes of the worker's layers in the file's quantised form.
    public var weightBytes: UInt64 = 0
    public var counters = WorkerCounters()
    /// The router this worker loaded ("" when none).
    public var routerFingerprint = ""
    /// The worker's decode arithmetic (`--activations`): "f32" or "q8"; empty (an older worker) means f32.
    public var activations = ""

    public init(handshake: Handshake, workerID: String, layers: LayerRange, modelLayers: Int, hiddenSize: Int) {
        self.handshake = handshake
        self.workerID = workerID
        self.layers = layers
        self.modelLayers = modelLayers
        self.hiddenSize = hiddenSize
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "WorkerInfo", radial__worker_info__unpack, radial__worker_info__free_unpacked) { try WorkerInfo($0) }
    }

    init(_ m: Radial__WorkerInfo) throws {
        handshake = try Handshake.from(m.handshake, field: "WorkerInfo.handshake")
        workerID = text(m.worker_id)
        guard let range = m.layers?.pointee, range.first <= range.last else {
            throw invalid("WorkerInfo.layers", "missing or reversed")
        }
        layers = LayerRange(Int(range.first), Int(range.last) + 1)
        modelLayers = Int(m.model_layers)
        hiddenSize = Int(m.hidden_size)
        kvBudgetBytes = m.kv_budget_bytes
        kvUsedBytes = m.kv_used_bytes
        sessions = Int(m.sessions)
        maxBatchTokens = Int(m.max_batch_tokens)
        rssBytes = m.rss_bytes
        weightBytes = m.weight_bytes
        counters = m.counters.map { WorkerCounters($0.pointee) } ?? WorkerCounters()
        routerFingerprint = text(m.router_fingerprint)
        activations = text(m.activations)
    }

    func c(_ arena: Arena) -> UnsafeMutablePointer<Radial__WorkerInfo> {
        var m = Radial__WorkerInfo()
        radial__worker_info__init(&m)
        m.handshake = handshake.c(arena)
        m.worker_id = arena.string(workerID)
        var range = Radial__LayerRange()
        radial__layer_range__init(&range)
        range.first = UInt32(layers.lowerBound)
        range.last = UInt32(max(layers.lowerBound, layers.upperBound - 1))
        m.layers = arena.message(range)
        m.model_layers = UInt32(modelLayers)
        m.hidden_size = UInt32(hiddenSize)
        m.kv_budget_bytes = kvBudgetBytes
        m.kv_used_bytes = kvUsedBytes
        m.sessions = UInt32(sessions)
        m.max_batch_tokens = UInt32(maxBatchTokens)
        m.rss_bytes = rssBytes
        m.weight_bytes = weightBytes
        m.counters = counters.c(arena)
        m.router_fingerprint = arena.string(routerFingerprint)
        m.activations = arena.string(activations)
        return arena.message(m)
    }

    public func wireBytes() -> [UInt8] { let arena = Arena(); return pack(c(arena).pointee) }
}

/// One token of a Forward batch: whose, where, and which of the worker's layers it runs (nil: all of them).
public struct TokenEntry: Sendable, Equatable {
    public var sessionID: UInt64
    public var position: Int
    public var layers: [Int]?
    /// The worker's router picks among `layers` (ForwardRequest.routing says how).
    public var routed: Bool
    /// Layers the token ran before this worker.
    public var layersBefore: Int

    public init(sessionID: UInt64, position: Int, layers: [Int]? = nil, routed: Bool = false, layersBefore: Int = 0) {
        self.sessionID = sessionID
        self.position = position
        self.layers = layers
        self.routed = routed
        self.layersBefore = layersBefore
    }

    func c(_ arena: Arena) -> Radial__TokenEntry {
        var m = Radial__TokenEntry()
        radial__token_entry__init(&m)
        m.session_id = sessionID
        m.position = UInt32(position)
        m.all_layers = layers == nil ? 1 : 0
        m.routed = routed ? 1 : 0
        m.layers_before = UInt32(layersBefore)
        if let layers {
            m.n_layers = layers.count
            m.layers = arena.array(layers.map { UInt32($0) })
        }
        return m
    }

    /// `allowNone`: a row that runs none of the layers (a deferred K/V fill, in a RestoreSession history).
    init(_ m: Radial__TokenEntry, field: String, allowNone: Bool = false) throws {
        sessionID = m.session_id
        position = Int(m.position)
        routed = m.routed != 0
        layersBefore = Int(m.layers_before)
        if m.all_layers != 0 {
            layers = nil
        } else {
            let list = list(m.n_layers, m.layers).map { Int($0) }
            guard !list.isEmpty || allowNone else { throw invalid("\(field).layers", "empty with all_layers false (a token that runs none of a worker's layers is sent as a KV fill)") }
            guard zip(list, list.dropFirst()).allSatisfy({ $0 < $1 }) else {
                throw invalid("\(field).layers", "must be strictly increasing, got \(list)")
            }
            layers = list
        }
    }
}

/// A position at which a session skipped the worker entirely (see ForwardRequest.fills).
public struct KVFillEntry: Sendable, Equatable {
    public var sessionID: UInt64
    public var position: Int

    public init(sessionID: UInt64, position: Int) {
        self.sessionID = sessionID
        self.position = position
    }
}

public struct ForwardRequest: WireMessage, Equatable {
    public var handshake: Handshake
    public var tokens: [TokenEntry]
    /// [tokens, hidden]: the hidden state entering the worker's first layer, per token.
    public var hidden: WireTensor
    public var fills: [KVFillEntry]
    /// [fills, hidden].
    public var fillHidden: WireTensor
    /// The K/V and routing policy settled with Configure; 0: K/V fill, no routing.
    public var policyID: UInt64
    /// What the coordinator believes the worker serves; nil: no check.
    public var expect: StageIdentity?

    public init(handshake: Handshake, tokens: [TokenEntry], hidden: WireTensor,
                fills: [KVFillEntry] = [], fillHidden: WireTensor? = nil, policyID: UInt64 = 0, expect: StageIdentity? = nil) {
        self.handshake = handshake
        self.tokens = tokens
        self.hidden = hidden
        self.fills = fills
        self.fillHidden = fillHidden ?? .empty(width: hidden.shape.last ?? 0)
        self.policyID = policyID
        self.expect = expect
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "ForwardRequest", radial__forward_request__unpack, radial__forward_request__free_unpacked) { m in
            let handshake = try Handshake.from(m.handshake, field: "ForwardRequest.handshake")
            let tokens = try list(m.n_tokens, m.tokens).enumerated().map { i, p in
                guard let p else { throw invalid("ForwardRequest.tokens[\(i)]", "null") }
                return try TokenEntry(p.pointee, field: "ForwardRequest.tokens[\(i)]")
            }
            let fills = list(m.n_fills, m.fills).compactMap { $0.map { KVFillEntry(sessionID: $0.pointee.session_id, position: Int($0.pointee.position)) } }
            let hidden = try WireTensor.matrix(m.hidden, field: "ForwardRequest.hidden", rows: tokens.count)
            let fillHidden = try WireTensor.matrix(m.fill_hidden, field: "ForwardRequest.fill_hidden", rows: fills.count)
            if !tokens.isEmpty, !fills.isEmpty, hidden.shape[1] != fillHidden.shape[1] {
                throw invalid("ForwardRequest.fill_hidden", "width \(fillHidden.shape[1]) differs from hidden's \(hidden.shape[1])")
            }
            if tokens.isEmpty && fills.isEmpty { throw invalid("ForwardRequest.tokens", "empty (nothing to run)") }
            if m.policy_id == 0, let i = tokens.firstIndex(where: \.routed) {
                throw invalid("ForwardRequest.policy_id", "0 (the default policy routes nothing), but tokens[\(i)] is routed")
            }
            let expect = try m.expect.map { try StageIdentity($0.pointee, field: "ForwardRequest.expect") }
            return ForwardRequest(handshake: handshake, tokens: tokens, hidden: hidden, fills: fills,
                                  fillHidden: fillHidden, policyID: m.policy_id, expect: expect)
        }
    }

    public func wireBytes() -> [UInt8] { wireBytesFromWriter() }

    public func withWireWriter<R>(_ body: (_ size: Int, _ write: (UnsafeMutableRawPointer) -> Void) -> R) -> R {
        let arena = Arena()
        var m = Radial__ForwardRequest()
        radial__forward_request__init(&m)
        m.handshake = handshake.c(arena)
        m.n_tokens = tokens.count
        m.tokens = arena.messages(tokens.map { $0.c(arena) })
        m.n_fills = fills.count
        m.fills = arena.messages(fills.map { f in
            var e = Radial__KVFillEntry()
            radial__kvfill_entry__init(&e)
            e.session_id = f.sessionID
            e.position = UInt32(f.position)
            return e
        })
        m.policy_id = policyID
        if let expect { m.expect = expect.c(arena) }
        // The hidden states are borrowed, not copied: pack inside both closures.
        return hidden.withC(arena) { hidden in
            fillHidden.withC(arena) { fillHidden in
                m.hidden = hidden
                m.fill_hidden = fillHidden
                return packing(m, body)
            }
        }
    }
}



func kvPolicyFrom(_ p: Radial__KVPolicy, field: String) throws -> SkippedLayerKV {
    switch p {
    case RADIAL__KVPOLICY__KV_FILL: return .fill
    case RADIAL__KVPOLICY__KV_MASK: return .mask
    default: throw invalid(field, "unknown KV policy \(p.rawValue)")
    }
}

public struct ForwardReply: WireMessage, Equatable {
    public var hidden: WireTensor
    public var computeSeconds: Double
    /// The layers each token ran, in request order (empty when the worker did not say).
    public var layersRun: [[Int]]

    public init(hidden: WireTensor, computeSeconds: Double, layersRun: [[Int]] = []) {
        self.hidden = hidden
        self.computeSeconds = computeSeconds
        self.layersRun = layersRun
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "ForwardReply", radial__forward_reply__unpack, radial__forward_reply__free_unpacked) { m in
            guard let hidden = try WireTensor.from(m.hidden, field: "ForwardReply.hidden") else {
                throw invalid("ForwardReply.hidden", "missing")
            }
            let counts = list(m.n_layers_run_counts, m.layers_run_counts).map { Int($0) }
            let flat = list(m.n_layers_run, m.layers_run).map { Int($0) }
            guard counts.reduce(0, +) == flat.count else {
                throw invalid("ForwardReply.layers_run", "\(flat.count) entries, but layers_run_counts add up to \(counts.reduce(0, +))")
            }
            var layersRun: [[Int]] = [], at = 0
            for c in counts { layersRun.append(Array(flat[at..<(at + c)])); at += c }
            return ForwardReply(hidden: hidden, computeSeconds: m.compute_seconds, layersRun: layersRun)
        }
    }

    public func wireBytes() -> [UInt8] { wireBytesFromWriter() }

    public func withWireWriter<R>(_ body: (_ size: Int, _ write: (UnsafeMutableRawPointer) -> Void) -> R) -> R {
        let arena = Arena()
        var m = Radial__ForwardReply()
        radial__forward_reply__init(&m)
        m.compute_seconds = computeSeconds
        m.n_layers_run_counts = layersRun.count
        m.layers_run_counts = arena.array(layersRun.map { UInt32($0.count) })
        let flat = layersRun.flatMap { $0 }
        m.n_layers_run = flat.count
        m.layers_run = arena.array(flat.map { UInt32($0) })
        return hidden.withC(arena) { hidden in
            m.hidden = hidden
            return packing(m, body)
        }
    }
}

public struct CloseSessionRequest: WireMessage, Equatable {
    public var handshake: Handshake
    public var sessionIDs: [UInt64]

    public init(handshake: Handshake, sessionIDs: [UInt64]) {
        self.handshake = handshake
        self.sessionIDs = sessionIDs
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "CloseSessionRequest", radial__close_session_request__unpack, radial__close_session_request__free_unpacked) { m in
            CloseSessionRequest(handshake: try Handshake.from(m.handshake, field: "CloseSessionRequest.handshake"),
                                sessionIDs: list(m.n_session_ids, m.session_ids))
        }
    }

    public func wireBytes() -> [UInt8] {
        let arena = Arena()
        var m = Radial__CloseSessionRequest()
        radial__close_session_request__init(&m)
        m.handshake = handshake.c(arena)
        m.n_session_ids = sessionIDs.count
        m.session_ids = arena.array(sessionIDs)
        return pack(m)
    }
}

public struct CloseSessionReply: WireMessage, Equatable {
    public var closed: Int
    public var freedBytes: UInt64

    public init(closed: Int, freedBytes: UInt64) {
        self.closed = closed
        self.freedBytes = freedBytes
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "CloseSessionReply", radial__close_session_reply__unpack, radial__close_session_reply__free_unpacked) { m in
            CloseSessionReply(closed: Int(m.closed), freedBytes: m.freed_bytes)
        }
    }

    public func wireBytes() -> [UInt8] {
        var m = Radial__CloseSessionReply()
        radial__close_session_reply__init(&m)
        m.closed = UInt32(closed)
        m.freed_bytes = freedBytes
        return pack(m)
    }
}

/// Rebuilds one or more sessions from their histories (each entry names its session).
public struct RestoreSessionRequest: WireMessage, Equatable {
    public var handshake: Handshake
    public var history: [TokenEntry]
    public var hidden: WireTensor
    public var kvPolicy: SkippedLayerKV
    /// Rows per replayed batch (empty: groups of at most the decode kernels' row limit).
    public var groupSizes: [Int]

    public init(handshake: Handshake, history: [TokenEntry], hidden: WireTensor, kvPolicy: SkippedLayerKV, groupSizes: [Int] = []) {
        self.handshake = handshake
        self.history = history
        self.hidden = hidden
        self.kvPolicy = kvPolicy
        self.groupSizes = groupSizes
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "RestoreSessionRequest", radial__restore_session_request__unpack, radial__restore_session_request__free_unpacked) { m in
            let history = try list(m.n_history, m.history).enumerated().map { i, p in
                guard let p else { throw invalid("RestoreSessionRequest.history[\(i)]", "null") }
                return try TokenEntry(p.pointee, field: "RestoreSessionRequest.history[\(i)]", allowNone: true)
            }
            let groups = list(m.n_group_sizes, m.group_sizes).map { Int($0) }
            if !groups.isEmpty && (groups.contains(0) || groups.reduce(0, +) != history.count) {
                throw invalid("RestoreSessionRequest.group_sizes", "must be positive and sum to the \(history.count) history rows")
            }
            return RestoreSessionRequest(
                handshake: try Handshake.from(m.handshake, field: "RestoreSessionRequest.handshake"),
                history: history,
                hidden: try WireTensor.matrix(m.hidden, field: "RestoreSessionRequest.hidden", rows: history.count),
                kvPolicy: try kvPolicyFrom(m.kv_policy, field: "RestoreSessionRequest.kv_policy"), groupSizes: groups)
        }
    }

    public func wireBytes() -> [UInt8] { wireBytesFromWriter() }

    public func withWireWriter<R>(_ body: (_ size: Int, _ write: (UnsafeMutableRawPointer) -> Void) -> R) -> R {
        let arena = Arena()
        var m = Radial__RestoreSessionRequest()
        radial__restore_session_request__init(&m)
        m.handshake = handshake.c(arena)
        m.n_history = history.count
        m.history = arena.messages(history.map { $0.c(arena) })
        m.kv_policy = kvPolicy == .fill ? RADIAL__KVPOLICY__KV_FILL : RADIAL__KVPOLICY__KV_MASK
        m.n_group_sizes = groupSizes.count
        m.group_sizes = arena.array(groupSizes.map { UInt32($0) })
        return hidden.withC(arena) { hidden in
            m.hidden = hidden
            return packing(m, body)
        }
    }
}

public struct RestoreSessionReply: WireMessage, Equatable {
    /// History rows replayed.
    public var positions: Int
    /// K/V the restored sessions hold now.
    public var kvBytes: UInt64
    public var sessions: Int

    public init(positions: Int, kvBytes: UInt64, sessions: Int = 1) {
        self.positions = positions
        self.kvBytes = kvBytes
        self.sessions = sessions
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "RestoreSessionReply", radial__restore_session_reply__unpack, radial__restore_session_reply__free_unpacked) { m in
            RestoreSessionReply(positions: Int(m.positions), kvBytes: m.kv_bytes, sessions: Int(m.sessions))
        }
    }

    public func wireBytes() -> [UInt8] {
        var m = Radial__RestoreSessionReply()
        radial__restore_session_reply__init(&m)
        m.positions = UInt32(positions)
        m.kv_bytes = kvBytes
        m.sessions = UInt32(sessions)
        return pack(m)
    }
}

public struct AdoptSessionRequest: WireMessage, Equatable {
    public var handshake: Handshake
    public var sessionID: UInt64
    public var positions: Int

    public init(handshake: Handshake, sessionID: UInt64, positions: Int) {
        self.handshake = handshake
        self.sessionID = sessionID
        self.positions = positions
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "AdoptSessionRequest", radial__adopt_session_request__unpack, radial__adopt_session_request__free_unpacked) { m in
            AdoptSessionRequest(handshake: try Handshake.from(m.handshake, field: "AdoptSessionRequest.handshake"),
                                sessionID: m.session_id, positions: Int(m.positions))
        }
    }

    public func wireBytes() -> [UInt8] {
        let arena = Arena()
        var m = Radial__AdoptSessionRequest()
        radial__adopt_session_request__init(&m)
        m.handshake = handshake.c(arena)
        m.session_id = sessionID
        m.positions = UInt32(positions)
        return pack(m)
    }
}

public struct AdoptSessionReply: WireMessage, Equatable {
    /// Positions the session held before it was cut to the adopted length.
    public var positions: Int

    public init(positions: Int) { self.positions = positions }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "AdoptSessionReply", radial__adopt_session_reply__unpack, radial__adopt_session_reply__free_unpacked) { m in
            AdoptSessionReply(positions: Int(m.positions))
        }
    }

    public func wireBytes() -> [UInt8] {
        var m = Radial__AdoptSessionReply()
        radial__adopt_session_reply__init(&m)
        m.positions = UInt32(positions)
        return pack(m)
    }
}
