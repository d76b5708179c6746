import ArgumentParser
import Foundation
import RadialCommandLine
import RadialModel
import RadialRouter

/// Options every router tool shares: which text, how much of it, cut into what windows.
struct TextOptions: ParsableArguments {
    @Option(name: .long, help: "A plain-text file (e.g. data/fortunes-train.txt from `scripts/setup.sh corpus`).")
    var text: String
    @Option(name: .customLong("max-tokens"), help: "Use at most this many tokens of the text.")
    var maxTokens = 2048
    @Option(name: .long, help: "Tokens per window; each window is scored as its own sequence from position 0.")
    var window = 128
    @Option(name: .customLong("skip-tokens"), help: "Start after this many tokens of the text (to keep apart a part used for calibration, e.g. train-router's --curve-tokens).")
    var skipTokens = 0

    func validate() throws {
        guard maxTokens >= 2 else { throw ValidationError("--max-tokens must be at least 2") }
        guard (2...4096).contains(window) else { throw ValidationError("--window must be between 2 and 4096") }
        guard skipTokens >= 0 else { throw ValidationError("--skip-tokens must be 0 or more") }
    }

    func windows(_ tokenizer: Tokenizer) throws -> TokenWindows {
        guard FileManager.default.fileExists(atPath: text) else { throw CLIError("text file not found: \(text)") }
        return try TokenWindows(path: text, tokenizer: tokenizer, windowLength: window, maxTokens: maxTokens, skipTokens: skipTokens)
    }
}

struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Measure how much each layer changes the hidden state, token by token (the Radial paper's measure).",
        usage: "radial profile --model <model> --text <text> [<options>]",
        discussion: """
            For every token and layer, r = ||f(x)|| / ||x + f(x)|| over the whole block, on the dense model. Prints a \
            per-layer table (median, p10, p90); --csv writes it, --plot draws it, --json ends with one object holding \
            `layer_medians`.

            Layers with a low median are what static pruning would drop; the spread within a layer is what a \
            per-token router can use.
            """)

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var textOptions: TextOptions
    @Flag(name: .long, help: "End with one JSON object on the last line.")
    var json = false
    @Option(name: .long, help: "Write an SVG plot of the per-layer distribution here.")
    var plot: String?
    @Option(name: .long, help: "Write the per-layer table as CSV here.")
    var csv: String?

    func run() throws {
        let (model, tokenizer) = try modelOptions.load()
        let windows = try textOptions.windows(tokenizer)
        let show = isatty(2) != 0
        let trace = try ResidualProfiler(model: model).run(windows) { done, total in
            if show { Progress.report("profiling", done, total) }
        }
        if show { Progress.finish() }
        let summaries = trace.profile.summaries
        print("Residual contribution per layer over \(trace.profile.tokens) tokens of \(textOptions.text)")
        print("layer  median     p10     p90   " )
        let scale = Double(summaries.map(\.p90).max() ?? 1)
        for s in summaries {
            let bar = String(repeating: "#", count: Int((Double(s.median) / max(scale, 1e-9) * 40).rounded()))
            print(String(format: "%5d  %6.3f  %6.3f  %6.3f   ", s.layer, s.median, s.p10, s.p90) + bar)
        }
        if let csv {
            let rows = ["layer,median,p10,p90,mean"] + summaries.map { "\($0.layer),\($0.median),\($0.p10),\($0.p90),\($0.mean)" }
            try write(rows.joined(separator: "\n") + "\n", to: csv)
            stderr("wrote \(csv)")
        }
        if let plot {
            let name = URL(fileURLWithPath: modelOptions.model).lastPathComponent
            try write(SVGPlot.profile(summaries, title: "Residual contribution per layer: \(name), \(trace.profile.tokens) tokens"), to: plot)
            stderr("wrote \(plot)")
        }
        if json {
            try printJSON([
                "tokens": trace.profile.tokens,
                "layer_medians": summaries.map { Double($0.median) },
                "layer_p10": summaries.map { Double($0.p10) },
                "layer_p90": summaries.map { Double($0.p90) },
            ])
        }
    }
}

func write(_ text: String, to path: String) throws {
    do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
        throw CLIError("cannot write \(path): \(error.localizedDescription)")
    }
}
