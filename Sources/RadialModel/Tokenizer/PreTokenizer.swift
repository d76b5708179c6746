/// Splits text into the words BPE merges within, reproducing llama.cpp's pre-tokenizers code point for code
/// point (its hand-written GPT-2 splitter, not a regex engine, so lookahead and piece boundaries behave alike).
public enum PreTokenizer: String, Sendable, CaseIterable {
    /// GPT-2: `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// SmolLM / StarCoder: every digit on its own first (`\p{N}`), then GPT-2 within each piece.
    case digitsThenGPT2
    /// Qwen2: `(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
    /// ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+` (Llama 3's pattern with single digits).
    case qwen2

    /// Maps GGUF's `tokenizer.ggml.pre` names; nil for one this engine does not implement.
    public init?(ggufName: String) {
        switch ggufName {
        case "gpt-2", "gpt2", "phi-2", "jina-es", "jina-de", "jina-v2-es", "jina-v2-de", "roberta-bpe": self = .gpt2
        case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b": self = .digitsThenGPT2
        case "qwen2": self = .qwen2
        default: return nil
        }
    }

    public static let supportedNames = ["gpt2", "gpt-2", "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b", "phi-2", "qwen2"]

    /// Words as code point arrays.
    func split(_ scalars: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        switch self {
        case .gpt2:
            return Self.gpt2(scalars[...])
        case .digitsThenGPT2:
            return Self.splitDigits(scalars).flatMap { Self.gpt2($0) }
        case .qwen2:
            return Self.qwen2(scalars[...])
        }
    }

    /// `\p{N}` as a split: each number code point is a piece; the text between stays a piece.
    static func splitDigits(_ s: [Unicode.Scalar]) -> [ArraySlice<Unicode.Scalar>] {
        var out: [ArraySlice<Unicode.Scalar>] = []
        var start = 0
        for i in s.indices where CharClass.of(s[i]).isNumber {
            if i > start { out.append(s[start..<i]) }
            out.append(s[i...i])
            start = i + 1
        }
        if start < s.count { out.append(s[start...]) }
        return out
    }

    /// llama.cpp's `unicode_regex_split_custom_gpt2` over one piece; positions outside the piece read as
    /// "no character", which is what the `(?!\S)` lookahead sees at a piece's end.
    static func gpt2(_ piece: ArraySlice<Unicode.Scalar>) -> [ArraySlice<Unicode.Scalar>] {
        var out: [ArraySlice<Unicode.Scalar>] = []
        let lo = piece.startIndex, hi = piece.endIndex
        var prevEnd = lo
        func emit(_ end: Int) {
            if end > prevEnd { out.append(piece[prevEnd..<end]) }
            prevEnd = end
        }
        func cls(_ i: Int) -> CharClass { i >= lo && i < hi ? CharClass.of(piece[i]) : .none }
        func ch(_ i: Int) -> UInt32? { i >= lo && i < hi ? piece[i].value : nil }

        var pos = lo
        while pos < hi {
            let c = piece[pos].value
            // 's 't 're 've 'm 'll 'd
            if c == 0x27, pos + 1 < hi {
                let n = piece[pos + 1].value
                if n == 0x73 || n == 0x74 || n == 0x6D || n == 0x64 { // s t m d
                    emit(pos + 2); pos += 2; continue
                }
                if pos + 2 < hi {
                    let nn = piece[pos + 2].value
                    if (n == 0x72 && nn == 0x65) || (n == 0x76 && nn == 0x65) || (n == 0x6C && nn == 0x6C) { // re ve ll
                        emit(pos + 3); pos += 3; continue
                    }
                }
            }
            let first = c == 0x20 ? cls(pos + 1) : cls(pos)
            // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
            if first.isLetter || first.isNumber || first.isOther {
                if c == 0x20 { pos += 1 }
                let same: (CharClass) -> Bool = first.isLetter ? { $0.isLetter } : first.isNumber ? { $0.isNumber } : { $0.isOther }
                while same(cls(pos)) { pos += 1 }
                emit(pos)
                continue
            }
            var spaces = 0
            while cls(pos + spaces).isWhitespace { spaces += 1 }
            // `\s+(?!\S)`: a run of whitespace followed by more text gives all but its last character
            if spaces > 1, ch(pos + spaces) != nil {
                pos += spaces - 1
                emit(pos)
                continue
            }
            // `\s+`
            if spaces > 0 {
                pos += spaces
                emit(pos)
                continue
            }
            pos += 1
            emit(pos)
        }
        return out
    }
}

