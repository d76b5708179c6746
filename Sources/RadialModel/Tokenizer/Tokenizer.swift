/// Token kinds as GGUF's `tokenizer.ggml.token_type` stores them (llama.cpp's llama_token_type).
public enum TokenKind: Int, Sendable {
    case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

public enum TokenizerError: Error, CustomStringConvertible, Equatable {
    case unsupportedModel(String)
    case unsupportedPreTokenizer(String)
    case invalidVocabulary(String)

    public var description: String {
        switch self {
        case .unsupportedModel(let m): "unsupported tokenizer model \"\(m)\" (this engine implements gpt2 byte-level BPE)"
        case .unsupportedPreTokenizer(let p):
            "unsupported pre-tokenizer \"\(p)\" (supported: \(PreTokenizer.supportedNames.joined(separator: ", ")))"
        case .invalidVocabulary(let w): "invalid tokenizer data: \(w)"
        }
    }
}

/// GPT-2 byte-level BPE built from a GGUF's `tokenizer.ggml.*` metadata, matching llama.cpp's ids: special tokens
/// in the text are split out first (llama.cpp's parse_special), then each stretch of plain text is pre-tokenized
/// and each word merged by rank.
public final class Tokenizer: Sendable {
    public let tokens: [String]
    public let kinds: [TokenKind]
    public let preTokenizer: PreTokenizer
    public let bosID: Int?
    public let eosID: Int?
    public let addBOS: Bool
    public let chatTemplate: String?
    let ids: [String: Int]
    /// (left id, right id) packed into one key → (rank, merged id)
    let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// Byte-level symbol of each byte → token id (BPE's starting symbols).
    let byteTokens: [Int32]
    /// Tokens matched literally in text: control, user-defined and unknown ones, longest first.
    let specials: [(id: Int, bytes: [UInt8])]

    public var vocabSize: Int { tokens.count }

    public convenience init(gguf f: GGUFFile) throws {
        let model = try f.string("tokenizer.ggml.model")
        guard model == "gpt2" else { throw TokenizerError.unsupportedModel(model) }
        let preName = f.metadata["tokenizer.ggml.pre"]?.stringValue ?? "gpt2"
        guard let pre = PreTokenizer(ggufName: preName) else { throw TokenizerError.unsupportedPreTokenizer(preName) }
        let tokens = try f.strings("tokenizer.ggml.tokens")
        let types = f.metadata["tokenizer.ggml.token_type"] == nil
            ? Array(repeating: 1, count: tokens.count) : try f.ints("tokenizer.ggml.token_type")
        let merges = try f.strings("tokenizer.ggml.merges")
        func optionalID(_ key: String) throws -> Int? { f.metadata[key] == nil ? nil : try f.int(key) }
        try self.init(tokens: tokens, types: types, merges: merges, preTokenizer: pre,
                      bosID: try optionalID("tokenizer.ggml.bos_token_id"),
                      eosID: try optionalID("tokenizer.ggml.eos_token_id"),
                      addBOS: f.metadata["tokenizer.ggml.add_bos_token"]?.boolValue ?? false,
                      chatTemplate: f.metadata["tokenizer.chat_template"]?.stringValue)
    }

    public init(tokens: [String], types: [Int], merges: [String], preTokenizer: PreTokenizer,
                bosID: Int?, eosID: Int?, addBOS: Bool, chatTemplate: String?) throws {
        guard !tokens.isEmpty, types.count == tokens.count else {
            throw TokenizerError.invalidVocabulary("\(tokens.count) tokens but \(types.count) token types")
        }
        for id in [bosID, eosID].compactMap({ $0 }) where id < 0 || id >= tokens.count {
            throw TokenizerError.invalidVocabulary("special token id \(id) outside the vocabulary of \(tokens.count)")
        }
        self.tokens = tokens
        kinds = types.map { TokenKind(rawValue: $0) ?? .normal }
        self.preTokenizer = preTokenizer
        self.bosID = bosID
        self.eosID = eosID
        self.addBOS = addBOS
        self.chatTemplate = chatTemplate
        var ids: [String: Int] = [:]
        ids.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where ids[t] == nil { ids[t] = i }
        self.ids = ids
        var table: [UInt64: (Int32, Int32)] = [:]
        table.reserveCapacity(merges.count)
        for (rank, m) in merges.enumerated() {
            guard let sp = m.firstIndex(of: " ", after: m.startIndex) else {
                throw TokenizerError.invalidVocabulary("merge \(rank) \"\(m)\" has no space")
            }
            let a = String(m[..<sp]), b = String(m[m.index(after: sp)...])
            guard let ia = ids[a], let ib = ids[b], let im = ids[a + b] else { continue }
            let key = UInt64(ia) << 32 | UInt64(ib)
            if table[key] == nil { table[key] = (Int32(rank), Int32(im)) }
        }
        self.merges = table
        byteTokens = (0..<256).map { b in Int32(ids[String(ByteLevel.byteToScalar[b])] ?? -1) }
        specials = kinds.enumerated()
            .filter { [.control, .userDefined, .unknown].contains($0.element) && !tokens[$0.offset].isEmpty }
            .map { (id: $0.offset, bytes: Array(tokens[$0.offset].utf8)) }
            .sorted { $0.bytes.count != $1.bytes.count ? $0.bytes.count > $1.bytes.count : $0.id < $1.id }
    }

    public func id(of token: String) -> Int? { ids[token] }

    // MARK: Encoding

