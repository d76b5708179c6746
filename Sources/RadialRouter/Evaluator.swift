import Foundation
import RadialModel

/// How deep each token goes, for one evaluation run.
public enum DepthMode: Sendable {
    case dense
    /// The trained router under a policy.
    case router(RouterChooser)
    /// The same layers removed for every token; a removed run with a map in `maps` is left through the map.
    case staticPruning(skip: [Int], maps: [RunMap] = [])
    /// An upper bound no deployable router reaches: run each layer, measure its true contribution, and drop the
    /// update when it is under `threshold` (fill only: K/V come from the entering state either way).
    case oracle(threshold: Float, alwaysRun: LayerSet)
}

/// One operating point measured on held-out text.
public struct EvalPoint: Codable, Sendable {
    public var name: String
    public var threshold: Float?
    public var perplexity: Double
    /// Fraction of (token, layer) pairs skipped.
    public var skipRate: Double
    public var layersPerToken: Double
    /// Workers a token visits, for the model's layers split evenly over `workers` workers.
    public var visitsPerToken: Double
    /// Greedy continuations equal to the dense model's, position by position (nil where not measured).
    public var greedyAgreement: Double?
    /// Batch-1 decode speed in this process during the agreement run.
    public var decodeTokensPerSecond: Double?
}

/// Held-out perplexity, depth and greedy agreement for the depth modes, in this process.
public struct Evaluator {
    public let model: LlamaModel
    public let kvPolicy: SkippedLayerKV
    public let workerRanges: [LayerRange]

    public init(model: LlamaModel, kvPolicy: SkippedLayerKV = .fill, workers: Int) {
        self.model = model
        self.kvPolicy = kvPolicy
        let L = model.config.layerCount
        workerRanges = (0..<workers).map { LayerRange.evenSlice($0, of: workers, layers: L) }
    }

    /// Perplexity of each window's next tokens, and the layers every scored token ran.
    public func perplexity(_ windows: TokenWindows, mode: DepthMode) throws -> (perplexity: Double, runs: [LayerSet]) {
        var nll = 0.0, count = 0
        var runs: [LayerSet] = []
        let L = model.config.layerCount, v = model.config.vocabSize
        for window in windows.windows {
            let n = window.count
            let cache = model.shard.makeCache(initialCapacity: n)
            var hidden = try model.head.embed(window)
            let tokens = (0..<n).map { ShardToken(cache: cache, position: $0, layers: nil) }
            var ran: [LayerSet]
            switch mode {
            case .dense:
                ran = try hidden.withUnsafeMutableBufferPointer { try model.shard.forward($0.baseAddress!, tokens: tokens, kvPolicy: kvPolicy) }
            case .router(let chooser):
                ran = try hidden.withUnsafeMutableBufferPointer {
                    try model.shard.forward($0.baseAddress!, tokens: tokens, kvPolicy: kvPolicy, chooser: chooser)
                }
            case .staticPruning(let skip, let maps):
                let plan = staticPlan(skip)
                let planned = (0..<n).map { ShardToken(cache: cache, position: $0, layers: plan) }
                ran = try hidden.withUnsafeMutableBufferPointer {
                    try model.shard.forward($0.baseAddress!, tokens: planned, kvPolicy: kvPolicy, maps: maps)
                }
            case .oracle(let threshold, let alwaysRun):
                ran = Array(repeating: LayerSet(), count: n)
                for l in 0..<L {
                    let before = hidden
                    try hidden.withUnsafeMutableBufferPointer { try model.shard.runLayer(l, hidden: $0.baseAddress!, tokens: tokens) }
                    let dim = model.config.dim
                    for r in 0..<n {
                        if alwaysRun.contains(l) || ResidualProfiler.ratio(before: before, after: hidden, row: r, dim: dim) >= threshold {
                            ran[r].insert(l)
                        } else {
                            for d in (r * dim)..<((r + 1) * dim) { hidden[d] = before[d] }
                        }
                    }
                }
            }
            let logits = hidden.withUnsafeBufferPointer { model.head.logits($0.baseAddress!, rows: n) }
            for i in 0..<(n - 1) {
                nll += Self.negativeLogLikelihood(logits, row: i, vocab: v, target: window[i + 1])
                count += 1
            }
            runs += ran
        }
        return (exp(nll / Double(max(count, 1))), runs)
    }

