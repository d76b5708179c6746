/// Holds back streamed text that might be the start of a stop string, and finds the stop.
///
/// Contract (held by a randomised test against a plain search): after each `push`, if any stop string occurs in
/// the text pushed so far, the generation stops there and the released text is everything before the earliest
/// such occurrence; otherwise the released text is everything except the longest suffix that could still grow
/// into a stop string. The concatenation of all releases (plus `flush` when no stop came) is the text shown.
/// Matching is on Unicode scalars, so how the text was cut into pieces never changes the result.
public struct StopStringMatcher: Sendable {
    public let stops: [String]
    private let patterns: [[Unicode.Scalar]]
    private var scalars: [Unicode.Scalar] = []
    private var released = 0  // scalars already handed out
    private var stopped = false

    public init(_ stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }
        patterns = self.stops.map { Array($0.unicodeScalars) }
    }

    /// Adds decoded text (possibly empty); returns what can be shown now and whether a stop string appeared (the
    /// text is then cut just before it). After a stop, further pushes release nothing.
    public mutating func push(_ piece: String) -> (release: String, stopped: Bool) {
        guard !stopped else { return ("", true) }
        let before = scalars.count
        scalars += piece.unicodeScalars
        // Earlier text held no stop string, so a new match ends in the new scalars: it starts at or after
        // before - pattern.count + 1. Of all matches, the earliest start wins.
        var cut: Int?
        for p in patterns where scalars.count >= p.count {
            var start = max(0, before - p.count + 1)
            while start + p.count <= scalars.count, start < (cut ?? Int.max) {
                if scalars[start..<start + p.count].elementsEqual(p) { cut = start; break }
                start += 1
            }
        }
        if let cut {
            // A match never starts inside released text: a released scalar was never part of a stop's prefix.
            let out = text(released, cut)
            scalars.removeSubrange(cut...)
            released = cut
            stopped = true
            return (out, true)
        }
        // Hold back the longest suffix that is a proper prefix of a stop string.
        var hold = 0
        for p in patterns {
            var n = min(p.count - 1, scalars.count - released)
            while n > hold {
                if scalars[(scalars.count - n)...].elementsEqual(p[..<n]) { hold = n; break }
                n -= 1
            }
        }
        let end = scalars.count - hold
        let out = text(released, end)
        released = max(released, end)
        return (out, false)
    }

    /// Everything not yet released (at the end of generation).
    public mutating func flush() -> String {
        defer { released = scalars.count }
        return text(released, scalars.count)
    }

    /// The text so far (cut before a stop string once one appeared).
    public var fullText: String { text(0, scalars.count) }

    private func text(_ from: Int, _ to: Int) -> String {
        guard from < to else { return "" }
        var s = String.UnicodeScalarView()
        s.append(contentsOf: scalars[from..<to])
        return String(s)
    }
}
