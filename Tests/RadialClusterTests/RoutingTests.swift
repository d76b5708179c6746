import Foundation
import RadialModel
import RadialProtocol
import RadialRouter
import RadialRPC
import RadialTestSupport
import Testing

/// Routing through real processes: the coordinator skips workers the router does not need, workers route layer
/// by layer with the same router file, and the result is exactly the in-process routed engine.
@Suite struct RoutingTests {
    /// A 6-layer tiny model, a router distilled from it, written next to it. Quantised weights: their kernels give
    /// the same bits whatever the batch (up to 64 rows), so a router decision near its threshold cannot flip
    /// between the cluster's batches and the in-process reference's.
    static func setUp(blockSize: Int = 1, runs: [LayerRange] = [], bypass: Bool = false) throws -> (model: String, routerPath: String, router: Router) {
        let model = try ClusterTestSupport.writeTinyModel(seed: 42, layers: 6, weightType: .q8_0)
        let (_, router) = try TinyRouter.distil(modelPath: model, blockSize: blockSize) { $0.runs = runs; $0.bypass = bypass }
        let path = (model as NSString).deletingLastPathComponent + "/tiny.rdrt"
        try router.write(to: path)
        return (model, path, router)
    }

    static let layers = ["0-1", "2-3", "4-5"]
    // Routed clusters run with --max-pending-fills 2: a session's fills for a worker it keeps skipping are then
    // also sent on their own (a fills-only Forward), and the output must not change.
    static let prompts = (0..<4).map { i in (0..<(4 + 6 * i)).map { 3 + ($0 * 7 + i * 13) % 250 } }

