import ArgumentParser
import Foundation
import RadialCommandLine
import RadialModel
import RadialRouter

struct TrainRouterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-router",
        abstract: "Distil a per-token layer router from the dense model over a text.",
        discussion: """
            Runs the dense model over the text, records the state entering every layer and what skipping the layer \
            would cost (--labels cost) or how much it changed the state (--labels ratio), and fits a small MLP \
            (normalised state + which layer -> predicted score) on the first 90% of the windows; the rest is held out \
            and reported. Later rounds trace the text again with the router skipping. At the end it measures the \
            quality curve that --max-quality-loss reads.

            The router file records the model's fingerprint: loading it against another model is an error. Serve it \
            with `radial-coordinator --router` and `radial-worker --router`, or measure it with `radial eval --router`.

            Example:
              radial train-router --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\
                --text data/fortunes-train.txt --out out/router.rdrt
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var textOptions: TextOptions
    @Option(name: .long, help: "Where to write the router.")
    var out: String
    @Option(name: .long, help: "Hidden units of the router MLP.")
    var width = 64
    @Option(name: .long, help: "Passes over the training tokens.")
    var epochs = 12
    @Option(name: .customLong("learning-rate"), help: "Adam learning rate.")
    var learningRate: Float = 1e-3
    @Option(name: .long, help: "Seed for initialisation and shuffling (training is deterministic for a seed).")
    var seed: UInt64 = 1
    @Option(name: .long, help: "Decide blocks of this many layers together (a worker's range size: a token then skips whole workers). 1 decides each layer.")
    var block = 1
    @Option(name: .customLong("always-run"), help: "Layers every token runs while tracing with the router and measuring the quality curve, e.g. 0,27 or 0-13,17-27 (only the rest are learned and probed); none for no layer. Serving then defaults to the same. (default: first and last)")
    var alwaysRun: String?
    @Option(name: .long, help: "Contiguous runs of layers decided as one unit each, every other layer alone, e.g. 14-16 or 9-10,14-16 (instead of --block): the cheap middle layers a model can lose together. Worker ranges must then start where a unit starts.")
    var runs: String?
    @Option(name: .long, help: "Training rounds: the first on the dense model's states, each later one adds the states the router's own skipping produces.")
    var rounds = 3
    @Option(name: .customLong("on-policy-skip-rate"), help: "Skip rate the router runs at while tracing for later rounds.")
    var onPolicySkipRate = 0.1
    @Option(name: .long, help: "What the router learns: cost (how much skipping the layer moves the next-token distribution, measured by probing each skip; beats ratio on SmolLM2 and Qwen2.5, 5-7x slower to train) or ratio (how much a layer changes the state, the Radial paper's measure).")
    var labels: RouterLabels = .cost
    @Option(name: .customLong("cost-candidates"), help: "With --labels cost: the most likely tokens the divergence is taken over.")
    var costCandidates = 64
    @Option(name: .customLong("curve-text"), help: "Text for the quality curve (perplexity against threshold, what --max-quality-loss reads) instead of the held-out tenth of --text.")
    var curveText: String?
    @Option(name: .customLong("curve-tokens"), help: "Tokens of --curve-text to measure the curve on.")
    var curveTokens = 1024
    @Option(name: .customLong("curve-skip-rates"), help: "Skip rates at which the curve is measured, comma-separated; none to skip the curve.")
    var curveSkipRates = "0.025,0.05,0.075,0.1,0.125,0.15,0.2,0.25,0.3"
    @Option(name: .customLong("dense-positions"), help: "The first N positions of each window run every layer while tracing with the router and measuring the quality curve (serving then defaults to the same).")
    var densePositions = 0
    @Option(name: .customLong("min-layers"), help: "The fewest layers a token runs while tracing with the router and measuring the quality curve: at most (layers − this) skips per token. Skips compound: on Qwen2.5-1.5B a cap of 2 per token is what lets routing beat static pruning (docs/ROUTING.md). Serving then defaults to the same.")
    var minLayers = 0
    @Flag(name: .long, help: "Fit an affine map for each run (--runs) or block (--block) that a skipping token leaves through, instead of keeping the state it entered with (ridge regression on the dense training states; (hidden+1) x hidden numbers per run, stored in the router file). The skip costs and later rounds are then measured with the maps in place. On Qwen2.5-1.5B a map halves what removing layers 14-16 costs.")
    var bypass = false
    @Option(name: .customLong("bypass-ridge"), help: "With --bypass: the ridge strength, relative to the mean diagonal of the normal equations.")
    var bypassRidge = RunMapFit.defaultRidge
    @Flag(name: .long, help: "End with one JSON object on the last line.")
    var json = false

    var parsedCurveRates: [Double]? { try? parseSkipRates(curveSkipRates, option: "--curve-skip-rates", below: 0.9, allowNone: true) }

    /// --runs as layer ranges ("9-10,14-16").
    func parsedRuns() throws -> [LayerRange] {
        guard let runs else { return [] }
        return try runs.split(separator: ",").map { part in
            let ends = part.split(separator: "-").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard ends.count == 2, let a = ends[0], let b = ends[1], a >= 0, a < b else {
                throw ValidationError("--runs takes ranges of two or more layers, e.g. 14-16 or 9-10,14-16 (got \(part))")
            }
            return LayerRange(a, b + 1)
        }
    }

    func validate() throws {
        guard (1...4096).contains(width) else { throw ValidationError("--width must be between 1 and 4096") }
        guard (1...1000).contains(epochs) else { throw ValidationError("--epochs must be between 1 and 1000") }
        guard learningRate > 0, learningRate < 1 else { throw ValidationError("--learning-rate must be in (0, 1)") }
        guard block >= 1 else { throw ValidationError("--block must be at least 1") }
        if runs != nil && block != 1 { throw ValidationError("give --block or --runs, not both") }
        _ = try parsedRuns()
        if let alwaysRun { _ = try parseLayerList(alwaysRun, option: "--always-run", allowNone: true) }
        guard (1...10).contains(rounds) else { throw ValidationError("--rounds must be between 1 and 10") }
        guard onPolicySkipRate > 0, onPolicySkipRate < 0.9 else { throw ValidationError("--on-policy-skip-rate must be in (0, 0.9)") }
        guard (2...4096).contains(costCandidates) else { throw ValidationError("--cost-candidates must be between 2 and 4096") }
        _ = try parseSkipRates(curveSkipRates, option: "--curve-skip-rates", below: 0.9, allowNone: true)
        guard curveTokens >= 16 else { throw ValidationError("--curve-tokens must be at least 16") }
        guard densePositions >= 0, minLayers >= 0 else { throw ValidationError("--dense-positions and --min-layers must be at least 0") }
        if bypass && runs == nil && block == 1 { throw ValidationError("--bypass fits maps for runs or blocks of layers: give --runs or --block") }
        guard bypassRidge > 0, bypassRidge.isFinite else { throw ValidationError("--bypass-ridge must be positive") }
    }

    func run() throws {
        let (model, tokenizer) = try modelOptions.load()
        let fingerprint = try modelOptions.openFile().fingerprint
        guard block <= model.config.layerCount else { throw CLIError("--block \(block) is more than the model's \(model.config.layerCount) layers") }
        let windows = try textOptions.windows(tokenizer)
        guard windows.windows.count >= 2 else {
            throw CLIError("the text gives \(windows.windows.count) window of \(textOptions.window) tokens; training needs at least 2 (one is held out): lower --window or give more text")
        }
        var distiller = RouterDistiller()
        distiller.trainer.width = width
        distiller.trainer.epochs = epochs
        distiller.trainer.learningRate = learningRate
        distiller.trainer.seed = seed
        distiller.rounds = rounds
        distiller.blockSize = block
        distiller.runs = try parsedRuns()
        if let alwaysRun {
            let keep = try parseLayerList(alwaysRun, option: "--always-run", allowNone: true)
            if let bad = keep.first(where: { $0 >= model.config.layerCount }) { throw CLIError("--always-run: layer \(bad) is not in the model") }
            distiller.alwaysRun = LayerSet(keep)
        }
        distiller.onPolicySkipRate = onPolicySkipRate
        distiller.labels = labels
        distiller.densePositions = densePositions
        distiller.minLayers = minLayers
        distiller.costCandidates = costCandidates
        distiller.bypass = bypass
        distiller.bypassRidge = bypassRidge
        distiller.curveSkipRates = parsedCurveRates ?? []
        if let curveText {
            guard FileManager.default.fileExists(atPath: curveText) else { throw CLIError("curve text not found: \(curveText)") }
            distiller.curveWindows = (try TokenWindows(path: curveText, tokenizer: tokenizer, windowLength: textOptions.window, maxTokens: curveTokens),
                                      (curveText as NSString).lastPathComponent)
        }
        let router = try distiller.distil(model: model, modelFingerprint: fingerprint, windows: windows,
                                          windowLength: textOptions.window) { event in
            switch event {
            case .tracing(let round, let done, let total):
                Progress.report(round == 0 ? "tracing the dense model for the run maps" : round == 1 ? "tracing the dense model" : "round \(round): tracing with the router at \(Int(onPolicySkipRate * 100))% skipped", done, total)
                if done == total { Progress.finish() }
            case .epoch(let round, let p):
                stderr(String(format: "round %d/%d epoch %d/%d  train loss %.4f  held-out loss %.4f", round, rounds, p.epoch, p.epochs, p.trainLoss, p.heldOutLoss))
            case .fitted(let round, let s):
                stderr(String(format: "round %d/%d: held-out MAE %.4f, within-layer correlation %.3f", round, rounds, s.heldOutMAE, s.withinLayerCorrelation))
            case .mapFitted(let run, let seconds):
                stderr(String(format: "fitted the map for layers %d-%d in %.1f s", run.lowerBound, run.upperBound - 1, seconds))
            case .curve(let done, let total):
                Progress.report("quality curve", done, total)
                if done == total { Progress.finish() }
            }
        }
        let network = router.network, summary = router.header.training
        try router.write(to: out)
        print(String(format: "router: %d parameters, trained on %d tokens in %.1f s; held-out %d tokens: MAE %.4f, correlation %.3f (layer alone: %.3f), within layers %.3f",
                     network.parameterCount, summary.trainTokens, summary.seconds, summary.heldOutTokens, summary.heldOutMAE,
                     summary.heldOutCorrelation, summary.layerOnlyCorrelation, summary.withinLayerCorrelation))
        if let curve = router.header.qualityCurve {
            print(String(format: "quality curve on %d tokens of %@ (dense perplexity %.2f):", curve.tokens, curve.text, curve.densePerplexity))
            for p in curve.points {
                print(String(format: "  threshold %.4f: %5.1f%% of layers skipped, perplexity %.2f (%+.1f%%)", p.threshold, p.skipRate * 100, p.perplexity, p.risePercent))
            }
        }
        print("wrote \(out) (fingerprint \(router.fingerprint.prefix(16)))")
        if json {
            try printJSON(["out": out, "parameters": network.parameterCount, "train_tokens": summary.trainTokens,
                           "held_out_tokens": summary.heldOutTokens, "held_out_mae": Double(summary.heldOutMAE),
                           "held_out_correlation": Double(summary.heldOutCorrelation),
                           "layer_only_correlation": Double(summary.layerOnlyCorrelation),
                           "within_layer_correlation": Double(summary.withinLayerCorrelation), "seconds": summary.seconds,
                           "labels": labels.rawValue,
                           "quality_curve": (router.header.qualityCurve?.points ?? []).map {
                               ["threshold": Double($0.threshold), "skip_rate": $0.skipRate, "perplexity": $0.perplexity, "rise_percent": $0.risePercent]
                           }])
        }
    }
}