extension PreTokenizer {
    /// The Qwen2 pattern over one piece, written like llama.cpp's splitter for Llama 3's pattern (whose only
    /// difference is `\p{N}{1,3}`); llama.cpp runs Qwen2's through std::regex with the same classes.
    static func qwen2(_ piece: ArraySlice<Unicode.Scalar>) -> [ArraySlice<Unicode.Scalar>] {
        var out: [ArraySlice<Unicode.Scalar>] = []
        let lo = piece.startIndex, hi = piece.endIndex
        var prevEnd = lo
        func emit(_ end: Int) {
            if end > prevEnd { out.append(piece[prevEnd..<end]) }
            prevEnd = end
        }
        func cls(_ i: Int) -> CharClass { i >= lo && i < hi ? CharClass.of(piece[i]) : .none }
        func ch(_ i: Int) -> UInt32? { i >= lo && i < hi ? piece[i].value : nil }
        func lower(_ v: UInt32) -> UInt32 { v >= 0x41 && v <= 0x5A ? v + 0x20 : v }
        func isNewline(_ v: UInt32?) -> Bool { v == 0x0D || v == 0x0A }

        var pos = lo
        while pos < hi {
            let c = piece[pos].value, here = cls(pos)
            // 's 't 're 've 'm 'll 'd, either case
            if c == 0x27, pos + 1 < hi {
                let n = lower(piece[pos + 1].value)
                if n == 0x73 || n == 0x74 || n == 0x6D || n == 0x64 { emit(pos + 2); pos += 2; continue }
                if pos + 2 < hi {
                    let nn = lower(piece[pos + 2].value)
                    if (n == 0x72 && nn == 0x65) || (n == 0x76 && nn == 0x65) || (n == 0x6C && nn == 0x6C) {
                        emit(pos + 3); pos += 3; continue
                    }
                }
            }
            // `[^\r\n\p{L}\p{N}]?\p{L}+`
            if !isNewline(c) && !here.isNumber && (here.isLetter || cls(pos + 1).isLetter) {
                pos += 1
                while cls(pos).isLetter { pos += 1 }
                emit(pos)
                continue
            }
            // `\p{N}`: one digit
            if here.isNumber { pos += 1; emit(pos); continue }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            let first = c == 0x20 ? cls(pos + 1) : here
            if first.isOther && here.exists {
                if c == 0x20 { pos += 1 }
                while cls(pos).isOther { pos += 1 }
                while isNewline(ch(pos)) { pos += 1 }
                emit(pos)
                continue
            }
            var spaces = 0, lastNewlineEnd: Int?
            while cls(pos + spaces).isWhitespace {
                if isNewline(ch(pos + spaces)) { lastNewlineEnd = pos + spaces + 1 }
                spaces += 1
            }
            // `\s*[\r\n]+`
            if let end = lastNewlineEnd { pos = end; emit(pos); continue }
            // `\s+(?!\S)`
            if spaces > 1, ch(pos + spaces) != nil { pos += spaces - 1; emit(pos); continue }
            // `\s+`
            if spaces > 0 { pos += spaces; emit(pos); continue }
            pos += 1
            emit(pos)
        }
        return out
    }
}

/// The Unicode classes the GPT-2 pattern distinguishes.
struct CharClass {
    let isLetter: Bool, isNumber: Bool, isWhitespace: Bool, exists: Bool
    /// `[^\s\p{L}\p{N}]`: any real code point that is not a letter, number or whitespace.
    var isOther: Bool { exists && !isLetter && !isNumber && !isWhitespace }
    static let none = CharClass(isLetter: false, isNumber: false, isWhitespace: false, exists: false)

    static func of(_ s: Unicode.Scalar) -> CharClass {
        if s.value < 128 {
            let v = s.value
            let letter = (v >= 0x41 && v <= 0x5A) || (v >= 0x61 && v <= 0x7A)
            let number = v >= 0x30 && v <= 0x39
            let space = v == 0x20 || (v >= 0x09 && v <= 0x0D)
            return CharClass(isLetter: letter, isNumber: number, isWhitespace: space, exists: true)
        }
        let p = s.properties
        let letter: Bool, number: Bool
        switch p.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter:
            letter = true; number = false
        case .decimalNumber, .letterNumber, .otherNumber:
            letter = false; number = true
        default:
            letter = false; number = false
        }
        return CharClass(isLetter: letter, isNumber: number, isWhitespace: p.isWhitespace, exists: true)
    }
}
