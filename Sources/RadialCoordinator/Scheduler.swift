import RadialModel
import RadialProtocol
import RadialRouter
import RadialRPC
import RadialWorker
import Synchronization

/// Per-token depth: the router the coordinator consults to decide which workers a token visits, and the same
/// policy on the wire for the workers, which decide layer by layer with the same router file.
public struct RoutingSetup: Sendable {
    public let chooser: RouterChooser
    public let wire: WireRouting

    public init(router: Router, policy: RoutingPolicy) {
        chooser = RouterChooser(router: router, policy: policy)
        wire = WireRouting(routerFingerprint: router.fingerprint, threshold: policy.threshold,
                           alwaysRun: (0..<policy.modelLayers).filter(policy.alwaysRun.contains), minLayers: policy.minLayers)
    }
}

/// Limits of the scheduler, each refused with its own status code (see CoordinatorService).
public struct SchedulerLimits: Sendable {
    /// Sessions decoding at once; more wait in the queue.
    public var maxSessions = 16
    /// Requests waiting for a slot; beyond this Generate is RESOURCE_EXHAUSTED.
    public var maxQueued = 64
    /// Rows per step: a long prompt is prefilled in chunks of this size, between other sessions' decode steps.
    public var maxBatchTokens = 512
    /// How long one Forward may take before the step fails.
    public var forwardTimeout: Duration = .seconds(60)
    /// Deferred K/V fills a session may hold for one worker it keeps skipping; at this many they are sent in that
    /// step even without a token for the worker, so they never outgrow a worker's batch or the batch-invariant rows.
    public var maxPendingFills = 32
    /// Lanes the running sessions are split over; each lane steps its own batch through the workers, so while one
    /// lane's batch is on one worker another's can be on the next or at the LM head (a pipeline: processes that
    /// would wait for each other overlap). A session stays in its lane, and every row is computed as it is alone,
    /// so the output does not depend on the lane count. 1: one batch through the whole pipeline per step.
    public var lanes = 2
    public init() {}
}

/// What a running generation reports to its Generate call.
public enum SessionEvent: Sendable {
    /// A generated token: what it cost (layers, hops) and the text it completed.
    case token(TokenTrace, text: String)
    /// Text released without a new token (held-back text at the end).
    case text(String)
    case finished(FinishReason, prefillTokensPerSecond: Double, decodeTokensPerSecond: Double)
    case failed(RPCError)
}

/// Continuous batching around the pipeline: admission, lanes, batch composition, the LM head and sampling. Each
/// lane's loop owns its running sessions; each step it admits queued requests (up to its share of `maxSessions`),
/// takes one decode token from every running session plus prompt chunks of new ones (up to `maxBatchTokens` rows),
/// sends the batch through the pipeline (ONE call per stage), samples each session that produced logits, and frees
/// the KV of finished or cancelled sessions on every stage. With several lanes their batches are in different
/// stages at once (see `SchedulerLimits.lanes`).
public final class Scheduler: Sendable {
    let head: LlamaHead
    let tokenizer: Tokenizer
    public let pipeline: Pipeline
    /// The workers behind the pipeline's stages and their replicas (nil for in-process stages).
    let cluster: Cluster?
    let handshake: Handshake
    public let limits: SchedulerLimits
    public let routing: RoutingSetup?
    public let kvPolicy: SkippedLayerKV
    private let shared = Mutex(Shared())
    private let metrics = Mutex(Metrics())

    private struct Shared {
        var queue: [LiveSession] = []
        /// Running sessions to stop at their lane's next step boundary.
        var cancelled: Set<UInt64> = []
        var runningIDs: Set<UInt64> = []
        /// Bumped by `cancelAll`: every lane stops all its sessions at its next step boundary.
        var cancelEpoch = 0
        /// Idle lanes waiting for work.
        var wakes: [CheckedContinuation<Void, Never>] = []
        var stopping = false
        var running: Int { runningIDs.count }

        mutating func takeWakes() -> [CheckedContinuation<Void, Never>] {
            defer { wakes.removeAll() }
            return wakes
        }
    }

