import Foundation
@testable import RadialCoordinator
import RadialModel
import RadialProtocol
import RadialRouter
import RadialRPC
import RadialTestSupport
import RadialWorker
import Testing

/// The pipeline and the scheduler over in-process stages (`LocalStage`): routing, deferred fills under both K/V
/// policies, whole-stage skips and errors, against the in-process engine — no process, no socket.
@Suite struct PipelineTests {
    /// A tiny quantised model (batch-invariant kernels: a router decision cannot flip between batches).
    static func tinyModel(layers: Int = 6) throws -> String {
        var spec = TinyModelSpec()
        spec.layers = layers
        spec.weightType = .q8_0
        let path = try TestPaths.tempDir() + "/tiny.gguf"
        try spec.write(to: path)
        return path
    }

    /// One LocalStage per range, each with its own shard and session store, as separate workers would have.
    static func stages(_ path: String, _ ranges: [LayerRange], kvPolicy: SkippedLayerKV = .fill,
                       chooser: (any LayerChooser)? = nil) throws -> [LocalStage] {
        let file = try GGUFFile(path: path)
        let config = try LlamaConfig(gguf: file)
        return try ranges.map {
            LocalStage(host: ShardHost(shard: try LlamaShard(file: file, config: config, range: $0), kvBudgetBytes: 64 << 20,
                                       sessionTTL: .seconds(600), maxBatchTokens: 512, maps: chooser?.maps ?? []),
                       kvPolicy: kvPolicy, chooser: chooser)
        }
    }

    static let ranges = [LayerRange(0, 2), LayerRange(2, 4), LayerRange(4, 6)]

    @Test func denseStagesEqualTheWholeShard() async throws {
        let path = try Self.tinyModel()
        let model = try LlamaModel(file: try GGUFFile(path: path))
        let pipeline = Pipeline(stages: try Self.stages(path, Self.ranges), dim: model.config.dim)
        let ids = [5, 9, 30, 41, 7, 100]
        var hidden = try model.head.embed(ids)
        let traces = try await pipeline.forward(ids.indices.map { Pipeline.Row(session: 1, position: $0) }, hidden: &hidden)
        var local = try model.head.embed(ids)
        let cache = model.makeCache()
        _ = try local.withUnsafeMutableBufferPointer {
            try model.shard.forward($0.baseAddress!, tokens: ids.indices.map { ShardToken(cache: cache, position: $0) })
        }
        #expect(hidden == local, "three stages equal one shard of all layers, bit for bit")
        #expect(traces.allSatisfy { $0.hops == 3 && $0.layersRun.sorted == Array(0..<6) })
    }

    /// A router deciding a hand-named run of layers as one unit (`train-router --runs`): every token runs the run
    /// whole or skips it whole, through the pipeline exactly as in the in-process engine, and the router file keeps
    /// its units.
    @Test func aRunRouterSkipsItsRunWhole() async throws {
        let path = try Self.tinyModel()
        let (model, router) = try await blocking {
            try TinyRouter.distil(modelPath: path) { $0.runs = [LayerRange(2, 4)]; $0.labels = .cost }
        }
        #expect(router.header.layout.starts == [0, 1, 2, 4, 5] && router.network.layers == 5)
        let file = try TestPaths.tempDir() + "/runs.rdrt"
        try router.write(to: file)
        let copy = try Router(path: file)
        #expect(copy.header.layout == router.header.layout && copy.fingerprint == router.fingerprint)
        let policy = RoutingPolicy(threshold: try router.threshold(forSkipRate: 0.3, alwaysRun: LayerSet()), alwaysRun: LayerSet(), modelLayers: 6)
        let chooser = RouterChooser(router: router, policy: policy)
        #expect(chooser.aligned(with: Self.ranges) && !chooser.aligned(with: [LayerRange(0, 3), LayerRange(3, 6)]))
        let (traces, same) = try await Self.routedBothWays(path, model: model, chooser: chooser, ids: (0..<24).map { 3 + ($0 * 37) % 240 })
        #expect(same, "the pipeline equals the in-process shard: layers run and states")
        #expect(traces.allSatisfy { $0.layersRun.contains(2) == $0.layersRun.contains(3) }, "the run 2-3 runs or skips whole")
        #expect(traces.contains { !$0.layersRun.contains(2) }, "some token skipped the run")
    }

