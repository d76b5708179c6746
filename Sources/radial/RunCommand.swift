import ArgumentParser
import RadialCommandLine
import Foundation
import RadialModel

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Generate text with a model in this process, streaming it to stdout.",
        discussion: """
            The prompt is tokenized as-is (special tokens such as <|im_start|> written in it are recognised), or
            wrapped in the model's chat format with --chat. With --json, the last line of output is one JSON
            object: prompt_ids, generated_ids, text, finish_reason, prefill/decode timings.
            """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var sampling: SamplingOptions

    @Flag(name: .long, help: "Wrap the prompt as a user message in the model's chat template.")
    var chat = false
    @Option(name: .long, help: "System prompt for --chat (default: the model's own, if its template has one).")
    var system: String?
    @Option(name: .customLong("prompt-ids"), help: "Use these token ids as the prompt instead of text (comma-separated).")
    var promptIDs: String?
    @Flag(name: .long, help: "Print a JSON summary as the last line.")
    var json = false
    @Flag(name: .long, help: "Do not stream the text (useful with --json).")
    var quiet = false
    @Argument(help: "The prompt text.")
    var prompt: String?

    func validate() throws {
        if promptIDs == nil && prompt == nil { throw ValidationError("give a prompt, or --prompt-ids") }
        if promptIDs != nil && prompt != nil { throw ValidationError("give either a prompt or --prompt-ids, not both") }
        if promptIDs != nil && chat { throw ValidationError("--chat needs a text prompt, not --prompt-ids") }
    }

    func run() throws {
        let (llama, tokenizer) = try model.load()
        let ids: [Int]
        if let p = promptIDs {
            ids = try parseIDs(p)
            if let bad = ids.first(where: { $0 < 0 || $0 >= llama.config.vocabSize }) {
                throw CLIError("token id \(bad) is outside the vocabulary (0..<\(llama.config.vocabSize))")
            }
        } else if chat {
            guard let template = ChatTemplate(tokenizer: tokenizer) else {
                throw CLIError("this model has no ChatML tokens (<|im_start|>, <|im_end|>); --chat is not available")
            }
            var messages: [ChatMessage] = []
            if let s = system { messages.append(ChatMessage(role: "system", content: s)) }
            messages.append(ChatMessage(role: "user", content: prompt!))
            ids = tokenizer.encode(template.render(messages))
        } else {
            ids = tokenizer.encode(prompt!)
        }
        let generator = LocalGenerator(model: llama, tokenizer: tokenizer)
        let out = FileHandle.standardOutput
        let result = try generator.generate(promptIDs: ids, sampling: sampling.parameters, stop: sampling.stopConditions) { text in
            if !quiet { out.write(text.data(using: .utf8)!) }
        }
        if !quiet { print("") }
        if json {
            try printJSON([
                "prompt_ids": result.promptIDs,
                "generated_ids": result.generatedIDs,
                "text": result.text,
                "finish_reason": result.finishReason.rawValue,
                "prefill_tokens": result.promptIDs.count,
                "prefill_seconds": result.prefillSeconds,
                "prefill_tokens_per_s": result.prefillTokensPerSecond,
                "decode_seconds": result.decodeSeconds,
                "decode_tokens_per_s": result.decodeTokensPerSecond,
                "threads": BLAS.threads,
            ])
        }
    }
}
