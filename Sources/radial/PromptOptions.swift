import ArgumentParser
import RadialModel
import RadialProtocol

/// The prompt and output flags `run` (in-process) and `generate` (on a cluster) share.
struct PromptOptions: ParsableArguments {
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
        if (promptIDs == nil) == (prompt == nil) { throw ValidationError("give a prompt, or --prompt-ids (not both)") }
        if promptIDs != nil && chat { throw ValidationError("--chat needs a text prompt, not --prompt-ids") }
        if system != nil && !chat { throw ValidationError("--system only applies with --chat") }
    }

    /// What to generate from, as the coordinator takes it.
    func input() throws -> PromptInput {
        if let p = promptIDs { return .ids(try parseIDs(p)) }
        if chat {
            return .chat((system.map { [ChatMessage(role: "system", content: $0)] } ?? []) + [ChatMessage(role: "user", content: prompt!)])
        }
        return .text(prompt!)
    }
}
