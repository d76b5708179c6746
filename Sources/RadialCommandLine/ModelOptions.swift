import ArgumentParser
import Foundation
import RadialModel

/// The model file, and how it is loaded.
public struct ModelOptions: ParsableArguments {
    public init() {}
    @Option(name: .long, help: "Path to a Llama-family GGUF model file.")
    public var model: String

    @Option(name: .long, help: "BLAS threads (default: 2, or RADIAL_THREADS).")
    public var threads: Int?

    @Option(name: .long, help: ArgumentHelp(
        "Decode arithmetic: f32 or q8 (default: f32, or RADIAL_ACTIVATIONS).",
        discussion: "f32 multiplies fp32 activations by the 4/8-bit weights and equals the fp32 reference up to "
            + "summation order; q8 quantises activations to int8 per block of 32 as llama.cpp does: faster, but "
            + "greedy text drifts from f32's after a few tokens. Every process of a cluster must use the same one "
            + "for its output to equal `radial run` with it.",
        valueName: "f32|q8"))
    public var activations: String?

    public func validate() throws {
        if let t = threads, t < 1 || t > 256 { throw ValidationError("--threads must be between 1 and 256") }
        _ = try resolvedActivations()
    }

    func resolvedActivations() throws -> QuantizedMatrix.Activations {
        let env = ProcessInfo.processInfo.environment["RADIAL_ACTIVATIONS"]
        let name = activations ?? (env?.isEmpty == false ? env! : "f32")
        guard let mode = QuantizedMatrix.Activations(rawValue: name) else {
            throw ValidationError("--activations must be f32 or q8 (got '\(name)'\(activations == nil ? " from RADIAL_ACTIVATIONS" : ""))")
        }
        return mode
    }

    /// Thread counts, process-wide (a resource: no result depends on them); call before loading.
    public func applyThreads() {
        let env = ProcessInfo.processInfo.environment["RADIAL_THREADS"].flatMap(Int.init)
        let n = threads ?? env ?? 2
        BLAS.setThreads(n)
        ComputePool.configuredThreads = n
    }

    /// The arithmetic the model is loaded to compute in (validated already).
    public var arithmetic: QuantizedMatrix.Activations { (try? resolvedActivations()) ?? .f32 }

    public func openFile() throws -> GGUFFile {
        guard FileManager.default.fileExists(atPath: model) else {
            throw CLIError("model file not found: \(model) (run `make model` to fetch SmolLM2-135M-Instruct)")
        }
        return try GGUFFile(path: model)
    }

    /// Loads model and tokenizer, with a progress bar on stderr when it is a terminal.
    public func load(progress: Bool = true) throws -> (LlamaModel, Tokenizer) {
        applyThreads()
        let file = try openFile()
        let tokenizer = try Tokenizer(gguf: file)
        let show = progress && isatty(2) != 0
        let name = "loading " + URL(fileURLWithPath: model).lastPathComponent
        let llama = try LlamaModel(file: file, activations: arithmetic, progress: { done, total in
            if show { Progress.report(name, done, total) }
        })
        if show { Progress.finish() }
        return (llama, tokenizer)
    }
}

public struct CLIError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

public enum Progress {
    nonisolated(unsafe) static var lastShown = -1
    static let lock = NSLock()

    /// A terminal gets a bar redrawn in place; a log (stderr redirected) one line per tenth of the work.
    static let isTerminal = isatty(2) != 0

    public static func report(_ what: String, _ done: Int, _ total: Int) {
        lock.lock(); defer { lock.unlock() }
        let pct = total > 0 ? done * 100 / total : 100
        guard pct != lastShown else { return }
        if !isTerminal {
            if lastShown < 0 || pct / 10 != lastShown / 10 {
                FileHandle.standardError.write("\(what): \(done)/\(total)\n".data(using: .utf8)!)
            }
            lastShown = pct
            return
        }
        lastShown = pct
        let width = 30, filled = width * pct / 100
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write("\r\(what) [\(bar)] \(done)/\(total)".data(using: .utf8)!)
    }

    public static func finish() {
        lock.lock(); defer { lock.unlock() }
        if lastShown >= 0 && isTerminal { FileHandle.standardError.write("\n".data(using: .utf8)!) }
        lastShown = -1
    }
}

