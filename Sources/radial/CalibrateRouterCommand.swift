import ArgumentParser
import Foundation
import RadialCommandLine
import RadialModel
import RadialRouter

struct CalibrateRouterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate-router",
        abstract: "Measure a router's quality curve again, on your text and with your policy, and save it in the router.",
        usage: "radial calibrate-router --model <m> --router <r> --text <t> [<options>]",
        discussion: """
            The quality curve (held-out perplexity against threshold) is what `--max-quality-loss` reads. \
            `radial train-router` measures one at the end of training; this measures it again on another text \
            (say, the kind your users send) or with another policy (`--min-layers`, `--dense-positions`, \
            `--always-run`), then writes the router with the new curve. The network, and so the fingerprint workers \
            check, do not change.

            Example:
              radial calibrate-router \\
                --model models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \\
                --router out/router.rdrt --text data/code-heldout.txt \\
                --max-tokens 512 --min-layers 26
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var textOptions: TextOptions
    @Option(name: .long, help: "The router to calibrate.")
    var router: String
    @Option(name: .long, help: "Where to write the calibrated router (default: over --router).")
    var out: String?
    @Option(name: .customLong("skip-rates"), help: "Skip rates at which the curve is measured, comma-separated.")
    var skipRates = "0.025,0.05,0.075,0.1,0.125,0.15,0.2,0.25,0.3"
    @Option(name: .customLong("always-run"), help: "Layers every token runs, comma-separated (default: first and last).")
    var alwaysRun: String?
    @Option(name: .customLong("min-layers"), help: "The fewest layers a token runs (at most layers − this skips per token).")
    var minLayers = 0
    @Option(name: .customLong("dense-positions"), help: "The first N positions of each window run every layer.")
    var densePositions = 0

    func validate() throws {
        guard minLayers >= 0, densePositions >= 0 else { throw ValidationError("--min-layers and --dense-positions must be at least 0") }
        _ = try rates()
    }

    func rates() throws -> [Double] { try parseSkipRates(skipRates, option: "--skip-rates", below: 0.9) }

    func run() throws {
        let (model, tokenizer) = try modelOptions.load()
        let L = model.config.layerCount
        guard FileManager.default.fileExists(atPath: router) else { throw CLIError("router file not found: \(router)") }
        var r = try Router(path: router)
        try r.check(modelFingerprint: try modelOptions.openFile().fingerprint, layers: L, hiddenSize: model.config.dim)
        let keep = try alwaysRun.map { LayerSet(try parseLayerList($0, option: "--always-run", allowNone: true)) } ?? LayerSet([0, L - 1])
        guard minLayers <= L else { throw CLIError("--min-layers \(minLayers) is more than the model's \(L) layers") }
        let windows = try textOptions.windows(tokenizer)
        let name = (textOptions.text as NSString).lastPathComponent + (textOptions.skipTokens > 0 ? " after \(textOptions.skipTokens) tokens" : "")
        let curve = try QualityCurve.measure(router: r, model: model, windows: windows, text: name, alwaysRun: keep,
                                             densePositions: densePositions, minLayers: minLayers, skipRates: try rates()) { done, total in
            Progress.report("quality curve", done, total)
            if done == total { Progress.finish() }
        }
        r.header.qualityCurve = curve
        let target = out ?? router
        try r.write(to: target)
        print("quality curve on \(curve.tokens) tokens of \(name) " + String(format: "(dense perplexity %.2f)", curve.densePerplexity)
              + ", at least \(minLayers) layers per token:")
        for p in curve.points {
            print(String(format: "  threshold %.4f: %5.1f%% of layers skipped, perplexity %.2f (%+.1f%%)", p.threshold, p.skipRate * 100, p.perplexity, p.risePercent))
        }
        print("wrote \(target) (fingerprint \(r.fingerprint.prefix(16)), unchanged)")
    }
}
