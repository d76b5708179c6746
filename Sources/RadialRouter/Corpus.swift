import Foundation
import RadialModel

/// Real text cut into fixed-length token windows. Each window is scored as its own sequence from position 0,
/// so windows are independent and a run over N tokens costs the same whatever the file's size.
public struct TokenWindows: Sendable {
    public let windows: [[Int]]
    public var tokenCount: Int { windows.reduce(0) { $0 + $1.count } }

    public init(windows: [[Int]]) { self.windows = windows }

    /// Reads `path`, tokenises it as plain text (special-token strings are not special here), and keeps
    /// `maxTokens` tokens after the first `skipTokens` in windows of `windowLength` (a shorter last window is
    /// dropped unless it is the only one). Skipping lets one file give a calibration part and an evaluation part
    /// that do not overlap.
    public init(path: String, tokenizer: Tokenizer, windowLength: Int, maxTokens: Int, skipTokens: Int = 0) throws {
        guard windowLength >= 2 else { throw RouterError.badPolicy("the window length must be at least 2 tokens") }
        guard let data = FileManager.default.contents(atPath: path) else { throw RouterError.io(path, "cannot read the text file") }
        let text = String(decoding: data, as: UTF8.self)
        // Tokenise a prefix only: roughly 3 bytes a token in English, with room to spare.
        let prefix = String(text.prefix((skipTokens + maxTokens) * 8))
        let ids = Array(tokenizer.encode(prefix, parseSpecial: false, addBOS: false).dropFirst(skipTokens).prefix(maxTokens))
        guard ids.count >= 2 else { throw RouterError.io(path, "the text holds fewer than 2 tokens after the first \(skipTokens)") }
        var windows: [[Int]] = []
        var start = 0
        while start + windowLength <= ids.count {
            windows.append(Array(ids[start..<(start + windowLength)]))
            start += windowLength
        }
        if windows.isEmpty { windows = [ids] }
        self.init(windows: windows)
    }
}