    func check(policy kv: SkippedLayerKV, blockSize: Int = 1, runs: [LayerRange] = [], bypass: Bool = false) async throws {
        let (model, routerPath, router) = try await blocking { try Self.setUp(blockSize: blockSize, runs: runs, bypass: bypass) }
        #expect(router.maps.count == (bypass ? runs.count : 0))
        let threshold = try router.threshold(forSkipRate: 0.4, alwaysRun: LayerSet())
        let policy = RoutingPolicy(threshold: threshold, alwaysRun: LayerSet(), modelLayers: 6)
        let reference = try Reference(path: model, chooser: RouterChooser(router: router, policy: policy), kvPolicy: kv)
        #expect(router.header.block == blockSize)
        let cluster = try await blocking { try await LocalCluster.launch(model: model, layers: Self.layers, workerArgs: ["--router", routerPath],
                                       coordinatorArgs: ["--router", routerPath, "--threshold", "\(threshold)", "--always-run", "none",
                                                         "--kv-policy", kv.rawValue, "--max-pending-fills", "2"]) }
        let cases = Self.prompts.enumerated().map { (prompt: $1, sampling: ClusterTestSupport.sampling(seed: $0 % 2 == 0 ? nil : UInt64(500 + $0))) }
        var expected: [GenerationResult] = []
        for c in cases { expected.append(try await reference.generate(c.prompt, c.sampling, maxTokens: 20)) }
        let results = try await withThrowingTaskGroup(of: (Int, [Int], [[Int]], [Int]).self) { group in
            for (i, c) in cases.enumerated() {
                group.addTask {
                    let r = try await cluster.generate(GenerateRequest(input: .ids(c.prompt), sampling: c.sampling, maxTokens: 20))
                    return (i, r.ids, r.layers, r.hops)
                }
            }
            var out: [(Int, [Int], [[Int]], [Int])] = []
            for try await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        var allHops: [Int] = []
        for (i, ids, layers, hops) in results {
            #expect(ids == expected[i].generatedIDs, "request \(i) (\(kv)): tokens equal the in-process routed engine")
            #expect(layers == expected[i].layersRun, "request \(i) (\(kv)): and so do the layers each token ran")
            for (l, h) in zip(layers, hops) {
                let visited = Self.layers.indices.filter { w in l.contains { $0 / 2 == w } }.count
                #expect(h >= visited, "a token visits at least the workers whose layers it ran")
            }
            allHops += hops
            for run in runs {
                #expect(layers.allSatisfy { ran in run.indices.allSatisfy(ran.contains) || !run.indices.contains(where: ran.contains) },
                        "a run router runs \(run) whole or not at all: \(layers)")
            }
            if blockSize > 1 {
                #expect(layers.allSatisfy { run in run.allSatisfy { run.contains($0 / blockSize * blockSize) } && run.count % blockSize == 0 },
                        "a block router runs whole blocks: \(layers)")
            }
        }
        #expect(allHops.contains { $0 < Self.layers.count }, "some tokens skip a whole worker: \(allHops)")
        #expect(allHops.allSatisfy { $0 <= Self.layers.count })
        let status = try await cluster.status()
        #expect(status.hopsSavedPerToken > 0)
        #expect(status.workers.contains { $0.visitsSkipped > 0 })
        #expect(status.layerSkipRate.contains { $0 > 0 })
        #expect(status.kvPolicy == kv)
        #expect(status.routing?.routerFingerprint == router.fingerprint && status.routing?.threshold == threshold)
        #expect(status.routerBlock == blockSize)
        let exits = cluster.stop()
        #expect(exits.allSatisfy { $0 == 0 }, "graceful stop, got \(exits)")
    }

    @Test func routedClusterEqualsInProcessUnderFill() async throws { try await check(policy: .fill) }
    @Test func routedClusterEqualsInProcessUnderMask() async throws { try await check(policy: .mask) }
    /// A router that decides each worker's two layers together: a token runs a worker whole or skips it.
    @Test func blockRouterClusterEqualsInProcess() async throws { try await check(policy: .fill, blockSize: 2) }

    /// A router deciding the middle worker's layers 2-3 as one run (every other layer alone): the run is a hop a token
    /// skips, through real processes exactly as in the in-process engine.
    @Test func runRouterClusterEqualsInProcess() async throws { try await check(policy: .fill, runs: [LayerRange(2, 4)]) }

    /// The same run with a fitted map (`train-router --bypass`): a token skipping the middle worker leaves it through
    /// the map, applied by the coordinator, and the result is still exactly the in-process engine's.
    @Test func mappedRunRouterClusterEqualsInProcess() async throws { try await check(policy: .fill, runs: [LayerRange(2, 4)], bypass: true) }

    /// A worker whose range starts inside a run could not make the run's decision: it refuses to start.
    @Test func workerRefusesARangeSplittingARun() async throws {
        let (model, routerPath, _) = try await blocking { try Self.setUp(runs: [LayerRange(2, 4)]) }
        let result = try await blocking { try TestPaths.execute(TestPaths.binDir + "/radial-worker",
                                                               ["--model", model, "--layers", "3-5", "--listen", "127.0.0.1:0", "--router", routerPath]) }
        #expect(result.status != 0)
        #expect(result.stderr.contains("runs 2-3"), "\(result.stderr)")
    }

    /// A worker whose range starts inside a block could not make the block's decision: it refuses to start.
    @Test func workerRefusesARangeSplittingABlock() async throws {
        let (model, routerPath, _) = try await blocking { try Self.setUp(blockSize: 2) }
        let result = try await blocking { try TestPaths.execute(TestPaths.binDir + "/radial-worker",
                                                               ["--model", model, "--layers", "1-5", "--listen", "127.0.0.1:0", "--router", routerPath]) }
        #expect(result.status != 0)
        #expect(result.stderr.contains("blocks of 2"), "\(result.stderr)")
    }

    @Test func thresholdZeroIsTheDenseModel() async throws {
        let (model, routerPath, _) = try await blocking { try Self.setUp() }
        let reference = try Reference(path: model)
        let cluster = try await blocking { try await LocalCluster.launch(model: model, layers: Self.layers, workerArgs: ["--router", routerPath],
                                       coordinatorArgs: ["--router", routerPath, "--threshold", "0"]) }
        for p in Self.prompts.prefix(2) {
            let expected = try await reference.generate(p, .greedy, maxTokens: 16)
            let got = try await cluster.generate(GenerateRequest(input: .ids(p), sampling: .greedy, maxTokens: 16))
            #expect(got.ids == expected.generatedIDs)
            #expect(got.hops.allSatisfy { $0 == 3 } && got.layers.allSatisfy { $0 == Array(0..<6) })
        }
        #expect(cluster.stop().allSatisfy { $0 == 0 })
    }

    @Test func coordinatorRefusesWorkersWithoutTheRouter() async throws {
        let (model, routerPath, _) = try await blocking { try Self.setUp() }
        let worker = try await blocking { try await ServerProcess.launch(TestPaths.binDir + "/radial-worker", ["--model", model, "--layers", "0-5", "--listen", "127.0.0.1:0"]) }
        defer { worker.stop() }
        let result = try await blocking { try TestPaths.execute(TestPaths.binDir + "/radial-coordinator",
                                           ["--model", model, "--workers", worker.address, "--listen", "127.0.0.1:0", "--router", routerPath,
                                            "--connect-timeout", "20"]) }
        #expect(result.status != 0)
        #expect(result.stderr.contains("has no router") && result.stderr.contains(worker.address), "\(result.stderr)")
    }

    @Test func workerRefusesARouterOfAnotherModel() async throws {
        let (_, routerPath, _) = try await blocking { try Self.setUp() }
        let other = try ClusterTestSupport.writeTinyModel(seed: 9, layers: 6, weightType: .q8_0)
        let result = try await blocking { try TestPaths.execute(TestPaths.binDir + "/radial-worker",
                                           ["--model", other, "--layers", "0-5", "--listen", "127.0.0.1:0", "--router", routerPath]) }
        #expect(result.status != 0)
        #expect(result.stderr.contains("another model"), "\(result.stderr)")
    }
}

