import RadialModel
import RadialProtocol
import RadialRouter
import RadialRPC
import Synchronization

/// Decides whether a row visits a stage, from the state entering it: the router under its policy
/// (`RouterChooser`), or a script in tests.
public protocol StageRouter: Sendable {
    /// `activations`: the arithmetic of any run map met on the way (the stages').
    func visits(_ layers: LayerRange, hidden: UnsafePointer<Float>, runSoFar: Int, activations: QuantizedMatrix.Activations) -> Bool
    /// Whether it decides for a token at `position` at all (false: the token visits every stage, runs every layer).
    func routes(position: Int) -> Bool
    /// Advances the state of a row that skips the whole stage `layers` past it, in place: through the maps of the
    /// runs there, as the stage itself would have (nothing without maps).
    func skip(_ layers: LayerRange, hidden: UnsafeMutablePointer<Float>, activations: QuantizedMatrix.Activations)
}

extension StageRouter {
    public func routes(position: Int) -> Bool { true }
    public func skip(_ layers: LayerRange, hidden: UnsafeMutablePointer<Float>, activations: QuantizedMatrix.Activations) {}
}

extension RouterChooser: StageRouter {}

/// The heart of Radial: a batch of rows walks the stages in layer order. With a router, a row visits a stage
/// only when the router selects at least one of its layers — scored from the state entering the stage, which is
/// exactly what the stage would decide, since a skipping row's state does not change. A row that skips a stage
/// leaves a pending K/V fill there (under `fill`) that rides along with its session's next batch to that stage, so
/// no extra round trip sits on a token's critical path; under `mask` the position simply stays empty there. A
/// stage no row needs is not called at all.
///
/// Stages are remote workers or shards in this process (`Stage`); the pipeline does not know which.
public final class Pipeline: Sendable {
    public let stages: [any Stage]
    public let dim: Int
    public let chooser: (any StageRouter)?
    public let kvPolicy: SkippedLayerKV
    /// Deferred fills a session may hold for one stage it keeps skipping; at this many they are sent in that step
    /// even without a token for the stage, so they never outgrow a stage's batch or the batch-invariant rows.
    public let maxPendingFills: Int
    /// The stages' arithmetic, for run maps applied here when a row skips a stage whole.
    public let activations: QuantizedMatrix.Activations
    /// Per session, per stage index: positions that skipped the stage, with the state that would have entered it.
    private let pending = Mutex<[UInt64: [Int: [PendingFill]]]>([:])

    struct PendingFill { let position: Int; let hidden: [Float] }

    /// A row entering the pipeline: which session, at which position.
    public struct Row: Sendable {
        public let session: UInt64
        public let position: Int
        public init(session: UInt64, position: Int) {
            self.session = session
            self.position = position
        }
    }

    /// What a row did on its way: the layers it ran, in order, and the stages it visited.
    public struct Trace: Sendable, Equatable {
        public var layersRun = LayerSet()
        public var hops = 0
    }

    public init(stages: [any Stage], dim: Int, chooser: (any StageRouter)? = nil, kvPolicy: SkippedLayerKV = .fill,
                maxPendingFills: Int = 32, activations: QuantizedMatrix.Activations = .f32) {
        precondition(zip(stages, stages.dropFirst()).allSatisfy { $0.layers.upperBound == $1.layers.lowerBound },
                     "stages must tile the layers in order")
        self.stages = stages
        self.dim = dim
        self.chooser = chooser
        self.kvPolicy = kvPolicy
        self.maxPendingFills = maxPendingFills
        self.activations = activations
    }