    /// A run router with a fitted map (`train-router --bypass`): a token skipping the run leaves it through the map,
    /// in the pipeline exactly as in the in-process engine. With the run a stage's whole range, and inside a stage
    /// before other layers, where the coordinator, deciding whether a token skips the stage, must score the later
    /// layers from the mapped state as the stage would.
    @Test(arguments: [[LayerRange(0, 2), LayerRange(2, 4), LayerRange(4, 6)], [LayerRange(0, 2), LayerRange(2, 6)]])
    func aMappedRunIsBridgedAsInProcess(_ ranges: [LayerRange]) async throws {
        let path = try Self.tinyModel()
        let (model, router) = try await blocking {
            try TinyRouter.distil(modelPath: path) { $0.runs = [LayerRange(2, 4)]; $0.labels = .cost; $0.bypass = true }
        }
        #expect(router.maps.count == 1)
        let policy = RoutingPolicy(threshold: try router.threshold(forSkipRate: 0.4, alwaysRun: LayerSet()), alwaysRun: LayerSet(), modelLayers: 6)
        let chooser = RouterChooser(router: router, policy: policy)
        let ids = (0..<24).map { 3 + ($0 * 37) % 240 }
        let (traces, same) = try await Self.routedBothWays(path, model: model, chooser: chooser, ids: ids, ranges: ranges)
        #expect(same, "the pipeline equals the in-process shard: layers run and states")
        #expect(traces.contains { !$0.layersRun.contains(2) }, "some token skipped the run")
        // Without the map the same router gives other states: the map was applied.
        let unmapped = RouterChooser(network: router.network, policy: policy, layout: router.header.layout)
        let (_, sameWithout) = try await Self.routedBothWays(path, model: model, chooser: unmapped, ids: ids, ranges: ranges, against: chooser)
        #expect(!sameWithout)
    }