    /// Token ids of `text`. With `parseSpecial`, control tokens written in the text (e.g. `<|im_start|>`) become
    /// those tokens; user-defined tokens always do (as in llama.cpp).
    public func encode(_ text: String, parseSpecial: Bool = true, addBOS: Bool? = nil) -> [Int] {
        var out: [Int] = []
        if addBOS ?? self.addBOS, let b = bosID { out.append(b) }
        for fragment in partition(Array(text.utf8), parseSpecial: parseSpecial) {
            switch fragment {
            case .special(let id): out.append(id)
            case .text(let bytes): encodePlain(bytes, into: &out)
            }
        }
        return out
    }

    enum Fragment { case special(Int), text([UInt8]) }

    /// llama.cpp's tokenizer_st_partition: split raw text at every occurrence of each special token, longest
    /// tokens first.
    func partition(_ bytes: [UInt8], parseSpecial: Bool) -> [Fragment] {
        var frags: [Fragment] = [.text(bytes)]
        for sp in specials {
            if !parseSpecial && kinds[sp.id] != .userDefined { continue }
            var next: [Fragment] = []
            for f in frags {
                guard case .text(let t) = f, t.count >= sp.bytes.count else { next.append(f); continue }
                var start = 0, i = 0
                while i + sp.bytes.count <= t.count {
                    if t[i] == sp.bytes[0] && t[i..<i + sp.bytes.count].elementsEqual(sp.bytes) {
                        if i > start { next.append(.text(Array(t[start..<i]))) }
                        next.append(.special(sp.id))
                        i += sp.bytes.count
                        start = i
                    } else {
                        i += 1
                    }
                }
                if start < t.count { next.append(.text(Array(t[start...]))) }
            }
            frags = next
        }
        return frags
    }

    func encodePlain(_ bytes: [UInt8], into out: inout [Int]) {
        // Invalid UTF-8 would be replaced by U+FFFD here, as llama.cpp does when it decodes code points.
        let scalars = Array(String(decoding: bytes, as: UTF8.self).unicodeScalars)
        for word in preTokenizer.split(scalars) {
            var utf8: [UInt8] = []
            for s in word { utf8 += Array(String(s).utf8) }
            bpe(utf8, into: &out)
        }
    }

    /// Merges one word's byte symbols, lowest rank first (leftmost on ties), until no known pair remains.
    func bpe(_ word: [UInt8], into out: inout [Int]) {
        var syms = word.map { byteTokens[Int($0)] }
        if syms.contains(-1) {
            // A byte with no token: the vocabulary is not byte-level complete; emit what exists.
            out += syms.filter { $0 >= 0 }.map(Int.init)
            return
        }
        while syms.count > 1 {
            var best = Int32.max, at = -1, merged: Int32 = 0
            for i in 0..<(syms.count - 1) {
                if let m = merges[UInt64(UInt32(bitPattern: syms[i])) << 32 | UInt64(UInt32(bitPattern: syms[i + 1]))],
                   m.rank < best {
                    best = m.rank; at = i; merged = m.merged
                }
            }
            if at < 0 { break }
            syms[at] = merged
            syms.remove(at: at + 1)
        }
        out += syms.map(Int.init)
    }

    // MARK: Decoding

    /// The bytes a token stands for. Control tokens render as nothing unless `special` (as llama.cpp).
    public func bytes(of id: Int, special: Bool = false) -> [UInt8] {
        guard id >= 0 && id < tokens.count else { return [] }
        switch kinds[id] {
        case .normal, .undefined:
            return ByteLevel.decode(tokens[id]) ?? Array(tokens[id].utf8)
        case .control, .unknown:
            return special ? Array(tokens[id].utf8) : []
        case .userDefined:
            return Array(tokens[id].utf8)
        case .byte:
            return ByteLevel.decode(tokens[id]) ?? []
        case .unused:
            return []
        }
    }

    /// Text of a whole sequence; invalid UTF-8 becomes U+FFFD.
    public func decode(_ ids: [Int], special: Bool = false) -> String {
        String(decoding: ids.flatMap { bytes(of: $0, special: special) }, as: UTF8.self)
    }

    public func isEndOfGeneration(_ id: Int) -> Bool {
        id == eosID || (kinds.indices.contains(id) && kinds[id] == .control && (tokens[id] == "<|im_end|>" || tokens[id] == "<|eot_id|>" || tokens[id] == "<|endoftext|>"))
    }
}

/// Turns a stream of tokens into text without splitting a UTF-8 sequence across pieces: bytes of an incomplete
/// character wait for the next token.
public struct StreamingDecoder: Sendable {
    private var pending: [UInt8] = []
    public init() {}

    /// Text that is complete after adding `bytes`.
    public mutating func push(_ bytes: [UInt8]) -> String {
        pending += bytes
        var end = pending.count
        // Find where a trailing, not yet complete sequence starts (at most 3 bytes back).
        var back = 0
        while back < min(4, pending.count) {
            let b = pending[pending.count - 1 - back]
            if b & 0xC0 != 0x80 {  // a lead byte (or ASCII)
                let need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
                if need > back + 1 { end = pending.count - 1 - back }
                break
            }
            back += 1
        }
        let text = String(decoding: pending[..<end], as: UTF8.self)
        pending.removeFirst(end)
        return text
    }

    /// Whatever is left (invalid bytes become U+FFFD).
    public mutating func flush() -> String {
        defer { pending = [] }
        return String(decoding: pending, as: UTF8.self)
    }
}

extension String {
    fileprivate func firstIndex(of c: Character, after start: Index) -> Index? {
        // Token texts may begin with a space-like byte-level symbol, never with a plain space, but skip index 0
        // so that a merge of a literal " " token still splits at the separator.
        guard start < endIndex else { return nil }
        return self[index(after: start)...].firstIndex(of: c)
    }
}
