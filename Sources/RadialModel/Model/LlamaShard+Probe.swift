import CRadialKernels

/// What-if passes: run tokens down another path through the layers without touching any session's K/V.
extension LlamaShard {
    /// Runs each row from layer `from` to the end of this shard, in place, writing no K/V: at every layer a row
    /// attends to its cache's positions before its own (which must already be there) and to its own fresh K/V,
    /// exactly as if it were that session's newest token. So many rows can ask "what if token t had skipped
    /// layer l" at once, for every t of a window whose cache holds the real path. Each row runs the layers of
    /// its token's `layers` (nil: all); a layer it leaves out changes nothing.
    /// A row that leaves out every layer of a run in `maps` leaves the run through its map.
    public func probe(_ hidden: UnsafeMutablePointer<Float>, tokens: [ShardToken], from: Int, maps: [RunMap] = []) throws {
        guard from >= range.lowerBound, from <= range.upperBound else {
            throw ModelError.badBatch("probe from layer \(from) is outside this shard (\(range))")
        }
        for t in tokens {
            guard t.cache.layers == range, t.cache.kvDim == config.kvDim, t.position < t.cache.capacity else {
                throw ModelError.badBatch("a probe row's K/V cache does not hold its position \(t.position) for layers \(range)")
            }
        }
        let n = tokens.count, dim = config.dim
        guard n > 0 else { return }
        var scratch = Scratch(config: config, rows: n)
        let gathered = UnsafeMutablePointer<Float>.allocate(capacity: n * dim)
        defer { gathered.deallocate() }
        for l in from..<range.upperBound {
            let run = (0..<n).filter { tokens[$0].layers?.contains(l) ?? true }
            if let map = RunMap.ending(at: l, in: maps), map.layers.lowerBound >= from {
                let skipped = (0..<n).filter { !(tokens[$0].layers?.contains(l) ?? true) }
                RunMap.bridge(after: l, maps: [map], x: hidden, rows: skipped, ran: tokens.map { $0.layers ?? .all(range) }, dim: dim,
                              activations: activations)
            }
            if run.isEmpty { continue }
            if run.count == n {
                runBlock(l, x: hidden, tokens: tokens, scratch: &scratch, readOnly: true)
                continue
            }
            for (j, i) in run.enumerated() { (gathered + j * dim).update(from: hidden + i * dim, count: dim) }
            runBlock(l, x: gathered, tokens: run.map { tokens[$0] }, scratch: &scratch, readOnly: true)
            for (j, i) in run.enumerated() { (hidden + i * dim).update(from: gathered + j * dim, count: dim) }
        }
    }

    /// One (row, K/V head) pair of a probe's attention: the cache's positions [0, position) with their presence,
    /// then the row's own key and value, copied into one contiguous run for the kernel.
    func attendProbe(_ l: Int, q: UnsafePointer<Float>, head h: Int, token t: ShardToken, ownKey: UnsafePointer<Float>,
                     ownValue: UnsafePointer<Float>, scale: Float, out: UnsafeMutablePointer<Float>) {
        let hd = config.headDim, g = config.groupSize, before = t.position, npos = before + 1
        let holes = t.cache.needsPresenceCheck(l)
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * npos * hd + g * npos) { buf in
            let keys = buf.baseAddress!, values = keys + npos * hd, scores = values + npos * hd
            keys.update(from: t.cache.keyBase(l, head: h), count: before * hd)
            values.update(from: t.cache.valueBase(l, head: h), count: before * hd)
            (keys + before * hd).update(from: ownKey, count: hd)
            (values + before * hd).update(from: ownValue, count: hd)
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: holes ? npos : 0) { present in
                if holes {
                    present.baseAddress!.update(from: t.cache.presence(l), count: before)
                    present[before] = 1
                }
                radial_attend(q, Int32(g), Int32(hd), keys, values, Int32(hd), Int32(npos),
                              holes ? UnsafePointer(present.baseAddress!) : nil, scale, scores, out)
            }
        }
    }
}
