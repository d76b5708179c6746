import ArgumentParser
import RadialCommandLine
import Foundation
import RadialModel

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
    @Option(name: .customLong("stop"), help: "Stop when this text appears; repeat the option for several (a text may itself contain commas).")
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

/// Layers as numbers and ranges ("14-16", "9,10", "9,14-16"; "none" where `allowNone`), sorted.
func parseLayerList(_ s: String, option: String, allowNone: Bool = false) throws -> [Int] {
    guard let layers = RoutingOptions.parseLayers(s), allowNone || !layers.isEmpty else {
        throw ValidationError("\(option) takes layers and ranges, e.g. 14-16 or 9,10\(allowNone ? ", or none" : "") (got \(s))")
    }
    return layers
}

/// A list option's value: comma-separated numbers ("1,4,16"), the list syntax of every option. Declared with
/// `parsing: .upToNextOption` as `[NumberList]`, so the older space-separated form (`--concurrency 1 4 16`) still
/// parses; `values` joins whatever was given.
struct NumberList<Number: LosslessStringConvertible & Sendable>: ExpressibleByArgument, Sendable {
    var values: [Number]

    init(_ values: [Number]) { self.values = values }

    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
            .map { Number(String($0).trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        values = parts.map { $0! }
    }

    var defaultValueDescription: String { values.map(String.init(describing:)).joined(separator: ",") }
}

extension Array {
    /// The numbers of a list option, however they were written (`--sizes 1,2` or `--sizes 1 2`).
    func joined<Number>() -> [Number] where Element == NumberList<Number> { flatMap(\.values) }
}

/// A list of skip rates ("0.05,0.1"), each in (0, `below`); "none" is the empty list where `allowNone`.
func parseSkipRates(_ s: String, option: String, below: Double = 1, allowNone: Bool = false) throws -> [Double] {
    if allowNone && s == "none" { return [] }
    let v = s.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
    guard !v.isEmpty, v.allSatisfy({ $0 != nil && $0! > 0 && $0! < below }) else {
        throw ValidationError("\(option) must be fractions in (0, \(below)), comma-separated, e.g. 0.05,0.1" + (allowNone ? ", or none" : ""))
    }
    return v.map { $0! }
}
