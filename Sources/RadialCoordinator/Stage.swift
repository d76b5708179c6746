import RadialModel
import RadialProtocol
import RadialRPC
import RadialWorker

/// What the pipeline hands one stage: the rows visiting it (their hidden states entering its first layer), and
/// the deferred K/V fills of positions that skipped it earlier (hidden states, rows of `fills`).
public struct StageBatch: Sendable {
    public var tokens: [TokenEntry]
    public var hidden: [Float]
    public var fills: [KVFillEntry]
    public var fillHidden: [Float]

    public init(tokens: [TokenEntry], hidden: [Float], fills: [KVFillEntry] = [], fillHidden: [Float] = []) {
        self.tokens = tokens
        self.hidden = hidden
        self.fills = fills
        self.fillHidden = fillHidden
    }
}

/// What a stage answers: the hidden states leaving it, and per row the layers it ran (absolute indices; a
/// `LayerSet` from the shard to the scheduler, a list only on the wire).
public struct StageOutput: Sendable {
    public var hidden: [Float]
    public var layersRun: [LayerSet]

    public init(hidden: [Float], layersRun: [LayerSet]) {
        self.hidden = hidden
        self.layersRun = layersRun
    }
}

/// Something that holds layers [a, b) of the model and a K/V cache per session: a worker over gRPC
/// (`WorkerClient`), or a shard in this process (`LocalStage`). What it serves — range, arithmetic, router, K/V
/// policy — is settled when the stage is made; a batch carries only what changes per call.
public protocol Stage: AnyObject, Sendable {
    var layers: LayerRange { get }
    /// How logs and errors name the stage (a worker's address).
    var name: String { get }
    /// Agrees the K/V and routing policy with whatever computes the stage (a remote worker's Configure), so a
    /// refusal shows before serving.
    func settle() async throws
    func forward(_ batch: StageBatch) async throws -> StageOutput
    /// Frees these sessions' K/V (best effort).
    func closeSessions(_ ids: [UInt64]) async
    /// Takes over a session this stage still holds from before a coordinator restart, cut to its first
    /// `positions` positions; false when the stage holds fewer (then nothing changed).
    func adopt(session: UInt64, positions: Int) async -> Bool
    /// Rows of a batch that did not need this stage (routing), for Status.
    func countSkipped(_ rows: Int)
}

extension Stage {
    /// Nothing to agree by default: an in-process stage is given its policy and chooser at construction.
    public func settle() async throws {}
}

/// A shard in this process as a stage: the pipeline runs exactly the worker's code (`ShardHost`), without the
/// wire. For tests of the pipeline, and for one-process serving.
public final class LocalStage: Stage {
    public let host: ShardHost
    public let name: String
    let kvPolicy: SkippedLayerKV
    let chooser: (any LayerChooser)?

    public init(host: ShardHost, kvPolicy: SkippedLayerKV = .fill, chooser: (any LayerChooser)? = nil, name: String? = nil) {
        self.host = host
        self.kvPolicy = kvPolicy
        self.chooser = chooser
        self.name = name ?? "local \(host.shard.range)"
    }

    public var layers: LayerRange { host.shard.range }

    public func forward(_ batch: StageBatch) async throws -> StageOutput {
        let routed = batch.tokens.contains(where: \.routed)
        let out = try host.forward(tokens: batch.tokens, hidden: batch.hidden, fills: batch.fills, fillHidden: batch.fillHidden,
                                   kvPolicy: kvPolicy, chooser: routed ? chooser : nil)
        return StageOutput(hidden: out.hidden, layersRun: out.layersRun)
    }

    public func closeSessions(_ ids: [UInt64]) async { _ = host.close(ids) }

    public func adopt(session: UInt64, positions: Int) async -> Bool {
        (try? host.adopt(session: session, positions: positions)) != nil
    }

    public func countSkipped(_ rows: Int) {}
}

