/// A chat message.
public struct ChatMessage: Sendable, Equatable, Codable {
    public var role: String
    public var content: String
    public init(role: String, content: String) {
        self.role = role
        self.content = content
    }
}

/// The ChatML format (`<|im_start|>role\ncontent<|im_end|>\n`), which SmolLM2 and many others use. The model's
/// own template (GGUF `tokenizer.chat_template`, Jinja) is not interpreted; instead its default system prompt,
/// if it has one, is recognised and inserted exactly as the template would.
public struct ChatTemplate: Sendable {
    public let defaultSystemPrompt: String?

    /// nil when the model does not use ChatML.
    public init?(tokenizer: Tokenizer) {
        guard tokenizer.id(of: "<|im_start|>") != nil, tokenizer.id(of: "<|im_end|>") != nil else { return nil }
        defaultSystemPrompt = tokenizer.chatTemplate.flatMap(Self.systemPrompt(in:))
    }

    public init(defaultSystemPrompt: String?) { self.defaultSystemPrompt = defaultSystemPrompt }

    /// The literal default system message a Jinja ChatML template writes, e.g. SmolLM2's
    /// `'<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n'`.
    static func systemPrompt(in template: String) -> String? {
        let marker = "<|im_start|>system\n"
        guard let start = find(marker, in: template[...]),
              let end = find("<|im_end|>", in: template[start.upperBound...]) else { return nil }
        let text = String(template[start.upperBound..<end.lowerBound])
        return text.contains("{{") || text.contains("{%") || text.contains("'") ? nil : text
    }

    /// The prompt text for `messages`, ending with the assistant's turn opened.
    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool = true) -> String {
        var out = ""
        if let sys = defaultSystemPrompt, messages.first?.role != "system" {
            out += "<|im_start|>system\n\(sys)<|im_end|>\n"
        }
        for m in messages { out += "<|im_start|>\(m.role)\n\(m.content)<|im_end|>\n" }
        if addGenerationPrompt { out += "<|im_start|>assistant\n" }
        return out
    }
}

/// First occurrence of `needle` in `hay` (no Foundation in this module).
private func find(_ needle: String, in hay: Substring) -> Range<String.Index>? {
    guard let first = needle.first else { return nil }
    var i = hay.startIndex
    while let j = hay[i...].firstIndex(of: first) {
        if hay[j...].hasPrefix(needle) { return j..<hay.index(j, offsetBy: needle.count) }
        i = hay.index(after: j)
    }
    return nil
}