    public func point(name: String, threshold: Float? = nil, perplexity: Double, runs: [LayerSet]) -> EvalPoint {
        let L = model.config.layerCount
        let layers = runs.reduce(0) { $0 + $1.count }
        let visits = runs.reduce(0) { acc, r in acc + workerRanges.filter { range in range.indices.contains(where: r.contains) }.count }
        let n = Double(max(runs.count, 1))
        return EvalPoint(name: name, threshold: threshold, perplexity: perplexity, skipRate: 1 - Double(layers) / (n * Double(L)),
                         layersPerToken: Double(layers) / n, visitsPerToken: Double(visits) / n)
    }

    /// Greedy continuations of each prompt: the tokens, and the decode time they took.
    public func greedy(prompts: [[Int]], tokens: Int, mode: DepthMode) throws -> (outputs: [[Int]], seconds: Double) {
        let clock = ContinuousClock()
        var outputs: [[Int]] = [], seconds = 0.0
        for prompt in prompts {
            let cache = model.makeCache(initialCapacity: prompt.count + tokens)
            var (plan, chooser, maps) = (LayerSet?.none, (any LayerChooser)?.none, [RunMap]?.none)
            switch mode {
            case .dense: break
            case .router(let c): chooser = c
            case .staticPruning(let skip, let runMaps):
                (plan, maps) = (staticPlan(skip), runMaps)
            case .oracle: throw RouterError.badPolicy("the oracle is measured by perplexity only")
            }
            let rows = prompt.enumerated().map { (cache: cache, position: $0.offset, token: $0.element, layers: plan) }
            var logits = try model.step(rows, wantLogits: prompt.indices.map { $0 == prompt.count - 1 }, kvPolicy: kvPolicy, chooser: chooser,
                                        maps: maps)[0]
            var out: [Int] = []
            let start = clock.now
            for i in 0..<tokens {
                let next = Sampler.argmax(logits)
                out.append(next)
                if i == tokens - 1 { break }
                logits = try model.step([(cache: cache, position: prompt.count + i, token: next, layers: plan)], kvPolicy: kvPolicy, chooser: chooser,
                                        maps: maps)[0]
            }
            seconds += (clock.now - start).seconds
            outputs.append(out)
        }
        return (outputs, seconds)
    }

    /// Every layer but `skip`: what static pruning runs for each token.
    func staticPlan(_ skip: [Int]) -> LayerSet {
        var plan = LayerSet.all(LayerRange(0, model.config.layerCount))
        for l in skip { plan.remove(l) }
        return plan
    }

    static func negativeLogLikelihood(_ logits: [Float], row: Int, vocab v: Int, target: Int) -> Double {
        var mx = -Float.infinity
        for j in (row * v)..<((row + 1) * v) where logits[j] > mx { mx = logits[j] }
        var sum = 0.0
        for j in (row * v)..<((row + 1) * v) { sum += Double(expf(logits[j] - mx)) }
        return -(Double(logits[row * v + target] - mx) - log(sum))
    }

    /// Static pruning's perplexity at a fractional number of removed units `k` (what the router executes on
    /// average), interpolated linearly between the whole counts around it: `perplexityAt(n)` for n = ⌊k⌋, ⌈k⌉.
    public static func staticPerplexity(at k: Double, _ perplexityAt: (Int) throws -> Double) rethrows -> Double {
        let lo = Int(k.rounded(.down)), hi = Int(k.rounded(.up)), f = k - Double(lo)
        let a = try perplexityAt(lo)
        return lo == hi ? a : a * (1 - f) + (try perplexityAt(hi)) * f
    }

    /// Position-by-position agreement of `outputs` with `reference`.
    public static func agreement(_ outputs: [[Int]], _ reference: [[Int]]) -> Double {
        var same = 0, total = 0
        for (a, b) in zip(outputs, reference) {
            for (x, y) in zip(a, b) { same += x == y ? 1 : 0; total += 1 }
        }
        return Double(same) / Double(max(total, 1))
    }
}
