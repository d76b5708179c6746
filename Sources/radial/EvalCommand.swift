import ArgumentParser
import Foundation
import RadialCommandLine
import RadialModel
import RadialRouter

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Measure depth against quality on held-out text: dense, the router, static pruning, the oracle.",
        discussion: """
            For each target skip rate: the router (threshold calibrated on its training tokens), static pruning of the \
            same number of layers (the lowest profile medians), and the per-token oracle (true contribution under a \
            threshold; an upper bound).

            Reports held-out perplexity, layers skipped, worker visits per token for the layers split over \
            --workers workers, greedy agreement with the dense model, and batch-1 decode tokens/s. Static pruning is \
            compared at equal layers executed (interpolated between whole layer counts).

            Example:
              radial eval --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\
                --text data/fortunes-heldout.txt --router out/router.rdrt \\
                --skip-rates 0.1,0.2
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var textOptions: TextOptions
    @Option(name: .long, help: "A router from `radial train-router`; repeat to compare routers (say, ratio and cost labels) in one table (default: none; static pruning and the oracle are still measured).")
    var router: [String] = []
    @Option(name: .customLong("skip-rates"), help: "Target fractions of layers skipped, comma-separated; none for no skip-rate points.")
    var skipRates = "0.05,0.1,0.15,0.2"
    @Option(name: .customLong("max-quality-losses"), help: "Quality budgets in percent, comma-separated: each router with a quality curve is also measured at the threshold `--max-quality-loss` would pick, so the realised skip rate and rise on this text show.")
    var maxQualityLosses: String?
    @Option(name: .customLong("always-run"), help: "Layers every token runs, comma-separated (default: what the first router's quality curve was measured with, else first and last).")
    var alwaysRun: String?
    @Option(name: .customLong("min-layers"), help: "No token runs fewer layers than this (default: what the first router's quality curve was measured with, else 0).")
    var minLayers: Int?
    @Option(name: .customLong("dense-positions"), help: "The first N positions of each window run every layer (default: what the first router's quality curve was measured with, else 0).")
    var densePositions: Int?
    @Option(name: .customLong("kv-policy"), help: "K/V for skipped layers: fill or mask.")
    var kvPolicy: SkippedLayerKV = .fill
    @Option(name: .long, help: "Split the layers evenly over this many workers to count visits per token.")
    var workers = 10
    @Option(name: .long, help: "Prompts (held-out windows' first 16 tokens) for greedy agreement; 0 skips it.")
    var prompts = 8
    @Option(name: .customLong("greedy-tokens"), help: "Tokens generated per prompt for greedy agreement.")
    var greedyTokens = 32
    @Option(name: .customLong("static"), help: "Also measure static pruning of exactly these layers, e.g. 14-16 or 9,10 (repeat for several sets): the whole-layer removals to compare per-token routing with. A set that removes a run the first router has a map for (train-router --bypass) is measured through the map too.")
    var staticSets: [String] = []
    @Flag(name: .customLong("no-oracle"), help: "Leave out the oracle.")
    var noOracle = false
    @Flag(name: .long, help: "End with one JSON object on the last line.")
    var json = false
    @Option(name: .long, help: "Write an SVG plot of perplexity against layers skipped here.")
    var plot: String?

    func validate() throws {
        guard (1...1024).contains(workers) else { throw ValidationError("--workers must be between 1 and 1024") }
        guard prompts >= 0, greedyTokens >= 1 else { throw ValidationError("--prompts must be ≥ 0 and --greedy-tokens ≥ 1") }
        _ = try rates()
        _ = try budgets()
        for s in staticSets { _ = try parseLayerList(s, option: "--static") }
    }

    func budgets() throws -> [Double] {
        guard let maxQualityLosses else { return [] }
        let parts = maxQualityLosses.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil && $0! >= 0 }) else {
            throw ValidationError("--max-quality-losses must be percentages, e.g. 2,5,10")
        }
        return parts.map { $0! }
    }

    func rates() throws -> [Double] { try parseSkipRates(skipRates, option: "--skip-rates", allowNone: true) }

    func run() throws {
        let (model, tokenizer) = try modelOptions.load()
        let L = model.config.layerCount
        let routers = try router.map { path -> Router in
            let r = try Router(path: path)
            try r.check(modelFingerprint: try modelOptions.openFile().fingerprint, layers: L, hiddenSize: model.config.dim)
            return r
        }
        let loaded = routers.first
        let keep = try alwaysRun.map { LayerSet(try parseLayerList($0, option: "--always-run", allowNone: true)) } ?? loaded?.header.qualityCurve.map { LayerSet($0.alwaysRun) } ?? LayerSet([0, L - 1])
        var policyTemplate = RoutingPolicy(threshold: 0, alwaysRun: keep, minLayers: minLayers ?? 0, modelLayers: L)
        try policyTemplate.validate()
        policyTemplate.densePositions = densePositions ?? loaded?.header.qualityCurve?.densePositions ?? 0
        policyTemplate.minLayers = minLayers ?? loaded?.header.qualityCurve?.minLayers ?? 0
        guard Set(routers.map(\.header.block)).count <= 1 else { throw CLIError("compare routers of one block size at a time") }
        // Routers are named by what they learned, and by position when two learned the same.
        let labelNames = routers.map { $0.header.labels ?? .ratio }
        let names = routers.indices.map { i in
            routers.count == 1 ? "router" : labelNames.filter { $0 == labelNames[i] }.count > 1 ? "router\(i + 1)" : "router(\(labelNames[i].rawValue))"
        }
        let windows = try textOptions.windows(tokenizer)
        let eval = Evaluator(model: model, kvPolicy: kvPolicy, workers: workers)
        let promptSet = windows.windows.prefix(prompts).map { Array($0.prefix(16)) }
        let targets = try rates()
        stderr("evaluating on \(windows.tokenCount) tokens of \(textOptions.text) (\(windows.windows.count) windows, kv \(kvPolicy))")

        var points: [EvalPoint] = []
        func measure(_ name: String, _ mode: DepthMode, threshold: Float? = nil, greedy: Bool = true,
                     reference: [[Int]]? = nil) throws -> (EvalPoint, [[Int]]) {
            let (ppl, runs) = try eval.perplexity(windows, mode: mode)
            var p = eval.point(name: name, threshold: threshold, perplexity: ppl, runs: runs)
            var outputs: [[Int]] = []
            if greedy && !promptSet.isEmpty {
                let g = try eval.greedy(prompts: promptSet, tokens: greedyTokens, mode: mode)
                outputs = g.outputs
                // Dense is the reference itself: its agreement is not a measurement (shown "–", null in JSON).
                p.greedyAgreement = reference.map { Evaluator.agreement(g.outputs, $0) }
                p.decodeTokensPerSecond = Double(promptSet.count * greedyTokens) / max(g.seconds, 1e-9)
            }
            stderr("  " + pad(name, 30) + String(format: "perplexity %8.2f  skipped %5.1f%%", p.perplexity, p.skipRate * 100))
            points.append(p)
            return (p, outputs)
        }

        let (_, denseOutputs) = try measure("dense", .dense)
        var comparisons: [[String: Any]] = []
        var staticCache: [Int: EvalPoint] = [:]
        // Static pruning drops the layers cheapest to skip: by measured mean skip cost when a router carries it (a
        // better order than the residual ratio's), else by the profile's median contribution.
        let medians: [Float]
        if let costs = routers.compactMap(\.header.skipCostMeans).first { medians = costs } else if let loaded {
            medians = loaded.header.profileMedians
        } else {
            medians = try ResidualProfiler(model: model).run(windows).profile.summaries.map(\.median)
        }
        // Static pruning removes the router's own unit: single layers, or whole blocks for a block router (which is
        // what removing a worker from the pipeline would do).
        let unit = loaded?.header.block ?? 1
        func staticPoint(_ k: Int) throws -> EvalPoint {
            if let p = staticCache[k] { return p }
            if k == 0 { return points[0] }
            let skip = ResidualProfile.leastContributing(medians, count: k, keep: keep, block: unit)
            let what = unit == 1 ? "static -\(k)" : "static -\(k) blocks of \(unit):"
            let p = try measure("\(what) \(skip.map(String.init).joined(separator: ","))", .staticPruning(skip: skip),
                                reference: denseOutputs).0
            staticCache[k] = p
            return p
        }

        for set in staticSets {
            let skip = try parseLayerList(set, option: "--static")
            if let bad = skip.first(where: { $0 >= L }) { throw CLIError("--static \(set): layer \(bad) is not in the model (0-\(L - 1))") }
            _ = try measure("static \(set)", .staticPruning(skip: skip), reference: denseOutputs)
            // The same removal through the first router's maps of the runs it removes whole (`train-router --bypass`).
            let maps = routers.first?.maps.filter { $0.layers.indices.allSatisfy(skip.contains) } ?? []
            if !maps.isEmpty {
                _ = try measure("static \(set) mapped", .staticPruning(skip: skip, maps: maps), reference: denseOutputs)
            }
        }

        let operating = try budgets().flatMap { budget in
            routers.indices.compactMap { i -> (Int, String, Float)? in
                guard let curve = routers[i].header.qualityCurve else { stderr("\(router[i]) has no quality curve: no budget points"); return nil }
                return (i, "\(names[i]) ≤" + String(format: "%g%%", budget), curve.operatingPoint(maxRisePercent: budget).threshold)
            }
        }
        let atRates = try targets.flatMap { rate in
            try routers.indices.map { i in
                (i, "\(names[i]) @" + String(format: "%.0f%%", rate * 100), try routers[i].threshold(forSkipRate: rate, alwaysRun: keep))
            }
        }
        if !routers.isEmpty {
            for (i, name, threshold) in atRates + operating {
                var policy = policyTemplate
                policy.threshold = threshold
                let chooser = RouterChooser(router: routers[i], policy: policy)
                let (p, _) = try measure(name, .router(chooser), threshold: policy.threshold, reference: denseOutputs)
                // Static pruning at the same layers executed, interpolated between whole unit counts.
                let k = p.skipRate * Double(L) / Double(unit)
                let staticPPL = try Evaluator.staticPerplexity(at: k) { try staticPoint($0).perplexity }
                comparisons.append(["router": p.name, "skip_rate": p.skipRate, "router_perplexity": p.perplexity,
                                    "static_perplexity_at_equal_layers": staticPPL, "router_better": p.perplexity < staticPPL])
            }
        } else {
            for rate in targets { _ = try staticPoint(Int((rate * Double(L) / Double(unit)).rounded())) }
        }

        if !noOracle && kvPolicy == .fill {
            let profile = try ResidualProfiler(model: model).run(windows).profile
            for rate in targets {
                let t = Self.oracleThreshold(profile, rate: rate, keep: keep)
                _ = try measure(String(format: "oracle @%.0f%%", rate * 100), .oracle(threshold: t, alwaysRun: keep),
                                threshold: t, greedy: false)
            }
        }

        print(pad("mode", 32) + ["perplexity", "skipped", "layers", "visits", "agree", "tok/s"].map { pad($0, 11, left: true) }.joined())
        for p in points {
            let agree = p.greedyAgreement.map { String(format: "%.3f", $0) } ?? "–"
            let tps = p.decodeTokensPerSecond.map { String(format: "%.1f", $0) } ?? "-"
            let cells = [String(format: "%.2f", p.perplexity), String(format: "%.1f%%", p.skipRate * 100),
                         String(format: "%.2f", p.layersPerToken), String(format: "%.2f", p.visitsPerToken), agree, tps]
            print(pad(p.name, 32) + cells.map { pad($0, 11, left: true) }.joined())
        }
        print("(visits: workers a token calls when the \(L) layers are split over \(workers) workers; agree: greedy tokens equal to dense)")
        var routerMicroseconds: Double?
        if let loaded {
            routerMicroseconds = Self.routerCost(loaded.network, model: model, window: windows.windows[0])
            print(String(format: "router cost: %.1f µs per token (scoring all %d decision units, one state each)", routerMicroseconds!, loaded.network.layers))
        }
        for c in comparisons {
            print(String(format: "%@ at %.1f%% skipped: perplexity %.2f vs static pruning %.2f at equal layers -> %@",
                         c["router"] as! String as NSString, (c["skip_rate"] as! Double) * 100, c["router_perplexity"] as! Double,
                         c["static_perplexity_at_equal_layers"] as! Double, ((c["router_better"] as! Bool) ? "router better" : "static better") as NSString))
        }
        if let plot {
            func series(_ prefix: String) -> [(skip: Double, perplexity: Double)] {
                [(0, points[0].perplexity)] + points.filter { $0.name.hasPrefix(prefix) }.map { ($0.skipRate, $0.perplexity) }
            }
            var s = [(name: "static pruning", color: "#c0392b", points: series("static"))]
            for (i, name) in names.enumerated() {
                let colors = ["#1f77b4", "#9467bd", "#ff7f0e", "#17becf"]
                s.append((name: name, color: colors[i % colors.count], points: series(name + " @")))
            }
            if !noOracle && kvPolicy == .fill { s.append((name: "oracle", color: "#2ca02c", points: series("oracle"))) }
            let name = URL(fileURLWithPath: modelOptions.model).lastPathComponent
            try write(SVGPlot.curves(s, title: "\(name): held-out perplexity vs layers skipped (kv \(kvPolicy))"), to: plot)
            stderr("wrote \(plot)")
        }
        if json {
            let data = try JSONEncoder().encode(points)
            let list = try JSONSerialization.jsonObject(with: data)
            var object: [String: Any] = ["points": list, "comparisons": comparisons, "kv_policy": kvPolicy.rawValue,
                                         "tokens": windows.tokenCount, "workers": workers, "model_layers": L]
            if let routerMicroseconds { object["router_microseconds_per_token"] = routerMicroseconds }
            try printJSON(object)
        }
    }

    /// Wall time to score every layer for one token, averaged over the window's embeddings (the cost does not depend
    /// on the values).
    static func routerCost(_ net: RouterNetwork, model: LlamaModel, window: [Int]) -> Double {
        guard let hidden = try? model.head.embed(window) else { return 0 }
        let dim = model.config.dim, n = window.count
        let clock = ContinuousClock(), start = clock.now
        var sink: Float = 0
        let rounds = max(1, 2000 / n)
        hidden.withUnsafeBufferPointer { h in
            for _ in 0..<rounds { for r in 0..<n { for u in 0..<net.layers { sink += net.score(h.baseAddress! + r * dim, layer: u) } } }
        }
        if sink.isNaN { print("") }
        return (clock.now - start).seconds * 1e6 / Double(rounds * n)
    }

    /// The contribution threshold under which the oracle skips `rate` of all layer visits on this text.
    static func oracleThreshold(_ profile: ResidualProfile, rate: Double, keep: LayerSet) -> Float {
        var free: [Float] = []
        for t in 0..<profile.tokens { for l in 0..<profile.layers where !keep.contains(l) { free.append(profile.ratio(token: t, layer: l)) } }
        free.sort()
        let want = Int((rate * Double(profile.tokens * profile.layers)).rounded())
        guard want > 0, !free.isEmpty else { return 0 }
        return free[min(want, free.count - 1)]
    }
}


func pad(_ s: String, _ width: Int, left: Bool = false) -> String {
    guard s.count < width else { return s + " " }
    let fill = String(repeating: " ", count: width - s.count)
    return left ? fill + s : s + fill
}