    /// Counters for Status.
    public struct Metrics: Sendable {
        public var tokensGenerated: UInt64 = 0
        public var steps: UInt64 = 0
        public var tokenHops: UInt64 = 0
        /// Token rows sent through the pipeline (prompt and generated).
        public var tokensForwarded: UInt64 = 0
        /// Per layer: rows (prompt and generated) that ran it.
        public var layerRuns: [UInt64] = []
        /// Worker visits all forwarded rows made, and the visits a dense pipeline would have made.
        public var rowHops: UInt64 = 0
        public var rowHopsDense: UInt64 = 0
        public var running = 0
        public var queued = 0
        /// Resumed sessions whose K/V the stages still held.
        public var sessionsAdopted: UInt64 = 0
        var recent: [(at: ContinuousClock.Instant, tokens: Int)] = []

        /// Generated tokens per second over the last five seconds.
        public var tokensPerSecond: Double {
            let now = ContinuousClock.now
            let window = recent.filter { now - $0.at <= .seconds(5) }
            guard let first = window.first else { return 0 }
            let span = max((now - first.at).seconds, 1)
            return Double(window.reduce(0) { $0 + $1.tokens }) / span
        }
    }

    /// A scheduler over a cluster's workers: one remote stage per worker, the policies settled here.
    public convenience init(head: LlamaHead, tokenizer: Tokenizer, cluster: Cluster, handshake: Handshake, limits: SchedulerLimits,
                            routing: RoutingSetup? = nil, kvPolicy: SkippedLayerKV = .fill, failover: FailoverPolicy = FailoverPolicy()) {
        let stages = cluster.stages.map { primary in
            RemoteStage(clients: [primary] + cluster.replicas.filter { $0.layers == primary.layers }, handshake: handshake,
                        policy: StagePolicy(kvPolicy: kvPolicy, routing: routing?.wire), timeout: limits.forwardTimeout, failover: failover)
        }
        let pipeline = Pipeline(stages: stages, dim: head.config.dim, chooser: routing?.chooser, kvPolicy: kvPolicy,
                                maxPendingFills: limits.maxPendingFills, activations: head.activations)
        self.init(head: head, tokenizer: tokenizer, pipeline: pipeline, cluster: cluster, handshake: handshake, limits: limits,
                  routing: routing)
    }

    /// A scheduler over one in-process stage holding the whole model (`radial run`): generation goes down exactly
    /// the path the coordinator serves with — admission, the pipeline, the LM head, sampling, stop strings — with
    /// the shard in this process instead of behind workers. One session at a time, one lane, and each prompt in
    /// one batch (of up to `maxPromptRows`), as the in-process engine computes it.
    public convenience init(model: LlamaModel, tokenizer: Tokenizer, maxPromptRows: Int, routing: RoutingSetup? = nil,
                            kvPolicy: SkippedLayerKV = .fill) {
        var limits = SchedulerLimits()
        limits.maxSessions = 1
        limits.lanes = 1
        limits.maxBatchTokens = max(maxPromptRows, 1)
        let host = ShardHost(shard: model.shard, kvBudgetBytes: Int.max / 4, sessionTTL: .seconds(86_400), maxBatchTokens: limits.maxBatchTokens,
                             maxSessionBytes: Int.max / 4, maps: routing?.chooser.maps ?? [])
        let stage = LocalStage(host: host, kvPolicy: kvPolicy, chooser: routing?.chooser, name: "this process")
        let pipeline = Pipeline(stages: [stage], dim: model.config.dim, chooser: routing?.chooser, kvPolicy: kvPolicy,
                                maxPendingFills: limits.maxPendingFills, activations: model.shard.activations)
        self.init(head: model.head, tokenizer: tokenizer, pipeline: pipeline, limits: limits, routing: routing)
    }

    /// A scheduler over any pipeline (in-process stages in tests).
    public init(head: LlamaHead, tokenizer: Tokenizer, pipeline: Pipeline, cluster: Cluster? = nil,
                handshake: Handshake = Handshake(modelFingerprint: ""), limits: SchedulerLimits, routing: RoutingSetup? = nil) {
        self.head = head
        self.tokenizer = tokenizer
        self.pipeline = pipeline
        self.cluster = cluster
        self.handshake = handshake
        self.limits = limits
        self.routing = routing
        self.kvPolicy = pipeline.kvPolicy
        metrics.withLock { $0.layerRuns = Array(repeating: 0, count: head.config.layerCount) }
    }

