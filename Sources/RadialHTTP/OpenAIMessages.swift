import Foundation
import RadialCoordinator
import RadialModel
import RadialProtocol
import RadialRPC

// The OpenAI API's request and reply bodies, as far as Radial serves them (chat completions, completions,
// models), and their translation to and from Radial's own GenerateRequest. Unknown request fields are ignored, as
// OpenAI-compatible servers do; fields Radial cannot honour (n > 1, logprobs, tools) are refused by name.

/// `POST /v1/chat/completions` and `POST /v1/completions` bodies (one type: the two differ in `messages` and
/// `prompt` only).
struct OpenAIRequest: Decodable {
    var model: String?
    var messages: [Message]?
    var prompt: Prompt?
    var maxTokens: Int?
    var maxCompletionTokens: Int?
    var temperature: Double?
    var topP: Double?
    /// Not in OpenAI's API; llama-server and vLLM accept it too.
    var topK: Int?
    var seed: Int64?
    var stop: Stop?
    var stream: Bool?
    var streamOptions: StreamOptions?
    var user: String?
    var n: Int?
    var logprobs: AnyJSON?
    var tools: AnyJSON?

    struct StreamOptions: Decodable { var includeUsage: Bool? }

    struct Message: Decodable {
        var role: String
        var content: Content?

        /// A string, or an array of parts of which only text parts are understood.
        enum Content: Decodable {
            case text(String)
            case parts([Part])
            struct Part: Decodable { var type: String; var text: String? }
            init(from decoder: any Decoder) throws {
                let c = try decoder.singleValueContainer()
                if let s = try? c.decode(String.self) { self = .text(s) } else { self = .parts(try c.decode([Part].self)) }
            }
        }
    }

    /// A string, a one-string array, or an array of token ids.
    enum Prompt: Decodable {
        case text(String), texts([String]), ids([Int])
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .text(s) }
            else if let ids = try? c.decode([Int].self) { self = .ids(ids) }
            else { self = .texts(try c.decode([String].self)) }
        }
    }

    enum Stop: Decodable {
        case one(String), many([String])
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) { self = .one(s) } else { self = .many(try c.decode([String].self)) }
        }
        var strings: [String] { switch self { case .one(let s): [s]; case .many(let m): m } }
    }

    /// Any JSON value: only whether it was given (and not null or false) matters.
    struct AnyJSON: Decodable {
        let given: Bool
        init(from decoder: any Decoder) throws {
            let c = try decoder.singleValueContainer()
            given = !c.decodeNil() && (try? c.decode(Bool.self)) != false
        }
    }

    /// Radial's request for this body; `chat` says which endpoint it came to. INVALID_ARGUMENT names the field.
    func generateRequest(chat: Bool) throws -> GenerateRequest {
        let input: PromptInput
        if chat {
            guard let messages, !messages.isEmpty else { throw RPCError.invalidArgument("'messages' must be a non-empty array") }
            input = .chat(try messages.map { m in
                let role = m.role == "developer" ? "system" : m.role
                guard ["system", "user", "assistant"].contains(role) else {
                    throw RPCError.invalidArgument("messages: role '\(m.role)' is not supported (system, developer, user or assistant)")
                }
                switch m.content {
                case .text(let s)?: return ChatMessage(role: role, content: s)
                case .parts(let parts)?:
                    if let other = parts.first(where: { $0.type != "text" }) {
                        throw RPCError.invalidArgument("messages: content part of type '\(other.type)' is not supported (text only)")
                    }
                    return ChatMessage(role: role, content: parts.compactMap(\.text).joined())
                case nil: return ChatMessage(role: role, content: "")
                }
            })
        } else {
            switch prompt {
            case .text(let s)?: input = .text(s)
            case .texts(let t)? where t.count == 1: input = .text(t[0])
            case .texts?: throw RPCError.invalidArgument("'prompt': one prompt per request (got an array of several)")
            case .ids(let ids)?: input = .ids(ids)
            case nil: throw RPCError.invalidArgument("'prompt' is required")
            }
            if case .text(let s) = input, s.isEmpty { throw RPCError.invalidArgument("'prompt' is empty") }
        }
        if let n, n != 1 { throw RPCError.invalidArgument("'n': Radial returns one choice per request (got \(n))") }
        if logprobs?.given == true { throw RPCError.invalidArgument("'logprobs' is not supported") }
        if tools?.given == true { throw RPCError.invalidArgument("'tools' is not supported") }
        let maxTokens = maxCompletionTokens ?? self.maxTokens ?? 0
        guard maxTokens >= 0 else { throw RPCError.invalidArgument("'max_tokens' must be at least 1") }
        var sampling = SamplingParameters()
        // OpenAI's defaults: temperature 1, top_p 1; no top_k unless asked. A missing seed means a random one.
        sampling.temperature = Float(temperature ?? 1)
        sampling.topP = Float(topP ?? 1)
        sampling.topK = topK ?? 0
        sampling.seed = seed.map { UInt64(bitPattern: $0) } ?? UInt64.random(in: 0...UInt64.max)
        do { try sampling.validate() } catch { throw RPCError.invalidArgument("\(error)") }
        guard temperature.map({ $0 <= 2 }) ?? true else { throw RPCError.invalidArgument("'temperature' must be between 0 and 2") }
        let stops = stop?.strings ?? []
        guard stops.count <= 4 else { throw RPCError.invalidArgument("'stop': at most 4 sequences") }
        return GenerateRequest(input: input, sampling: sampling, maxTokens: maxTokens, stop: stops.filter { !$0.isEmpty })
    }
}

