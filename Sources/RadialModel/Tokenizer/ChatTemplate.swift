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

    /// Token ids for `messages`, ending with the assistant's turn opened: the template's markers as control tokens,
    /// each message's text as plain text. So a message that contains `<|im_end|>` cannot close its turn and open
    /// a forged system turn: its markers are spelled out as text. (llama.cpp's server and vLLM render the template
    /// to text and tokenize it with control tokens parsed, so there a message can forge turns.) For text without
    /// control tokens the ids equal `tokenizer.encode(render(messages))`.
    public func encode(_ messages: [ChatMessage], tokenizer: Tokenizer, addGenerationPrompt: Bool = true) -> [Int] {
        let start = tokenizer.id(of: "<|im_start|>")!, end = tokenizer.id(of: "<|im_end|>")!
        var ids = tokenizer.encode("")  // the BOS token, when the model wants one
        func plain(_ text: String) -> [Int] { tokenizer.encode(text, parseSpecial: false, addBOS: false) }
        func turn(_ role: String, _ content: String) {
            ids.append(start)
            ids += plain("\(role)\n\(content)")
            ids.append(end)
            ids += plain("\n")
        }
        if let sys = defaultSystemPrompt, messages.first?.role != "system" { turn("system", sys) }
        for m in messages { turn(m.role, m.content) }
        if addGenerationPrompt {
            ids.append(start)
            ids += plain("assistant\n")
        }
        return ids
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