    public var currentMetrics: Metrics {
        var m = metrics.withLock { $0 }
        shared.withLock { m.queued = $0.queue.count; m.running = $0.running }
        return m
    }

    /// Queues a generation; its events arrive on the returned stream. RESOURCE_EXHAUSTED when the queue is full,
    /// UNAVAILABLE while shutting down.
    /// `adopted`: a session the stages still hold from before a coordinator restart, already cut to all but the
    /// last token of `state`'s context (`adopt(session:state:)`): it continues from there instead of recomputing.
    public func submit(_ state: GenerationState, adopted: UInt64? = nil) throws -> (id: UInt64, events: AsyncStream<SessionEvent>) {
        let (stream, continuation) = AsyncStream<SessionEvent>.makeStream()
        let (id, wakes) = try shared.withLock { s throws -> (UInt64, [CheckedContinuation<Void, Never>]) in
            if s.stopping { throw RPCError(.unavailable, "the coordinator is shutting down") }
            // Room for maxSessions running plus maxQueued waiting.
            guard s.queue.count + s.running < limits.maxSessions + limits.maxQueued else {
                throw RPCError(.resourceExhausted, "the queue is full (\(limits.maxQueued) requests waiting, \(limits.maxSessions) running); retry later")
            }
            // Random, not sequential: a client resuming names its session, and must not be able to guess another's.
            var id = adopted ?? UInt64.random(in: 1...UInt64.max)
            while adopted == nil && (s.runningIDs.contains(id) || s.queue.contains { $0.id == id }) { id = UInt64.random(in: 1...UInt64.max) }
            s.queue.append(LiveSession(id: id, state: state, continuation: continuation,
                                       adoptedPositions: adopted == nil ? 0 : state.contextIDs.count - 1))
            return (id, s.takeWakes())
        }
        for w in wakes { w.resume() }
        return (id, stream)
    }

    /// Takes over `session`, which the stages may still hold from before a coordinator restart, for a client
    /// resuming `state` (its context holds the prompt and the tokens it received): true when every stage held all
    /// but the context's last token (they keep exactly those), so `submit(state, adopted: session)` continues
    /// from there. False (nothing adopted, leftovers freed) otherwise.
    public func adopt(session: UInt64, state: GenerationState) async -> Bool {
        guard session != 0, state.generated.count > 0 else { return false }
        let taken = shared.withLock { $0.runningIDs.contains(session) || $0.queue.contains { $0.id == session } }
        guard !taken, await pipeline.adopt(session: session, positions: state.contextIDs.count - 1) else { return false }
        metrics.withLock { $0.sessionsAdopted += 1 }
        return true
    }

    /// Stops a session at the next step boundary (or at once when still queued) and frees its KV.
    public func cancel(_ id: UInt64) {
        let queued = shared.withLock { s -> LiveSession? in
            if let i = s.queue.firstIndex(where: { $0.id == id }) { return s.queue.remove(at: i) }
            if s.runningIDs.contains(id) { s.cancelled.insert(id) }
            return nil
        }
        queued?.finish(.cancelled)
    }