    /// Runs `rows` (hidden: rows.count × dim, the embeddings) through every stage, in place: on return `hidden`
    /// holds the states leaving the last layer. Returns each row's trace.
    public func forward(_ rows: [Row], hidden: inout [Float]) async throws -> [Trace] {
        let n = rows.count
        precondition(hidden.count == n * dim, "hidden holds \(hidden.count) floats for \(n) rows of \(dim)")
        var traces = Array(repeating: Trace(), count: n)
        for (si, stage) in stages.enumerated() {
            let visiting = (0..<n).filter { i in
                hidden.withUnsafeBufferPointer { h in
                    guard let chooser, chooser.routes(position: rows[i].position) else { return true }
                    return chooser.visits(stage.layers, hidden: h.baseAddress! + i * dim, runSoFar: traces[i].layersRun.count,
                                          activations: activations)
                }
            }
            let skipping = n - visiting.count
            stage.countSkipped(skipping)
            let visitingSet = Set(visiting)
            if skipping > 0 && kvPolicy == .fill {
                pending.withLock { p in
                    for i in 0..<n where !visitingSet.contains(i) {
                        p[rows[i].session, default: [:]][si, default: []]
                            .append(PendingFill(position: rows[i].position, hidden: Array(hidden[(i * dim)..<((i + 1) * dim)])))
                    }
                }
            }
            // A row skipping the stage leaves it through the maps of its runs (after its fill took the entering state).
            if skipping > 0, let chooser {
                hidden.withUnsafeMutableBufferPointer { h in
                    for i in 0..<n where !visitingSet.contains(i) { chooser.skip(stage.layers, hidden: h.baseAddress! + i * dim, activations: activations) }
                }
            }
            // Deferred fills ride along for the sessions visiting now (this step's skipped rows included), and for
            // any session whose backlog for this stage reached the limit.
            let visitingSessions = Set(visiting.map { rows[$0].session })
            var fills: [KVFillEntry] = [], fillHidden: [Float] = []
            pending.withLock { p in
                var seen = Set<UInt64>()
                for r in rows where seen.insert(r.session).inserted {
                    guard let mine = p[r.session]?[si], !mine.isEmpty,
                          visitingSessions.contains(r.session) || mine.count >= maxPendingFills else { continue }
                    p[r.session]![si] = nil
                    for f in mine {
                        fills.append(KVFillEntry(sessionID: r.session, position: f.position))
                        fillHidden += f.hidden
                    }
                }
            }
            if visiting.isEmpty && fills.isEmpty { continue }
            // Every row visiting (no routing, or none skips): the batch shares `hidden` and its result replaces it,
            // with no gather or scatter copy.
            let everyRow = visiting.count == n
            let sent = everyRow ? hidden : Self.gather(hidden, visiting, dim)
            let tokens = visiting.map {
                TokenEntry(sessionID: rows[$0].session, position: rows[$0].position, routed: chooser?.routes(position: rows[$0].position) ?? false,
                           layersBefore: traces[$0].layersRun.count)
            }
            let out = try await send(StageBatch(tokens: tokens, hidden: sent, fills: fills, fillHidden: fillHidden), to: stage)
            if everyRow { hidden = out.hidden }
            for (j, i) in visiting.enumerated() {
                if !everyRow { hidden[(i * dim)..<((i + 1) * dim)] = out.hidden[(j * dim)..<((j + 1) * dim)] }
                traces[i].layersRun.formUnion(out.layersRun[j])
                traces[i].hops += 1
            }
        }
        return traces
    }

    /// Agrees the K/V and routing policy with every stage (remote workers' Configure) before serving.
    public func settle() async throws {
        for stage in stages { try await stage.settle() }
    }

    /// Sends a stage its batch. A batch over the decode kernels' row limit runs sgemm, and a row's bits then depend
    /// on the rest of the batch: such a batch must hold one session only, or that session could not be replayed
    /// alone (failover) to the same bits. So a wide batch that mixes sessions goes as several calls at once: each
    /// session over the limit alone, the others packed into calls of at most the limit (where every row is
    /// computed as it would be alone).
    private func send(_ batch: StageBatch, to stage: any Stage) async throws -> StageOutput {
        let parts = Self.parts(of: batch)
        if parts.count == 1 { return try await stage.forward(batch) }
        let dim = dim
        let outputs = try await withThrowingTaskGroup(of: (Int, StageOutput).self) { group in
            for (k, p) in parts.enumerated() {
                let part = StageBatch(tokens: p.tokens.map { batch.tokens[$0] }, hidden: Self.gather(batch.hidden, p.tokens, dim),
                                      fills: p.fills.map { batch.fills[$0] }, fillHidden: Self.gather(batch.fillHidden, p.fills, dim))
                group.addTask { (k, try await stage.forward(part)) }
            }
            var out: [Int: StageOutput] = [:]
            for try await (k, o) in group { out[k] = o }
            return out
        }
        var merged = StageOutput(hidden: [Float](repeating: 0, count: batch.tokens.count * dim),
                                 layersRun: Array(repeating: LayerSet(), count: batch.tokens.count))
        for (k, p) in parts.enumerated() {
            let o = outputs[k]!
            for (j, t) in p.tokens.enumerated() {
                merged.hidden[(t * dim)..<((t + 1) * dim)] = o.hidden[(j * dim)..<((j + 1) * dim)]
                merged.layersRun[t] = o.layersRun[j]
            }
        }
        return merged
    }

