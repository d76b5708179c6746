import ArgumentParser
import Foundation
import RadialModel

/// The model file, and how it is loaded.
struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Path to a Llama-family GGUF model file.")
    var model: String

    @Option(name: .long, help: "BLAS threads (default: 2, or RADIAL_THREADS).")
    var threads: Int?

    func validate() throws {
        if let t = threads, t < 1 || t > 256 { throw ValidationError("--threads must be between 1 and 256") }
    }

    func applyThreads() {
        let env = ProcessInfo.processInfo.environment["RADIAL_THREADS"].flatMap(Int.init)
        let n = threads ?? env ?? 2
        BLAS.setThreads(n)
        QuantizedMatrix.threads = n
    }

    func openFile() throws -> GGUFFile {
        guard FileManager.default.fileExists(atPath: model) else {
            throw CLIError("model file not found: \(model) (run `make model` to fetch SmolLM2-135M-Instruct)")
        }
        return try GGUFFile(path: model)
    }

    /// Loads model and tokenizer, with a progress bar on stderr when it is a terminal.
    func load(progress: Bool = true) throws -> (LlamaModel, Tokenizer) {
        applyThreads()
        let file = try openFile()
        let tokenizer = try Tokenizer(gguf: file)
        let show = progress && isatty(2) != 0
        let name = "loading " + URL(fileURLWithPath: model).lastPathComponent
        let llama = try LlamaModel(file: file, progress: { done, total in
            if show { Progress.report(name, done, total) }
        })
        if show { Progress.finish() }
        return (llama, tokenizer)
    }
}

/// Sampling flags shared by every command that generates.
struct SamplingOptions: ParsableArguments {
    @Flag(name: .long, help: "Always pick the most likely token (same as --temperature 0).")
    var greedy = false
    @Option(name: .long, help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0.8
    @Option(name: .customLong("top-k"), help: "Keep only the k most likely tokens (0: off).")
    var topK: Int = 40
    @Option(name: .customLong("top-p"), help: "Keep the smallest set of tokens whose probability reaches p (1: off).")
    var topP: Float = 0.95
    @Option(name: .customLong("repeat-penalty"), help: "Penalty for tokens among the last --repeat-window (1: off).")
    var repeatPenalty: Float = 1.0
    @Option(name: .customLong("repeat-window"), help: "How many recent tokens the repetition penalty looks at.")
    var repeatWindow: Int = 64
    @Option(name: .long, help: "Random seed; the same seed gives the same text.")
    var seed: UInt64 = 0
    @Option(name: .customLong("max-tokens"), help: "Stop after this many generated tokens.")
    var maxTokens: Int = 128
    @Option(name: .customLong("stop"), help: "Stop when this text appears (repeatable).")
    var stop: [String] = []
    @Flag(name: .customLong("ignore-eos"), help: "Do not stop at the end-of-generation token.")
    var ignoreEOS = false

    var parameters: SamplingParameters {
        var p = SamplingParameters()
        p.temperature = greedy ? 0 : temperature
        p.topK = topK
        p.topP = topP
        p.repetitionPenalty = repeatPenalty
        p.repetitionWindow = repeatWindow
        p.seed = seed
        return p
    }

    var stopConditions: StopConditions {
        var s = StopConditions(maxTokens: maxTokens, stopStrings: stop)
        s.stopAtEndOfGeneration = !ignoreEOS
        return s
    }

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        do { try parameters.validate() } catch { throw ValidationError("\(error)") }
    }
}

struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

enum Progress {
    nonisolated(unsafe) static var lastShown = -1
    static let lock = NSLock()

    static func report(_ what: String, _ done: Int, _ total: Int) {
        lock.lock(); defer { lock.unlock() }
        let pct = total > 0 ? done * 100 / total : 100
        guard pct != lastShown else { return }
        lastShown = pct
        let width = 30, filled = width * pct / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write("\r\(what) [\(bar)] \(done)/\(total)".data(using: .utf8)!)
    }

    static func finish() {
        lock.lock(); defer { lock.unlock() }
        if lastShown >= 0 { FileHandle.standardError.write("\n".data(using: .utf8)!) }
        lastShown = -1
    }
}

/// Prints one JSON object on one line (sorted keys, so output is stable).
func printJSON(_ object: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes])
    print(String(decoding: data, as: UTF8.self))
}

func stderr(_ s: String) { FileHandle.standardError.write((s + "\n").data(using: .utf8)!) }

/// Parses "1,2,3" into token ids.
func parseIDs(_ s: String) throws -> [Int] {
    let parts = s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
    let ids = parts.compactMap { Int($0) }
    guard ids.count == parts.count, !ids.isEmpty else { throw ValidationError("--prompt-ids must be comma-separated integers, e.g. 1,2,3") }
    return ids
}