    /// A batch over the decode kernels' row limit runs sgemm, where a row's bits depend on the rest of the batch.
    /// The pipeline never mixes sessions in such a call, so each session's rows come out as they would alone — and
    /// replaying one session alone on a replica (failover) gives the same K/V.
    @Test func aWideBatchComputesEachSessionAsAlone() async throws {
        var spec = TinyModelSpec()
        spec.layers = 2
        spec.weightType = .f16
        let path = try TestPaths.tempDir() + "/wide.gguf"
        try spec.write(to: path)
        let model = try LlamaModel(file: try GGUFFile(path: path))
        let dim = model.config.dim, limit = Linear.quantizedMaxRows
        let long = (0..<(limit + 9)).map { 3 + ($0 * 11) % 200 }, short = [7, 8, 9]
        // Session 1's long prompt with session 2's short one: one batch, wider than the limit.
        let pipeline = Pipeline(stages: try Self.stages(path, [LayerRange(0, 2)]), dim: dim)
        var both = try model.head.embed(long + short)
        _ = try await pipeline.forward(long.indices.map { Pipeline.Row(session: 1, position: $0) }
                                       + short.indices.map { Pipeline.Row(session: 2, position: $0) }, hidden: &both)
        for (session, ids, offset) in [(UInt64(1), long, 0), (2, short, long.count)] {
            let alone = Pipeline(stages: try Self.stages(path, [LayerRange(0, 2)]), dim: dim)
            var hidden = try model.head.embed(ids)
            _ = try await alone.forward(ids.indices.map { Pipeline.Row(session: session, position: $0) }, hidden: &hidden)
            let same = Array(both[(offset * dim)..<((offset + ids.count) * dim)]) == hidden
            #expect(same, "session \(session) as alone, bit for bit")
        }
        // How a mixed wide batch is cut: the wide session alone, the narrow ones packed up to the limit.
        let tokens = (0..<70).map { TokenEntry(sessionID: 1, position: $0) } + (0..<40).map { TokenEntry(sessionID: 2, position: $0) }
            + (0..<30).map { TokenEntry(sessionID: 3, position: $0) } + [TokenEntry(sessionID: 4, position: 9)]
        let batch = StageBatch(tokens: tokens, hidden: [], fills: [KVFillEntry(sessionID: 4, position: 8)], fillHidden: [])
        let parts = Pipeline.parts(of: batch, limit: 64)
        #expect(parts.map { Set($0.tokens.map { tokens[$0].sessionID }) } == [[1], [2], [3, 4]])
        #expect(parts[2].fills == [0] && parts.map(\.tokens.count) == [70, 40, 31])
        #expect(Pipeline.parts(of: StageBatch(tokens: Array(tokens.prefix(70)), hidden: [], fills: [], fillHidden: []), limit: 64).count == 1,
                "one session: one call however wide")
    }

    /// The first positions of a sequence run every layer on every stage (`--dense-positions`), the rest are routed;
    /// the pipeline and the in-process shard agree on both.
    @Test func densePositionsVisitEveryStage() async throws {
        let path = try Self.tinyModel()
        let (model, router) = try await blocking { try TinyRouter.distil(modelPath: path) }
        let policy = RoutingPolicy(threshold: 2, alwaysRun: LayerSet(), densePositions: 2, modelLayers: 6)  // skips all it may
        let chooser = RouterChooser(router: router, policy: policy)
        let (traces, same) = try await Self.routedBothWays(path, model: model, chooser: chooser, ids: [5, 9, 30, 41])
        #expect(traces[0].layersRun.sorted == Array(0..<6) && traces[1].layersRun.sorted == Array(0..<6))
        #expect(traces[2].hops == 0 && traces[3].hops == 0, "later positions skip everything")
        #expect(same, "the pipeline equals the in-process shard: layers run and states")
    }

    /// One session's tokens through routed local stages (one per range of `ranges`) and through the whole shard in
    /// this process with the same chooser: the pipeline's traces, and whether both ran the same layers to the same
    /// states, bit for bit.
    /// `against`: the in-process engine's chooser, when not `chooser`.
    static func routedBothWays(_ path: String, model: LlamaModel, chooser: RouterChooser, ids: [Int], ranges: [LayerRange] = ranges,
                               against: RouterChooser? = nil) async throws -> (traces: [Pipeline.Trace], same: Bool) {
        let pipeline = Pipeline(stages: try stages(path, ranges, chooser: chooser), dim: model.config.dim, chooser: chooser)
        var hidden = try model.head.embed(ids)
        let traces = try await pipeline.forward(ids.indices.map { Pipeline.Row(session: 1, position: $0) }, hidden: &hidden)
        var local = try model.head.embed(ids)
        let cache = model.makeCache()
        let ran = try local.withUnsafeMutableBufferPointer {
            try model.shard.forward($0.baseAddress!, tokens: ids.indices.map { ShardToken(cache: cache, position: $0) }, chooser: against ?? chooser)
        }
        return (traces, ran == traces.map(\.layersRun) && hidden == local)
    }

    /// Generations through the scheduler over routed local stages equal the in-process routed engine: tokens and
    /// the layers each token ran, with whole stages skipped and their K/V filled later (or masked).
    @Test(arguments: [SkippedLayerKV.fill, .mask])
    func routedSchedulerEqualsTheInProcessEngine(_ kv: SkippedLayerKV) async throws {
        let path = try Self.tinyModel()
        let (model, router) = try await blocking { try TinyRouter.distil(modelPath: path) }
        let file = try GGUFFile(path: path)
        let tokenizer = try Tokenizer(gguf: file)
        let threshold = try router.threshold(forSkipRate: 0.4, alwaysRun: LayerSet())
        let policy = RoutingPolicy(threshold: threshold, alwaysRun: LayerSet(), modelLayers: 6)
        let chooser = RouterChooser(router: router, policy: policy)
        let reference = LocalGenerator(model: model, tokenizer: tokenizer, chooser: chooser, kvPolicy: kv)
        let routing = RoutingSetup(router: router, policy: policy)
        let stages = try Self.stages(path, Self.ranges, kvPolicy: kv, chooser: chooser)
        var limits = SchedulerLimits()
        limits.maxPendingFills = 2  // fills-only calls happen too
        let pipeline = Pipeline(stages: stages, dim: model.config.dim, chooser: chooser, kvPolicy: kv, maxPendingFills: 2)
        let scheduler = Scheduler(head: model.head, tokenizer: tokenizer, pipeline: pipeline, limits: limits, routing: routing)
        let loop = Task { await scheduler.run() }
        defer { scheduler.stopAccepting(); loop.cancel() }

        let prompts = (0..<4).map { i in (0..<(4 + 6 * i)).map { 3 + ($0 * 7 + i * 13) % 250 } }
        let stop = { var s = StopConditions(maxTokens: 20); s.stopAtEndOfGeneration = false; return s }()
        var allHops: [Int] = []
        let results = try await withThrowingTaskGroup(of: (Int, [Int], [[Int]], [Int]).self) { group in
            for (i, p) in prompts.enumerated() {
                group.addTask {
                    let state = try GenerationState(promptIDs: p, sampling: .greedy, stop: stop, contextLength: model.config.contextLength)
                    let (_, events) = try scheduler.submit(state)
                    var ids: [Int] = [], layers: [[Int]] = [], hops: [Int] = []
                    for await e in events {
                        switch e {
                        case .token(let t, _): ids.append(t.tokenID); layers.append(t.layersRun); hops.append(t.hops)
                        case .failed(let error): throw error
                        default: break
                        }
                    }
                    return (i, ids, layers, hops)
                }
            }
            var out: [(Int, [Int], [[Int]], [Int])] = []
            for try await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        for (i, ids, layers, hops) in results {
            let want = try reference.generate(promptIDs: prompts[i], sampling: .greedy, stop: stop)
            #expect(ids == want.generatedIDs, "request \(i) (\(kv)): tokens")
            #expect(layers == want.layersRun, "request \(i) (\(kv)): layers run")
            allHops += hops
        }
        #expect(allHops.contains { $0 < 3 }, "some token skipped a whole stage")
        #expect(results.flatMap(\.2).contains { $0.count < 6 }, "some token skipped a layer")
    }

    /// A row that skips a stage leaves a deferred fill there; the session's next visit carries it, so the K/V
    /// the later rows attend to equal the in-process engine's under `fill`; release drops what is left.
    @Test func skippedStageFillsRideAlongWithTheNextVisit() async throws {
        let path = try Self.tinyModel(layers: 4)
        let model = try LlamaModel(file: try GGUFFile(path: path))
        let dim = model.config.dim
        let pipeline = Pipeline(stages: try Self.stages(path, [LayerRange(0, 2), LayerRange(2, 4)]), dim: dim,
                                chooser: ScriptedRouter(skip: [(stage: LayerRange(2, 4), callsAt: 1), (stage: LayerRange(2, 4), callsAt: 4)]), kvPolicy: .fill)
        let ids = [5, 9, 30]
        var traces: [Pipeline.Trace] = []
        var finals: [[Float]] = []
        for (p, id) in ids.enumerated() {  // one decode-like step per position
            var h = try model.head.embed([id])
            traces += try await pipeline.forward([Pipeline.Row(session: 7, position: p)], hidden: &h)
            finals.append(h)
            if p == 1 { #expect(pipeline.pendingFillCount(session: 7) == 1, "position 1 skipped stage 1: one fill waits") }
            if p == 2 { #expect(pipeline.pendingFillCount(session: 7) == 0, "position 2 visited stage 1 and carried it") }
        }
        #expect(traces.map(\.hops) == [2, 1, 2])
        #expect(traces[1].layersRun.sorted == [0, 1])
        // The in-process engine with position 1 skipping layers 2 and 3 under `fill`.
        let cache = model.makeCache()
        for (p, id) in ids.enumerated() {
            let layers: LayerSet? = p == 1 ? LayerSet([0, 1]) : nil
            var local = try model.head.embed([id])
            _ = try local.withUnsafeMutableBufferPointer {
                try model.shard.forward($0.baseAddress!, tokens: [ShardToken(cache: cache, position: p, layers: layers)], kvPolicy: .fill)
            }
            #expect(finals[p] == local, "position \(p)")
        }
        // A skip that is never followed by a visit: release forgets it.
        var h = try model.head.embed([11])
        _ = try await pipeline.forward([Pipeline.Row(session: 8, position: 0)], hidden: &h)
        _ = try await pipeline.forward([Pipeline.Row(session: 8, position: 1)], hidden: &h)
        #expect(pipeline.pendingFillCount(session: 8) == 1)
        pipeline.release([8])
        #expect(pipeline.pendingFillCount(session: 8) == 0)
    }

    /// A restarted scheduler adopts a session its stages still hold (a client resuming after a coordinator
    /// restart): it feeds only the context's last token and continues exactly as an unbroken run.
    @Test func aRestartedSchedulerAdoptsASessionTheStagesHold() async throws {
        let path = try Self.tinyModel()
        let file = try GGUFFile(path: path)
        let model = try LlamaModel(file: file), tokenizer = try Tokenizer(gguf: file)
        let prompt = [5, 9, 30, 41, 7], total = 14, first = 6
        var stop = StopConditions(maxTokens: total)
        stop.stopAtEndOfGeneration = false
        let want = try LocalGenerator(model: model, tokenizer: tokenizer).generate(promptIDs: prompt, sampling: .greedy, stop: stop)
        let stages = try Self.stages(path, Self.ranges)

        // The first coordinator generates `first` tokens and dies: its sessions stay on the stages.
        let crashed = Pipeline(stages: stages.map { KeepingStage($0) }, dim: model.config.dim)
        let before = Scheduler(head: model.head, tokenizer: tokenizer, pipeline: crashed, limits: SchedulerLimits())
        let loopA = Task { await before.run() }
        var shortStop = StopConditions(maxTokens: first)
        shortStop.stopAtEndOfGeneration = false
        let (session, eventsA) = try before.submit(try GenerationState(promptIDs: prompt, sampling: .greedy, stop: shortStop, contextLength: 256))
        var got: [Int] = []
        for await e in eventsA { if case .token(let t, _) = e { got.append(t.tokenID) } }
        before.stopAccepting(); await loopA.value
        #expect(got == Array(want.generatedIDs.prefix(first)))

        // The new one adopts it and continues.
        let pipeline = Pipeline(stages: stages, dim: model.config.dim)
        let after = Scheduler(head: model.head, tokenizer: tokenizer, pipeline: pipeline, limits: SchedulerLimits())
        let loopB = Task { await after.run() }
        defer { after.stopAccepting(); loopB.cancel() }
        var state = try GenerationState(promptIDs: prompt, sampling: .greedy, stop: stop, contextLength: 256)
        try state.resume(after: got, tokenizer: tokenizer)
        #expect(await after.adopt(session: session, state: state))
        let (id, events) = try after.submit(state, adopted: session)
        #expect(id == session)
        for await e in events { if case .token(let t, _) = e { got.append(t.tokenID) } }
        #expect(got == want.generatedIDs, "adopted, the generation continues exactly")
        #expect(after.currentMetrics.sessionsAdopted == 1)
        // A session the stages do not hold (or hold too little of) is not adopted.
        #expect(await after.adopt(session: session &+ 1, state: state) == false)
    }

    /// A stage that fails fails the batch with its status; the scheduler fails every session in the batch.
    @Test func aFailingStageFailsTheBatchWithItsStatus() async throws {
        let path = try Self.tinyModel(layers: 2)
        let model = try LlamaModel(file: try GGUFFile(path: path))
        let file = try GGUFFile(path: path)
        let stages: [any Stage] = [try Self.stages(path, [LayerRange(0, 1)])[0], FailingStage(layers: LayerRange(1, 2))]
        let pipeline = Pipeline(stages: stages, dim: model.config.dim)
        let scheduler = Scheduler(head: model.head, tokenizer: try Tokenizer(gguf: file), pipeline: pipeline, limits: SchedulerLimits())
        let loop = Task { await scheduler.run() }
        defer { scheduler.stopAccepting(); loop.cancel() }
        let state = try GenerationState(promptIDs: [5, 6, 7], sampling: .greedy, stop: StopConditions(maxTokens: 4), contextLength: 256)
        let (_, events) = try scheduler.submit(state)
        var failure: RPCError?
        for await e in events { if case .failed(let error) = e { failure = error } }
        #expect(failure?.code == .unavailable)
        #expect(failure?.message.contains("worker gone") == true, "\(String(describing: failure))")
    }
}

/// A stage that never frees a session: what a coordinator that died leaves on its workers.
final class KeepingStage: Stage {
    let inner: LocalStage
    init(_ inner: LocalStage) { self.inner = inner }
    var layers: LayerRange { inner.layers }
    var name: String { inner.name }
    func forward(_ batch: StageBatch) async throws -> StageOutput { try await inner.forward(batch) }
    func closeSessions(_ ids: [UInt64]) async {}
    func countSkipped(_ rows: Int) {}
    func adopt(session: UInt64, positions: Int) async -> Bool { await inner.adopt(session: session, positions: positions) }
}

/// A stage whose worker is gone.
final class FailingStage: Stage {
    let layers: LayerRange
    let name = "failing"
    init(layers: LayerRange) { self.layers = layers }
    func forward(_ batch: StageBatch) async throws -> StageOutput { throw RPCError(.unavailable, "worker gone") }
    func closeSessions(_ ids: [UInt64]) async {}
    func countSkipped(_ rows: Int) {}
    func adopt(session: UInt64, positions: Int) async -> Bool { false }
}

/// Skips a stage on the given call numbers (0-based, counting calls that ask about that stage).
final class ScriptedRouter: StageRouter, @unchecked Sendable {
    let skips: [(stage: LayerRange, callsAt: Int)]
    private var calls: [LayerRange: Int] = [:]
    private let lock = NSLock()
    init(skip: [(stage: LayerRange, callsAt: Int)]) { skips = skip }
    func visits(_ layers: LayerRange, hidden: UnsafePointer<Float>, runSoFar: Int, activations: QuantizedMatrix.Activations) -> Bool {
        lock.lock(); defer { lock.unlock() }
        let n = calls[layers, default: 0]
        calls[layers] = n + 1
        return !skips.contains { $0.stage == layers && $0.callsAt == n }
    }
}
