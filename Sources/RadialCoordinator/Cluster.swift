import RadialModel
import RadialProtocol
import RadialRPC

/// Why the coordinator will not serve with the workers it was given. Each case names the worker and the problem.
public struct ClusterError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}

/// The workers in layer order: every layer of the model served by exactly one stage. Further workers with the very
/// same range as a stage are kept as `replicas`: they are handshaken and shown in Status, and their sessions freed,
/// but no work is sent to them yet (no failover).
public struct Cluster: Sendable {
    public let stages: [WorkerClient]
    public let replicas: [WorkerClient]

    /// Connects to every worker, checks each one's protocol version, model and layer range against this
    /// coordinator's, and that together they cover the model's layers with no gap and no partial overlap.
    public static func connect(addresses: [String], handshake: Handshake, config: LlamaConfig,
                               channel: (String) throws -> ChannelConfig, timeout: Duration,
                               routerFingerprint: String? = nil, activations: String = "f32",
                               log: (String) -> Void) async throws -> Cluster {
        guard !addresses.isEmpty else { throw ClusterError("no workers given") }
        if let dup = Dictionary(grouping: addresses, by: { $0 }).first(where: { $0.value.count > 1 }) {
            throw ClusterError("worker \(dup.key) is listed twice")
        }
        var clients: [WorkerClient] = []
        for address in addresses {
            let ch = RPCChannel(try channel(address))
            let info: WorkerInfo
            do {
                info = try await ch.unary(Method.workerInfo, InfoRequest(handshake: handshake), response: WorkerInfo.self,
                                          options: CallOptions(timeout: timeout, waitForReady: true))
            } catch let error as RPCError {
                throw ClusterError("worker \(address) did not answer its handshake within \(timeout): \(error.code): \(error.message)")
            }
            if info.handshake.protocolVersion != handshake.protocolVersion {
                throw ClusterError("worker \(address) speaks Radial protocol version \(info.handshake.protocolVersion); this coordinator speaks \(handshake.protocolVersion) (run the same Radial release everywhere)")
            }
            if info.handshake.modelFingerprint != handshake.modelFingerprint {
                throw ClusterError("worker \(address) serves another model (fingerprint \(info.handshake.modelFingerprint.prefix(12))…, this coordinator's file is \(handshake.modelFingerprint.prefix(12))…); start every process with the same GGUF file")
            }
            if info.modelLayers != config.layerCount || info.hiddenSize != config.dim {
                throw ClusterError("worker \(address) reports a model of \(info.modelLayers) layers × \(info.hiddenSize), this coordinator's has \(config.layerCount) × \(config.dim)")
            }
            if let want = routerFingerprint, info.routerFingerprint != want {
                let has = info.routerFingerprint.isEmpty ? "has no router" : "holds router \(info.routerFingerprint.prefix(12))…"
                throw ClusterError("worker \(address) \(has), this coordinator routes with \(want.prefix(12))…; start every worker with the same --router file")
            }
            // Every process must multiply the same way, or the cluster's tokens differ from any single process's.
            let theirs = info.activations.isEmpty ? "f32" : info.activations
            if theirs != activations {
                throw ClusterError("worker \(address) runs --activations \(theirs), this coordinator \(activations); start every process with the same --activations")
            }
            log("worker \(address): layers \(info.layers), KV budget \(info.kvBudgetBytes >> 20) MiB, RSS \(info.rssBytes >> 20) MiB")
            clients.append(WorkerClient(address: address, channel: ch, info: info))
        }
        let (stages, replicas) = try plan(clients, layers: config.layerCount)
        return Cluster(stages: stages, replicas: replicas)
    }

    /// Orders workers into stages; refuses gaps and partial overlaps.
    static func plan(_ clients: [WorkerClient], layers: Int) throws -> ([WorkerClient], [WorkerClient]) {
        let sorted = clients.sorted { ($0.layers.lowerBound, $0.layers.upperBound) < ($1.layers.lowerBound, $1.layers.upperBound) }
        var stages: [WorkerClient] = [], replicas: [WorkerClient] = []
        var covered = 0
        for w in sorted {
            if let last = stages.last, last.layers == w.layers { replicas.append(w); continue }
            if w.layers.lowerBound > covered {
                throw ClusterError("layers \(LayerRange(covered, w.layers.lowerBound)) are served by no worker (start one with --layers \(LayerRange(covered, w.layers.lowerBound)))")
            }
            if w.layers.lowerBound < covered, let last = stages.last {
                throw ClusterError("workers \(last.address) (layers \(last.layers)) and \(w.address) (layers \(w.layers)) overlap; ranges must tile the model")
            }
            stages.append(w)
            covered = w.layers.upperBound
        }
        if covered < layers {
            throw ClusterError("layers \(LayerRange(covered, layers)) are served by no worker (start one with --layers \(LayerRange(covered, layers)))")
        }
        return (stages, replicas)
    }
}