    /// How `send` cuts a batch: per call, the indices of its tokens and fills. One call when the batch is within
    /// `limit` rows or holds one session.
    static func parts(of batch: StageBatch, limit: Int = Linear.quantizedMaxRows) -> [(tokens: [Int], fills: [Int])] {
        let whole = [(tokens: Array(batch.tokens.indices), fills: Array(batch.fills.indices))]
        if batch.tokens.count + batch.fills.count <= limit { return whole }  // every step of decode: nothing to cut
        var order: [UInt64] = [], bySession: [UInt64: (tokens: [Int], fills: [Int])] = [:]
        for (i, t) in batch.tokens.enumerated() {
            if bySession[t.sessionID] == nil { order.append(t.sessionID) }
            bySession[t.sessionID, default: ([], [])].tokens.append(i)
        }
        for (i, f) in batch.fills.enumerated() {
            if bySession[f.sessionID] == nil { order.append(f.sessionID) }
            bySession[f.sessionID, default: ([], [])].fills.append(i)
        }
        if order.count == 1 { return whole }
        var parts: [(tokens: [Int], fills: [Int])] = [], packed: (tokens: [Int], fills: [Int]) = ([], [])
        for id in order {
            let mine = bySession[id]!, rows = mine.tokens.count + mine.fills.count
            if rows > limit { parts.append(mine); continue }
            if packed.tokens.count + packed.fills.count + rows > limit {
                parts.append(packed)
                packed = ([], [])
            }
            packed.tokens += mine.tokens
            packed.fills += mine.fills
        }
        if !packed.tokens.isEmpty || !packed.fills.isEmpty { parts.append(packed) }
        return parts
    }

    static func gather(_ values: [Float], _ rows: [Int], _ dim: Int) -> [Float] {
        var out = [Float](); out.reserveCapacity(rows.count * dim)
        for i in rows { out += values[(i * dim)..<((i + 1) * dim)] }
        return out
    }

    /// Forgets finished sessions: drops their pending fills and frees their K/V on every stage (and on `extra`
    /// workers such as replicas), off the caller's critical path.
    public func release(_ sessions: [UInt64], alsoOn extra: [any Stage] = []) {
        guard !sessions.isEmpty else { return }
        pending.withLock { p in for s in sessions { p[s] = nil } }
        let targets = stages + extra
        Task {
            await withTaskGroup(of: Void.self) { group in
                for t in targets { group.addTask { await t.closeSessions(sessions) } }
            }
        }
    }

    /// Takes over a session the stages still hold from before a coordinator restart, cut to its first `positions`
    /// positions, when every stage holds at least that many (under `fill` every position reaches every stage, so
    /// "held" means "complete"); otherwise frees whatever is left of it and returns false, and the caller
    /// recomputes the context under a new session. Under `mask` a stage legitimately lacks skipped positions and
    /// a lost one cannot be told from them: never adopted.
    public func adopt(session: UInt64, positions: Int) async -> Bool {
        guard positions > 0, chooser == nil || kvPolicy == .fill else { return false }
        let held = await withTaskGroup(of: Bool.self) { group in
            for stage in stages { group.addTask { await stage.adopt(session: session, positions: positions) } }
            var all = true
            for await ok in group { all = all && ok }
            return all
        }
        if !held { release([session]) }
        return held
    }

    /// Deferred fills held for `session` (tests, Status).
    public func pendingFillCount(session: UInt64) -> Int {
        pending.withLock { $0[session]?.values.reduce(0) { $0 + $1.count } ?? 0 }
    }
}
