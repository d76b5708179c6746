import CRadialProto
import RadialModel
import RadialRPC

// What a coordinator and a worker settle once per connection rather than on every Forward: what the worker
// serves (StageIdentity, still checked on every call), and how the coordinator's tokens run there (StagePolicy,
// named in Forward by the id Configure answers).

/// What a coordinator believes a worker serves, checked by the worker at Configure and on every Forward.
public struct StageIdentity: Sendable, Equatable, CustomStringConvertible {
    public var layers: LayerRange
    public var activations: String
    public var routerFingerprint: String

    public init(layers: LayerRange, activations: String, routerFingerprint: String) {
        self.layers = layers
        self.activations = activations
        self.routerFingerprint = routerFingerprint
    }

    init(_ m: Radial__StageIdentity, field: String) throws {
        guard let range = m.layers?.pointee, range.first <= range.last else { throw invalid(field + ".layers", "missing or reversed") }
        layers = LayerRange(Int(range.first), Int(range.last) + 1)
        activations = text(m.activations)
        routerFingerprint = text(m.router_fingerprint)
    }

    func c(_ arena: Arena) -> UnsafeMutablePointer<Radial__StageIdentity> {
        var m = Radial__StageIdentity()
        radial__stage_identity__init(&m)
        var range = Radial__LayerRange()
        radial__layer_range__init(&range)
        range.first = UInt32(layers.lowerBound)
        range.last = UInt32(max(layers.lowerBound, layers.upperBound - 1))
        m.layers = arena.message(range)
        m.activations = arena.string(activations)
        m.router_fingerprint = arena.string(routerFingerprint)
        return arena.message(m)
    }

    public var description: String {
        "layers \(layers), --activations \(activations)" + (routerFingerprint.isEmpty ? ", no router" : ", router \(routerFingerprint.prefix(12))…")
    }
}

/// The routing policy as settled with Configure (RoutingPolicy on the wire).
public struct WireRouting: Sendable, Equatable {
    public var routerFingerprint: String
    public var threshold: Float
    public var alwaysRun: [Int]
    public var minLayers: Int

    public init(routerFingerprint: String, threshold: Float, alwaysRun: [Int], minLayers: Int) {
        self.routerFingerprint = routerFingerprint
        self.threshold = threshold
        self.alwaysRun = alwaysRun
        self.minLayers = minLayers
    }

    init(_ m: Radial__RoutingPolicy) {
        routerFingerprint = text(m.router_fingerprint)
        threshold = m.threshold
        alwaysRun = list(m.n_always_run, m.always_run).map { Int($0) }
        minLayers = Int(m.min_layers)
    }

    func c(_ arena: Arena) -> UnsafeMutablePointer<Radial__RoutingPolicy> {
        var m = Radial__RoutingPolicy()
        radial__routing_policy__init(&m)
        m.router_fingerprint = arena.string(routerFingerprint)
        m.threshold = threshold
        m.n_always_run = alwaysRun.count
        m.always_run = arena.array(alwaysRun.map { UInt32($0) })
        m.min_layers = UInt32(minLayers)
        return arena.message(m)
    }
}

/// How a coordinator's tokens run on a worker: what a skipped layer keeps, and how routed tokens choose.
public struct StagePolicy: Sendable, Equatable {
    public var kvPolicy: SkippedLayerKV
    /// nil: no token is routed.
    public var routing: WireRouting?

    public init(kvPolicy: SkippedLayerKV = .fill, routing: WireRouting? = nil) {
        self.kvPolicy = kvPolicy
        self.routing = routing
    }

    /// The policy a Forward with policy id 0 runs under.
    public static let unrouted = StagePolicy()

    init(_ m: Radial__StagePolicy, field: String) throws {
        kvPolicy = try kvPolicyFrom(m.kv_policy, field: field + ".kv_policy")
        routing = m.routing.map { WireRouting($0.pointee) }
    }

    func c(_ arena: Arena) -> UnsafeMutablePointer<Radial__StagePolicy> {
        var m = Radial__StagePolicy()
        radial__stage_policy__init(&m)
        m.kv_policy = kvPolicy == .fill ? RADIAL__KVPOLICY__KV_FILL : RADIAL__KVPOLICY__KV_MASK
        if let routing { m.routing = routing.c(arena) }
        return arena.message(m)
    }
}

public struct ConfigureRequest: WireMessage, Equatable {
    public var handshake: Handshake
    public var expect: StageIdentity
    public var policy: StagePolicy

    public init(handshake: Handshake, expect: StageIdentity, policy: StagePolicy) {
        self.handshake = handshake
        self.expect = expect
        self.policy = policy
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "ConfigureRequest", radial__configure_request__unpack, radial__configure_request__free_unpacked) { m in
            guard let expect = m.expect else { throw invalid("ConfigureRequest.expect", "missing") }
            guard let policy = m.policy else { throw invalid("ConfigureRequest.policy", "missing") }
            return ConfigureRequest(handshake: try Handshake.from(m.handshake, field: "ConfigureRequest.handshake"),
                                    expect: try StageIdentity(expect.pointee, field: "ConfigureRequest.expect"),
                                    policy: try StagePolicy(policy.pointee, field: "ConfigureRequest.policy"))
        }
    }

    public func wireBytes() -> [UInt8] {
        let arena = Arena()
        var m = Radial__ConfigureRequest()
        radial__configure_request__init(&m)
        m.handshake = handshake.c(arena)
        m.expect = expect.c(arena)
        m.policy = policy.c(arena)
        return pack(m)
    }
}

public struct ConfigureReply: WireMessage, Equatable {
    /// What Forward sends as `policy_id`.
    public var policyID: UInt64

    public init(policyID: UInt64) { self.policyID = policyID }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "ConfigureReply", radial__configure_reply__unpack, radial__configure_reply__free_unpacked) { m in
            ConfigureReply(policyID: m.policy_id)
        }
    }

    public func wireBytes() -> [UInt8] {
        var m = Radial__ConfigureReply()
        radial__configure_reply__init(&m)
        m.policy_id = policyID
        return pack(m)
    }
}
