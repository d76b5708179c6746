/// A set of absolute layer indices: which layers one token runs. Small and value-typed, so a batch can carry
/// one per token.
public struct LayerSet: Sendable, Hashable, Codable, CustomStringConvertible {
    private var words: [UInt64]

    public init() { words = [] }

    public init<S: Sequence<Int>>(_ layers: S) {
        words = []
        for l in layers { insert(l) }
    }

    public static func all(_ range: LayerRange) -> LayerSet { LayerSet(range.indices) }

    public mutating func insert(_ l: Int) {
        precondition(l >= 0, "negative layer index")
        let w = l / 64
        if w >= words.count { words += Array(repeating: 0, count: w - words.count + 1) }
        words[w] |= 1 << UInt64(l % 64)
    }

    public mutating func remove(_ l: Int) {
        let w = l / 64
        guard w < words.count else { return }
        words[w] &= ~(1 << UInt64(l % 64))
    }

    @inline(__always)
    public func contains(_ l: Int) -> Bool {
        let w = l / 64
        return l >= 0 && w < words.count && words[w] & (1 << UInt64(l % 64)) != 0
    }

    public var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }
    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }

    /// Members in ascending order.
    public var sorted: [Int] {
        var out: [Int] = []
        for (w, word) in words.enumerated() where word != 0 {
            for b in 0..<64 where word & (1 << UInt64(b)) != 0 { out.append(w * 64 + b) }
        }
        return out
    }

    /// Adds every member of `other`.
    public mutating func formUnion(_ other: LayerSet) {
        if other.words.count > words.count { words += Array(repeating: 0, count: other.words.count - words.count) }
        for (i, w) in other.words.enumerated() { words[i] |= w }
    }

    public func intersection(_ r: LayerRange) -> LayerSet { LayerSet(r.indices.filter(contains)) }

    public static func == (a: LayerSet, b: LayerSet) -> Bool {
        let n = max(a.words.count, b.words.count)
        for i in 0..<n where (i < a.words.count ? a.words[i] : 0) != (i < b.words.count ? b.words[i] : 0) { return false }
        return true
    }

    public func hash(into h: inout Hasher) {
        var w = words
        while w.last == 0 { w.removeLast() }
        h.combine(w)
    }

    public var description: String { "[" + sorted.map(String.init).joined(separator: ",") + "]" }
}