/// Radial's own per-token account, in the namespaced `radial` field standard clients ignore.
struct RadialTokenInfo: Encodable {
    var id: Int
    var layers: [Int]
    var hops: Int
}

struct Usage: Encodable {
    var promptTokens: Int
    var completionTokens: Int
    var totalTokens: Int { promptTokens + completionTokens }
    enum CodingKeys: String, CodingKey { case promptTokens, completionTokens, totalTokens }
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(promptTokens, forKey: .promptTokens)
        try c.encode(completionTokens, forKey: .completionTokens)
        try c.encode(totalTokens, forKey: .totalTokens)
    }
}

/// A whole reply (`stream: false`) or one streamed chunk, for either endpoint.
struct CompletionReply: Encodable {
    var id: String
    var object: String
    var created: Int
    var model: String
    var choices: [Choice]
    var usage: Usage?
    var radial: RadialSummary?

    struct Choice: Encodable {
        var index = 0
        /// Chat, whole reply.
        var message: ChatReplyMessage?
        /// Chat, streamed.
        var delta: ChatReplyMessage?
        /// Completions.
        var text: String?
        var finishReason: String?
        /// Always null: log probabilities are not computed (the key is there because clients expect it).
        var logprobs: Int?
        var radial: [RadialTokenInfo]?

        enum CodingKeys: String, CodingKey { case index, message, delta, text, finishReason, logprobs, radial }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(index, forKey: .index)
            try c.encodeIfPresent(message, forKey: .message)
            try c.encodeIfPresent(delta, forKey: .delta)
            try c.encodeIfPresent(text, forKey: .text)
            try c.encode(finishReason, forKey: .finishReason)  // null until the last chunk, as OpenAI sends it
            try c.encodeNil(forKey: .logprobs)
            try c.encodeIfPresent(radial, forKey: .radial)
        }
    }
}

struct ChatReplyMessage: Encodable {
    var role: String?
    var content: String?
}

/// Per request: the layers and hops generated tokens used against a dense pipeline's.
struct RadialSummary: Encodable {
    var modelLayers: Int
    var hopsPerToken: Double
    var layersSkippedPerToken: Double
    var tokens: [RadialTokenInfo]?
}

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
struct OpenAIErrorBody: Encodable {
    struct Detail: Encodable {
        var message: String
        var type: String
        var param: String?
        var code: String?
        enum CodingKeys: String, CodingKey { case message, type, param, code }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(message, forKey: .message)
            try c.encode(type, forKey: .type)
            try c.encode(param, forKey: .param)
            try c.encode(code, forKey: .code)
        }
    }
    var error: Detail
}

struct ModelList: Encodable {
    struct Model: Encodable { var id: String; var object = "model"; var created: Int; var ownedBy = "radial" }
    var object = "list"
    var data: [Model]
}

extension FinishReason {
    /// OpenAI's name: the end-of-generation token and a stop string are both "stop"; a full context is "length".
    var openAI: String {
        switch self {
        case .endOfGeneration, .stopString: "stop"
        case .maxTokens, .contextFull: "length"
        case .cancelled: "cancelled"
        }
    }
}
