import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing

/// Workers and a coordinator as real processes on loopback ports the OS picks.
final class LocalCluster: @unchecked Sendable {
    let workers: [ServerProcess]
    let coordinator: ServerProcess
    let channel: RPCChannel

    /// One worker per inclusive range ("0-0", "1-2"), then the coordinator over them.
    /// `environment`: added to every process's (a token in RADIAL_AUTH_TOKEN, say); `channel` then carries
    /// `bearerToken`.
    init(model: String, layers: [String], workerArgs: [String] = [], coordinatorArgs: [String] = [],
         environment: [String: String] = [:], bearerToken: String? = nil) throws {
        let bin = TestPaths.binDir
        var started: [ServerProcess] = []
        do {
            for range in layers {
                started.append(try ServerProcess(bin + "/radial-worker",
                                                 ["--model", model, "--layers", range, "--listen", "127.0.0.1:0", "--threads", "1"] + workerArgs,
                                                 environment: environment))
            }
            coordinator = try ServerProcess(bin + "/radial-coordinator",
                                            ["--model", model, "--workers", started.map(\.address).joined(separator: ","),
                                             "--listen", "127.0.0.1:0", "--threads", "1", "--connect-timeout", "20"] + coordinatorArgs,
                                            environment: environment)
        } catch {
            for w in started { w.stop() }
            throw error
        }
        workers = started
        var config = ChannelConfig(target: coordinator.address)
        config.bearerToken = bearerToken
        channel = RPCChannel(config)
    }

    /// `init` off the cooperative pool (see `ServerProcess.launch`).
    static func launch(model: String, layers: [String], workerArgs: [String] = [], coordinatorArgs: [String] = [],
                       environment: [String: String] = [:], bearerToken: String? = nil) async throws -> LocalCluster {
        try await blocking {
            try LocalCluster(model: model, layers: layers, workerArgs: workerArgs, coordinatorArgs: coordinatorArgs,
                             environment: environment, bearerToken: bearerToken)
        }
    }

    /// SIGTERM to the coordinator, then the workers; every exit status (0 means a graceful stop).
    @discardableResult
    func stop() -> [Int32] {
        channel.close()
        let c = coordinator.stop()
        return [c] + workers.map { $0.stop() }
    }

    func status() async throws -> StatusReply {
        try await channel.unary(Method.status, StatusRequest(), response: StatusReply.self, options: CallOptions(timeout: .seconds(10)))
    }

    /// One Generate, collected.
    func generate(_ request: GenerateRequest) async throws -> (ids: [Int], text: String, finish: FinishReason?, hops: [Int], layers: [[Int]]) {
        var ids: [Int] = [], text = "", finish: FinishReason?, hops: [Int] = [], layers: [[Int]] = []
        for try await reply in try channel.serverStreaming(Method.generate, request, response: GenerateReply.self,
                                                           options: CallOptions(timeout: .seconds(300))) {
            ids += reply.tokens.map(\.tokenID)
            hops += reply.tokens.map(\.hops)
            layers += reply.tokens.map(\.layersRun)
            text += reply.text
            if let f = reply.finishReason { finish = f }
        }
        return (ids, text, finish, hops, layers)
    }
}

/// The in-process engine: the reference every distributed result must equal.
struct Reference {
    let generator: LocalGenerator

    init(path: String, chooser: (any LayerChooser)? = nil, kvPolicy: SkippedLayerKV = .fill) throws {
        let file = try GGUFFile(path: path)
        generator = LocalGenerator(model: try LlamaModel(file: file), tokenizer: try Tokenizer(gguf: file), chooser: chooser, kvPolicy: kvPolicy)
    }

    /// Runs on a dispatch thread: seconds of model compute must not hold one of the few cooperative threads that
    /// every other test's continuations need.
    func generate(_ ids: [Int], _ sampling: SamplingParameters, maxTokens: Int) async throws -> GenerationResult {
        let generator = generator
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result {
                    try generator.generate(promptIDs: ids, sampling: sampling, stop: StopConditions(maxTokens: maxTokens))
                })
            }
        }
    }
}

enum ClusterTestSupport {
    static func writeTinyModel(seed: UInt64 = 42, layers: Int = 3, weightType: GGMLType = .f32) throws -> String {
        var spec = TinyModelSpec()
        spec.seed = seed
        spec.layers = layers
        spec.weightType = weightType
        let path = try TestPaths.tempDir() + "/tiny.gguf"
        try spec.write(to: path)
        return path
    }

    /// The real model (`RADIAL_MODEL` or the one `scripts/setup.sh model` fetches). Tests that need it fail when it
    /// is missing; only an explicit `RADIAL_SKIP_REAL_MODEL=1` skips them.
    static var realModelPath: String {
        ProcessInfo.processInfo.environment["RADIAL_MODEL"] ?? TestPaths.packageRoot + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    }
    static var realModelWanted: Bool { ProcessInfo.processInfo.environment["RADIAL_SKIP_REAL_MODEL"] != "1" }

    static func requireQwenModel() throws -> String { try TestPaths.requireQwenModel() }

    static func requireRealModel() throws -> String {
        let p = realModelPath
        guard FileManager.default.fileExists(atPath: p) else {
            throw TestFailure("real model missing at \(p): run `scripts/setup.sh model` (or set RADIAL_MODEL, or RADIAL_SKIP_REAL_MODEL=1)")
        }
        return p
    }

    static func sampling(seed: UInt64?) -> SamplingParameters {
        guard let seed else { return .greedy }
        var p = SamplingParameters()
        p.temperature = 0.9
        p.seed = seed
        return p
    }

    static func rpcError(_ body: () async throws -> Void) async -> RPCError? {
        do { try await body(); return nil } catch let e as RPCError { return e } catch { return RPCError(.unknown, "\(error)") }
    }
}
