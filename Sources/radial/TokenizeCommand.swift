import ArgumentParser
import RadialCommandLine
import Foundation
import RadialModel

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Print the token ids of a text (reads only the tokenizer from the model file).",
        discussion: """
            Example:
              radial tokenize --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\
                "<|im_start|>user Hello"
            """)

    @Option(name: .long, help: "Path to a GGUF model file.")
    var model: String
    @Flag(name: .long, help: "Print {\"ids\": [...]} instead of one id per line with its piece.")
    var json = false
    @Flag(name: .customLong("no-special"), help: "Treat special-token text such as <|im_start|> as plain text.")
    var noSpecial = false
    @Argument(help: "The text to tokenize.")
    var text: String

    func run() throws {
        guard FileManager.default.fileExists(atPath: model) else { throw CLIError("model file not found: \(model)") }
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: model))
        let ids = tokenizer.encode(text, parseSpecial: !noSpecial)
        if json {
            try printJSON(["ids": ids])
        } else {
            for id in ids {
                let piece = String(decoding: tokenizer.bytes(of: id, special: true), as: UTF8.self)
                print("\(id)\t\(piece.debugDescription)")
            }
        }
    }
}
