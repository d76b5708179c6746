/// What a layer keeps for a position the token did not run it for.
public enum SkippedLayerKV: String, Sendable, Codable, CaseIterable {
    /// K/V projected from the hidden state entering the layer, so later tokens attend as usual.
    /// With no layer skipped this is exactly the dense model.
    case fill
    /// No entry: later tokens do not attend to that position at that layer.
    case mask
}

/// One session's keys and values for the layers of one shard. Grows by doubling up to the context limit, so a
/// short session holds little memory. Each position also carries a presence bit per layer: attention reads only
/// positions that were written and not masked.
///
/// Stored head-major: per layer, each K/V head's rows are contiguous, so the attention over one head (one
/// kernel call) reads one sequential stream instead of a 1/heads slice of every row: at long contexts batched
/// decode is bound by those reads, and the prefetcher follows a sequential stream.
///
/// Not thread-safe: a session is advanced by one forward call at a time (the owner serialises).
public final class KVCache: @unchecked Sendable {
    public let layers: LayerRange
    public let kvDim: Int
    /// K/V heads; each holds `kvDim / heads` dimensions.
    public let heads: Int
    public let headDim: Int
    public let maxPositions: Int
    /// Positions [0, capacity) are allocated.
    public private(set) var capacity: Int
    /// One past the highest position written.
    public private(set) var length = 0
    private var keys: [UnsafeMutablePointer<Float>]     // per local layer: (heads, capacity, headDim)
    private var values: [UnsafeMutablePointer<Float>]
    private var present: [UnsafeMutablePointer<UInt8>]  // per local layer: (capacity), 1 = attendable
    private var hasHoles: [Bool]                        // per local layer: some position below its length is absent
    private var layerLength: [Int]                      // per local layer: one past the highest position written

    public init(layers: LayerRange, kvDim: Int, heads: Int = 1, maxPositions: Int, initialCapacity: Int = 64) {
        precondition(heads > 0 && kvDim % heads == 0)
        self.layers = layers
        self.kvDim = kvDim
        self.heads = heads
        headDim = kvDim / heads
        self.maxPositions = maxPositions
        let cap = min(max(initialCapacity, 1), maxPositions)
        capacity = cap
        keys = (0..<layers.count).map { _ in .allocate(capacity: cap * kvDim) }
        values = (0..<layers.count).map { _ in .allocate(capacity: cap * kvDim) }
        present = (0..<layers.count).map { _ in
            let p = UnsafeMutablePointer<UInt8>.allocate(capacity: cap)
            p.initialize(repeating: 0, count: cap)
            return p
        }
        hasHoles = Array(repeating: false, count: layers.count)
        layerLength = Array(repeating: 0, count: layers.count)
    }

    deinit {
        for p in keys { p.deallocate() }
        for p in values { p.deallocate() }
        for p in present { p.deallocate() }
    }

    /// Bytes held now (keys and values).
    public var bytes: Int { 2 * layers.count * capacity * kvDim * MemoryLayout<Float>.size }

    /// Bytes it would hold with room for `positions` positions.
    public static func bytes(layers: Int, kvDim: Int, positions: Int) -> Int {
        2 * layers * positions * kvDim * MemoryLayout<Float>.size
    }

    /// The capacity `reserve(position:)` would grow to (doubling, capped at the context limit).
    func capacity(reserving position: Int) -> Int {
        guard position >= capacity else { return capacity }
        var newCap = capacity
        while newCap <= position { newCap *= 2 }
        return min(newCap, maxPositions)
    }

    /// Bytes held after `reserve(position:)`: what admitting a position would cost, checked before running it.
    public func bytes(reserving position: Int) -> Int {
        2 * layers.count * capacity(reserving: position) * kvDim * MemoryLayout<Float>.size
    }

    /// Makes room for `position`, doubling capacity.
    public func reserve(position: Int) throws {
        guard position >= 0 && position < maxPositions else {
            throw ModelError.contextOverflow(position: position, limit: maxPositions)
        }
        guard position >= capacity else { return }
        let newCap = capacity(reserving: position)
        for l in 0..<layers.count {
            for store in [0, 1] {
                let old = store == 0 ? keys[l] : values[l]
                let p = UnsafeMutablePointer<Float>.allocate(capacity: newCap * kvDim)
                for h in 0..<heads {  // each head's rows move to the start of its larger region
                    (p + h * newCap * headDim).update(from: old + h * capacity * headDim, count: capacity * headDim)
                }
                old.deallocate()
                if store == 0 { keys[l] = p } else { values[l] = p }
            }
            let bits = UnsafeMutablePointer<UInt8>.allocate(capacity: newCap)
            bits.initialize(repeating: 0, count: newCap)
            bits.update(from: present[l], count: capacity)
            present[l].deallocate()
            present[l] = bits
        }
        capacity = newCap
    }

    @inline(__always) func local(_ layer: Int) -> Int { layer - layers.lowerBound }

    /// Stores position `pos`'s key and value at `layer` (kvDim floats each, heads one after another; after
    /// `reserve`) and marks the position present.
    func write(_ layer: Int, _ pos: Int, key: UnsafePointer<Float>, value: UnsafePointer<Float>) {
        let l = local(layer), hd = headDim
        for h in 0..<heads {
            (keys[l] + (h * capacity + pos) * hd).update(from: key + h * hd, count: hd)
            (values[l] + (h * capacity + pos) * hd).update(from: value + h * hd, count: hd)
        }
        markWritten(layer, pos)
    }

    /// Head `head`'s key rows at `layer`: `headDim` floats per position, positions contiguous.
    @inline(__always) func keyBase(_ layer: Int, head: Int) -> UnsafePointer<Float> {
        UnsafePointer(keys[local(layer)] + head * capacity * headDim)
    }
    @inline(__always) func valueBase(_ layer: Int, head: Int) -> UnsafePointer<Float> {
        UnsafePointer(values[local(layer)] + head * capacity * headDim)
    }

    /// Records that `pos` at `layer` now holds K/V.
    private func markWritten(_ layer: Int, _ pos: Int) {
        let l = local(layer)
        present[l][pos] = 1
        if pos > layerLength[l] { hasHoles[l] = true }
        layerLength[l] = max(layerLength[l], pos + 1)
        length = max(length, pos + 1)
    }

    /// Records that `pos` at `layer` has no entry (the `mask` policy for a skipped layer).
    func markMasked(_ layer: Int, _ pos: Int) {
        let l = local(layer)
        present[l][pos] = 0
        hasHoles[l] = true
        layerLength[l] = max(layerLength[l], pos + 1)
        length = max(length, pos + 1)
    }

    /// Whether attention at `layer` must consult presence bits.
    @inline(__always) func needsPresenceCheck(_ layer: Int) -> Bool { hasHoles[local(layer)] }
    @inline(__always) func isPresent(_ layer: Int, _ pos: Int) -> Bool { present[local(layer)][pos] != 0 }
    @inline(__always) func presence(_ layer: Int) -> UnsafePointer<UInt8> { UnsafePointer(present[local(layer)]) }

    /// Forgets positions >= `position` (so a session can be rewound and replayed).
    public func truncate(to position: Int) {
        guard position < length else { return }
        for l in 0..<layers.count {
            for p in max(position, 0)..<min(length, capacity) { present[l][p] = 0 }
            layerLength[l] = min(layerLength[l], max(position, 0))
        }
        length = max(position, 0)
    }
}