/// The same through the real model: a router distilled in the test from a little real text (a weak router, but a
/// real one), three workers of ten layers, two concurrent requests.
@Suite struct RealModelRoutingTests {
    static let corpus = TestPaths.packageRoot + "/data/fortunes-train.txt"

    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    func routedClusterEqualsInProcess() async throws {
        let model = try ClusterTestSupport.requireRealModel()
        guard FileManager.default.fileExists(atPath: Self.corpus) else {
            throw TestFailure("corpus missing at \(Self.corpus): run scripts/setup.sh corpus")
        }
        let (routerPath, policy, router, prompts) = try await blocking { () throws -> (String, RoutingPolicy, Router, [[Int]]) in
            let file = try GGUFFile(path: model)
            let llama = try LlamaModel(file: file)
            let tokenizer = try Tokenizer(gguf: file)
            let windows = try TokenWindows(path: Self.corpus, tokenizer: tokenizer, windowLength: 64, maxTokens: 256)
            var distiller = RouterDistiller()
            distiller.trainer.width = 16
            distiller.trainer.epochs = 2
            distiller.rounds = 2
            let router = try distiller.distil(model: llama, modelFingerprint: file.fingerprint, windows: windows, windowLength: 64)
            let path = try TestPaths.tempDir() + "/smollm2.rdrt"
            try router.write(to: path)
            let policy = RoutingPolicy.firstAndLast(threshold: try router.threshold(forSkipRate: 0.15, alwaysRun: LayerSet([0, 29])), modelLayers: 30)
            let prompts = ["The capital of France is", "Once upon a time, in a small village,"].map { tokenizer.encode($0) }
            return (path, policy, router, prompts)
        }
        let reference = try await blocking { try Reference(path: model, chooser: RouterChooser(router: router, policy: policy)) }
        var expected: [GenerationResult] = []
        for p in prompts { expected.append(try await reference.generate(p, .greedy, maxTokens: 16)) }
        let cluster = try await blocking {
            try await LocalCluster.launch(model: model, layers: ["0-9", "10-19", "20-29"], workerArgs: ["--router", routerPath],
                             coordinatorArgs: ["--router", routerPath, "--threshold", "\(policy.threshold)"])
        }
        let results = try await withThrowingTaskGroup(of: (Int, [Int], [[Int]]).self) { group in
            for (i, p) in prompts.enumerated() {
                group.addTask {
                    let r = try await cluster.generate(GenerateRequest(input: .ids(p), sampling: .greedy, maxTokens: 16))
                    return (i, r.ids, r.layers)
                }
            }
            var out: [(Int, [Int], [[Int]])] = []
            for try await r in group { out.append(r) }
            return out
        }
        for (i, ids, layers) in results {
            #expect(ids == expected[i].generatedIDs, "prompt \(i): tokens equal the in-process routed engine")
            #expect(layers == expected[i].layersRun, "prompt \(i): and the layers each token ran")
        }
        let skipped = expected.flatMap(\.layersRun).reduce(0) { $0 + 30 - $1.count }
        #expect(skipped > 0, "the router skipped some layers")
        let status = try await cluster.status()
        #expect(status.layerSkipRate[0] == 0 && status.layerSkipRate[29] == 0, "first and last always run")
        #expect(status.layerSkipRate.contains { $0 > 0 })
        #expect(cluster.stop().allSatisfy { $0 == 0 })
    }
}