    /// Refuse new requests from now on; the loop returns once running and queued sessions are done.
    public func stopAccepting() {
        let wakes = shared.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.stopping = true
            return s.takeWakes()
        }
        for w in wakes { w.resume() }
    }

    /// Cancels everything still queued or running (after the shutdown grace period).
    public func cancelAll() {
        let (queued, wakes) = shared.withLock { s -> ([LiveSession], [CheckedContinuation<Void, Never>]) in
            defer { s.queue.removeAll() }
            s.cancelEpoch += 1
            return (s.queue, s.takeWakes())
        }
        for q in queued { q.finish(.cancelled) }
        for w in wakes { w.resume() }
    }

    /// The batching loops, one per lane; returns after `stopAccepting` once no work is left.
    public func run() async {
        let lanes = max(limits.lanes, 1)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<lanes { group.addTask { await self.runLane(share: (self.limits.maxSessions + lanes - 1) / lanes) } }
        }
    }

    /// One lane: admits up to `share` sessions, steps them until they finish, waits when it has none.
    private func runLane(share: Int) async {
        var running: [LiveSession] = []
        var epoch = shared.withLock { $0.cancelEpoch }
        while true {
            let (admitted, cancelled, cancelEverything, stopping) = shared.withLock { s -> ([LiveSession], Set<UInt64>, Bool, Bool) in
                let room = min(share - running.count, limits.maxSessions - s.running)
                let take = min(max(room, 0), s.queue.count)
                let admitted = Array(s.queue.prefix(take))
                s.queue.removeFirst(take)
                for a in admitted { s.runningIDs.insert(a.id) }
                let mine = Set(running.map(\.id)).intersection(s.cancelled)
                s.cancelled.subtract(mine)
                defer { epoch = s.cancelEpoch }
                return (admitted, mine, s.cancelEpoch != epoch, s.stopping)
            }
            running += admitted
            if !cancelled.isEmpty || cancelEverything {
                let gone = running.filter { cancelEverything || cancelled.contains($0.id) }
                for s in gone { s.finish(.cancelled) }
                retire(gone, from: &running)
            }
            if running.isEmpty {
                if stopping && shared.withLock({ $0.queue.isEmpty }) { return }
                await waitForWork(epoch: epoch)
                continue
            }
            await step(&running)
            retire(running.filter(\.isFinished), from: &running)
        }
    }

    /// Drops finished sessions from a lane, frees their KV on the workers, and lets idle lanes take queued work.
    private func retire(_ done: [LiveSession], from running: inout [LiveSession]) {
        guard !done.isEmpty else { return }
        let ids = Set(done.map(\.id))
        running.removeAll { ids.contains($0.id) }
        let wakes = shared.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.runningIDs.subtract(ids)
            s.cancelled.subtract(ids)
            return s.queue.isEmpty ? [] : s.takeWakes()
        }
        for w in wakes { w.resume() }
        release(Array(ids))
    }

    private func waitForWork(epoch: Int) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = shared.withLock { s -> Bool in
                if (!s.queue.isEmpty && s.running < limits.maxSessions) || s.cancelEpoch != epoch || s.stopping { return true }
                s.wakes.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    /// One batch through the pipeline.
    private func step(_ running: inout [LiveSession]) async {
        struct Row { let session: LiveSession; let position: Int; let token: Int; let wantsLogits: Bool }
        var rows: [Row] = []
        for (s, k) in composeBatch(running) {
            for j in 0..<k {
                rows.append(Row(session: s, position: s.nextPosition + j, token: s.pending[j], wantsLogits: j == k - 1 && k == s.pending.count))
            }
        }
        let clock = ContinuousClock()
        let stepStart = clock.now
        for r in rows where r.session.startedAt == nil { r.session.startedAt = stepStart }
        do {
            var final = try head.embed(rows.map(\.token))
            let traces = try await pipeline.forward(rows.map { Pipeline.Row(session: $0.session.id, position: $0.position) }, hidden: &final)
            let ran = traces.map(\.layersRun), hops = traces.map(\.hops)
            let picked = rows.indices.filter { rows[$0].wantsLogits }
            let othersRunning = shared.withLock { $0.running } > running.count
            let logits = await lmHead(final, picked: picked, offThread: othersRunning)
            // Every session in the batch consumed its rows.
            var consumed: [ObjectIdentifier: Int] = [:]
            for r in rows { consumed[ObjectIdentifier(r.session), default: 0] += 1 }
            for s in running { if let k = consumed[ObjectIdentifier(s)] { s.consume(k) } }

            let v = head.config.vocabSize
            let now = clock.now
            var produced = 0, producedHops = 0
            for (j, i) in picked.enumerated() {
                let s = rows[i].session
                // A resumed generation feeds its earlier tokens after the prompt: no sampling until they are in.
                if !s.replay.isEmpty { s.pending = s.replay; s.replay = []; s.replaying = true; continue }
                s.replaying = false
                if s.firstTokenAt == nil { s.firstTokenAt = now }
                let step = s.state.accept(logits: Array(logits[j * v..<(j + 1) * v]), tokenizer: tokenizer)
                if let token = step.emitted {
                    produced += 1
                    producedHops += hops[i]
                    s.emit(.token(TokenTrace(tokenID: token, layersRun: ran[i].sorted, hops: hops[i]), text: step.text))
                } else if !step.text.isEmpty {
                    s.emit(.text(step.text))
                }
                if let feed = step.feed { s.pending = [feed] } else { s.finish(s.state.finishReason ?? .maxTokens, at: now) }
            }
            metrics.withLock { m in
                m.steps += 1
                m.tokensGenerated += UInt64(produced)
                m.tokenHops += UInt64(producedHops)
                m.tokensForwarded += UInt64(rows.count)
                m.rowHops += UInt64(hops.reduce(0, +))
                m.rowHopsDense += UInt64(rows.count * pipeline.stages.count)
                for r in ran { for l in m.layerRuns.indices where r.contains(l) { m.layerRuns[l] += 1 } }
                m.recent.append((now, produced))
                if m.recent.count > 4096 { m.recent.removeFirst(2048) }
            }
        } catch {
            // A failed step leaves the sessions' KV on the workers in an unknown state: fail them all.
            let rpc = (error as? RPCError) ?? RPCError(.internal, "\(error)")
            let failure = RPCError(rpc.code == .deadlineExceeded ? .unavailable : rpc.code,
                                   "a worker failed during the batch: \(rpc.message)")
            for s in running { s.fail(failure) }
        }
    }

    /// The LM head. While only this lane has sessions, the loop computes it on the thread that received the last
    /// worker's reply (no thread wake-up); while other lanes run too (`offThread`), that thread must stay free to
    /// receive their replies meanwhile.
    private func lmHead(_ hidden: [Float], picked: [Int], offThread: Bool) async -> [Float] {
        let compute = { hidden.withUnsafeBufferPointer { self.head.logits($0.baseAddress!, picked: picked) } }
        if !offThread { return compute() }
        return await withTaskExecutorPreference(globalConcurrentExecutor) { compute() }
    }

    /// Which sessions feed how many tokens this step. Decode tokens (one per session) go first. A prompt joins them
    /// while the step stays within the rows the engine computes with its batch-invariant kernels
    /// (`Linear.quantizedMaxRows`); a longer prompt gets a step of its own, in chunks of `maxBatchTokens`. Either
    /// way every row is computed exactly as the in-process engine computes it alone, so the cluster's output equals
    /// `radial run`'s bit for bit (prompts up to `maxBatchTokens`).
    func composeBatch(_ running: [LiveSession]) -> [(LiveSession, Int)] {
        let invariantRows = min(Linear.quantizedMaxRows, limits.maxBatchTokens)
        let decoding = running.filter { $0.nextPosition > 0 && $0.pending.count == 1 }
        let prompts = running.filter { !($0.nextPosition > 0 && $0.pending.count == 1) }
        // A prompt already part-way through, one too long to share a step, or one that did not fit last step runs
        // alone (so no prompt waits for ever behind decode rows).
        if let alone = prompts.first(where: { $0.nextPosition > 0 || $0.pending.count > invariantRows || $0.deferred }) {
            // A resumed generation's earlier tokens were decoded with the batch-invariant kernels: they go in chunks
            // those kernels take, so each row's result is the one first computed.
            return [(alone, min(alone.pending.count, alone.replaying ? invariantRows : limits.maxBatchTokens))]
        }
        var picked = decoding.map { ($0, 1) }
        var rows = picked.count
        for p in prompts {
            if rows + p.pending.count <= invariantRows {
                picked.append((p, p.pending.count))
                rows += p.pending.count
            } else {
                p.deferred = true
                break
            }
        }
        return picked
    }

    /// Frees finished sessions' KV on every stage (every replica), off the loop's critical path.
    private func release(_ ids: [UInt64]) { pipeline.release(ids) }
}
