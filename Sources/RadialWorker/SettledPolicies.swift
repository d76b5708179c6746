import RadialModel
import RadialProtocol
import RadialRouter
import RadialRPC
import Synchronization

/// The policies coordinators settled with this worker (Configure), by id: checked once when settled, then only
/// looked up per Forward. Ids mix a salt drawn at start-up into a hash of the policy, so one policy keeps its id
/// for the worker's lifetime (coordinators sharing a policy share an entry) and gets another after a restart: a
/// Forward from before the restart is refused and its coordinator settles again.
final class SettledPolicies: Sendable {
    /// A policy ready to run: its K/V rule and, when it routes, the router under its threshold.
    struct Settled: Sendable {
        let kvPolicy: SkippedLayerKV
        let chooser: RouterChooser?
    }

    /// At most this many (a busy table drops its oldest: that coordinator's next Forward is refused and it
    /// settles again).
    static let capacity = 64
    private let salt = UInt64.random(in: 1...UInt64.max)
    private let table = Mutex<(byID: [UInt64: Settled], order: [UInt64])>(([:], []))

    /// Id 0, the policy of a Forward that names none: K/V fill, nothing routed.
    static let unrouted = Settled(kvPolicy: .fill, chooser: nil)

    func settle(_ policy: StagePolicy, router: Router?, modelLayers: Int) throws -> UInt64 {
        var chooser: RouterChooser?
        if let routing = policy.routing {
            guard let router else {
                throw RPCError.failedPrecondition("this worker has no router (start it with --router); the coordinator routes with \(routing.routerFingerprint.prefix(16))")
            }
            guard routing.routerFingerprint == router.fingerprint else {
                throw RPCError.failedPrecondition("the coordinator routes with router \(routing.routerFingerprint.prefix(16)), this worker holds \(router.fingerprint.prefix(16))")
            }
            if let bad = routing.alwaysRun.first(where: { $0 >= modelLayers }) {
                throw RPCError.invalidArgument("ConfigureRequest.policy.routing.always_run: layer \(bad) is not in the model (0-\(modelLayers - 1))")
            }
            let rule = RoutingPolicy(threshold: routing.threshold, alwaysRun: LayerSet(routing.alwaysRun), minLayers: routing.minLayers,
                                     modelLayers: modelLayers)
            do { try rule.validate() } catch { throw RPCError.invalidArgument("ConfigureRequest.policy.routing: \(error)") }
            chooser = RouterChooser(router: router, policy: rule)
        }
        let id = self.id(of: policy)
        table.withLock { t in
            guard t.byID[id] == nil else { return }
            if t.order.count >= Self.capacity { t.byID[t.order.removeFirst()] = nil }
            t.byID[id] = Settled(kvPolicy: policy.kvPolicy, chooser: chooser)
            t.order.append(id)
        }
        return id
    }

    func lookup(_ id: UInt64) throws -> Settled {
        if id == 0 { return Self.unrouted }
        guard let settled = table.withLock({ $0.byID[id] }) else {
            throw RPCError.failedPrecondition("policy \(id) is not settled here (this worker restarted, or dropped it): Configure again")
        }
        return settled
    }

    /// FNV-1a over the policy's fields and the salt; never 0.
    private func id(of policy: StagePolicy) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ salt
        func mix(_ v: UInt64) { for i in 0..<8 { h = (h ^ ((v >> (8 * UInt64(i))) & 0xff)) &* 0x100_0000_01b3 } }
        mix(policy.kvPolicy == .fill ? 1 : 2)
        if let r = policy.routing {
            for b in r.routerFingerprint.utf8 { mix(UInt64(b)) }
            mix(UInt64(r.threshold.bitPattern))
            mix(UInt64(r.alwaysRun.count))
            for l in r.alwaysRun { mix(UInt64(l)) }
            mix(UInt64(r.minLayers))
        }
        return h == 0 ? 1 : h
    }
}
