import CRadialKernels
import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel

/// The quantised decode kernels and the attention kernel against plain fp32 arithmetic on the same values.
@Suite(.serialized) struct KernelTests {
    func matrix(_ type: GGMLType, rows: Int, cols: Int, seed: UInt64) throws -> (QuantizedMatrix, [Float]) {
        var rng = SplitMix64(seed: seed)
        var w = GGUFWriter()
        w.addTensor("a", dimensions: [cols, rows / 2], values: (0..<(rows / 2 * cols)).map { _ in Float(rng.nextDouble() * 2 - 1) }, as: type)
        w.addTensor("b", dimensions: [cols, rows - rows / 2], values: (0..<((rows - rows / 2) * cols)).map { _ in Float(rng.nextDouble() - 0.3) }, as: type)
        let path = try TestSupport.tempDir() + "/m.gguf"
        try w.write(to: path)
        let f = try GGUFFile(path: path)
        let q = try #require(QuantizedMatrix(tensors: [try f.requireTensor("a"), try f.requireTensor("b")], file: f))
        return (q, try f.floats("a") + f.floats("b"))
    }

    func reference(_ w: [Float], rows: Int, cols: Int, _ x: [Float], inputs: Int) -> [Float] {
        var y = [Float](repeating: 0, count: inputs * rows)
        for i in 0..<inputs { for r in 0..<rows {
            var s: Double = 0
            for c in 0..<cols { s += Double(w[r * cols + c]) * Double(x[i * cols + c]) }
            y[i * rows + r] = Float(s)
        } }
        return y
    }

    /// The int8 quantiser: the SIMD version gives the portable one's bytes, scales and sums bit for bit (every
    /// q8 path, on any CPU, must see the same inputs), over zero blocks, half-integer values and tiny values.
    @Test func q8QuantiserMatchesThePortableOne() {
        let cols = 8960, n = 3, nb = cols / 32
        var rng = SplitMix64(seed: 23)
        for round in 0..<20 {
            var x = (0..<(n * cols)).map { i -> Float in
                switch i % 7 {
                case 0: return 0
                case 1: return Float(Int(rng.nextDouble() * 255) - 127) * 0.5
                default: return Float(rng.nextDouble() - 0.5) * (round % 5 == 4 ? 1e-30 : 3)
                }
            }
            for i in 0..<64 { x[i] = 0 }  // two all-zero blocks: scale 0
            func quantize(generic: Bool) -> ([Int8], [Float], [Float]) {
                radial_kernels_force_generic(generic ? 1 : 0)
                defer { radial_kernels_force_generic(0) }
                var q = [Int8](repeating: 0, count: n * cols), d = [Float](repeating: 0, count: n * nb), s = d
                radial_quantize_q8(x, Int32(cols), Int32(n), Int32(nb), &q, Int32(cols), &d, &s)
                return (q, d, s)
            }
            let simd = quantize(generic: false), portable = quantize(generic: true)
            #expect(simd.0 == portable.0, "round \(round): int8 values")
            #expect(simd.1.map(\.bitPattern) == portable.1.map(\.bitPattern), "round \(round): scales")
            #expect(simd.2.map(\.bitPattern) == portable.2.map(\.bitPattern), "round \(round): sums")
        }
    }

    /// Prefill tiles: the repacked form dequantises to the file's values bit for bit (SIMD and portable).
    @Test(arguments: [GGMLType.q4_0, .q4_1, .q8_0])
    func repackedDequantizesToTheFileValues(_ type: GGMLType) throws {
        let rows = 70, cols = 96
        let (q, w) = try matrix(type, rows: rows, cols: cols, seed: 17)
        for generic in [false, true] {
            radial_kernels_force_generic(generic ? 1 : 0)
            defer { radial_kernels_force_generic(0) }
            var out = [Float](repeating: .nan, count: 30 * (cols + 3))
            out.withUnsafeMutableBufferPointer { q.dequantize(rowStart: 33, rowCount: 30, into: $0.baseAddress!, ld: cols + 3) }
            for r in 0..<30 {
                #expect(Array(out[(r * (cols + 3))..<(r * (cols + 3) + cols)]) == Array(w[((33 + r) * cols)..<((34 + r) * cols)]),
                        "\(type) row \(33 + r) generic=\(generic)")
            }
        }
    }

    @Test(arguments: [GGMLType.q4_0, .q4_1, .q8_0])
    func quantizedMatmulMatchesFP32(_ type: GGMLType) throws {
        let rows = 70, cols = 96
        let (q, w) = try matrix(type, rows: rows, cols: cols, seed: 11)
        var rng = SplitMix64(seed: 5)
        for generic in [false, true] {
            radial_kernels_force_generic(generic ? 1 : 0)
            defer { radial_kernels_force_generic(0) }
            for n in [1, 2, 3, 5, 8, 11] {
                let x = (0..<(n * cols)).map { _ in Float(rng.nextDouble() * 2 - 1) }
                let want = reference(w, rows: rows, cols: cols, x, inputs: n)
                var y = [Float](repeating: 1, count: n * rows)
                // The generic switch is per thread: only the calling thread's work is forced.
                for threads in generic ? [1] : [1, 2] {
                    x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                        q.multiply(xp.baseAddress!, inputs: n, into: yp.baseAddress!, threads: threads, activations: .f32)
                    } }
                    #expect(TestSupport.maxAbsDiff(y, want) < 1e-4, "\(type) n=\(n) generic=\(generic) threads=\(threads)")
                }
                // accumulate into a row slice
                var z = [Float](repeating: 0.5, count: n * 20)
                x.withUnsafeBufferPointer { xp in z.withUnsafeMutableBufferPointer { zp in
                    q.multiply(xp.baseAddress!, inputs: n, into: zp.baseAddress!, accumulate: true, rowStart: 30, rowCount: 20, activations: .f32)
                } }
                for i in 0..<n { for r in 0..<20 {
                    #expect(abs(z[i * 20 + r] - (0.5 + want[i * rows + 30 + r])) < 1e-4)
                } }
            }
        }
    }

    @Test func unsupportedTypesHaveNoQuantizedForm() throws {
        var w = GGUFWriter()
        w.addTensor("f", dimensions: [32, 2], values: Array(repeating: 1, count: 64), as: .f16)
        let path = try TestSupport.tempDir() + "/f.gguf"
        try w.write(to: path)
        let f = try GGUFFile(path: path)
        #expect(QuantizedMatrix(tensors: [try f.requireTensor("f")], file: f) == nil)
    }

    /// Group sizes 1-5 (the SIMD kernel shares each K/V load among up to four heads, in chunks), head sizes with a
    /// half chunk left over, position counts off the four-position tile, with and without masked positions.
    @Test(arguments: [(3, 64, 37), (2, 16, 9), (5, 24, 13), (1, 8, 4), (4, 40, 3)])
    func attentionMatchesPlainSoftmax(_ g: Int, _ hd: Int, _ npos: Int) throws {
        let ks = 200
        var rng = SplitMix64(seed: 9)
        let q = (0..<(g * hd)).map { _ in Float(rng.nextDouble() - 0.5) }
        let k = (0..<(npos * ks)).map { _ in Float(rng.nextDouble() - 0.5) }
        let v = (0..<(npos * ks)).map { _ in Float(rng.nextDouble() - 0.5) }
        var present = [UInt8](repeating: 1, count: npos)
        present[min(2, npos - 1)] = 0; present[npos / 2] = 0
        for generic in [false, true] {
            radial_kernels_force_generic(generic ? 1 : 0)
            defer { radial_kernels_force_generic(0) }
            for mask in [false, true] {
                var out = [Float](repeating: .nan, count: g * hd)
                var scores = [Float](repeating: 0, count: g * npos)
                radial_attend(q, Int32(g), Int32(hd), k, v, Int32(ks), Int32(npos), mask ? present : nil, 0.125, &scores, &out)
                for h in 0..<g {
                    var s = (0..<npos).map { p -> Double in
                        (0..<hd).reduce(0) { $0 + Double(q[h * hd + $1]) * Double(k[p * ks + $1]) } * 0.125
                    }
                    if mask { s = s.enumerated().map { present[$0.offset] == 0 ? -.infinity : $0.element } }
                    let mx = s.max()!
                    let e = s.map { exp($0 - mx) }, z = e.reduce(0, +)
                    for j in 0..<hd {
                        let want = (0..<npos).reduce(0.0) { $0 + e[$1] / z * Double(v[$1 * ks + j]) }
                        #expect(abs(Double(out[h * hd + j]) - want) < 1e-5, "generic=\(generic) mask=\(mask)")
                    }
                }
            }
        }
    }

    /// int8 activations: the quantiser's blocks (q in ±127, |x - q·d| <= d/2, s = d·Σq).
    @Test func quantizerBlocks() {
        var rng = SplitMix64(seed: 21)
        let n = 3, nb = 4, cols = nb * 32
        var x = (0..<(n * cols)).map { _ in Float(rng.nextDouble() * 6 - 3) }
        for j in 32..<64 { x[j] = 0 }  // an all-zero block: d = 0, q = 0
        var q = [Int8](repeating: 0, count: n * cols), d = [Float](repeating: -1, count: n * nb), sums = d
        radial_quantize_q8(x, Int32(cols), Int32(n), Int32(nb), &q, Int32(cols), &d, &sums)
        for i in 0..<n { for b in 0..<nb {
            let blk = i * nb + b, dd = d[blk]
            var total = 0
            for j in 0..<32 {
                let e = i * cols + b * 32 + j
                #expect(abs(Int(q[e])) <= 127)
                #expect(abs(x[e] - Float(q[e]) * dd) <= dd / 2 * 1.0001 + 1e-7)
                total += Int(q[e])
            }
            #expect(sums[blk] == dd * Float(total))
            if i == 0 && b == 1 { #expect(dd == 0 && total == 0) } else { #expect(q[(i * cols + b * 32)..<(i * cols + b * 32 + 32)].contains { abs($0) == 127 }) }
        } }
    }

    /// q8 arithmetic: exactly the integer product of the quantised activations and the weights (SIMD and
    /// portable), close to the fp32 product, and the same bits for a row alone or in any batch.
    @Test(arguments: [GGMLType.q4_0, .q4_1, .q8_0])
    func int8ActivationsMatchTheirReferenceAndAreBatchInvariant(_ type: GGMLType) throws {
        let rows = 70, cols = 96, nb = cols / 32
        let (q, w) = try matrix(type, rows: rows, cols: cols, seed: 17)
        var rng = SplitMix64(seed: 8)
        let n = 11
        let x = (0..<(n * cols)).map { _ in Float(rng.nextDouble() * 2 - 1) }
        // the activations the kernels see
        var xq = [Int8](repeating: 0, count: n * cols), xd = [Float](repeating: 0, count: n * nb), xs = xd
        radial_quantize_q8(x, Int32(cols), Int32(n), Int32(nb), &xq, Int32(cols), &xd, &xs)
        let xDequant = (0..<(n * cols)).map { Float(xq[$0]) * xd[($0 / cols) * nb + ($0 % cols) / 32] }
        let want = reference(w, rows: rows, cols: cols, xDequant, inputs: n)
        let fp32 = reference(w, rows: rows, cols: cols, x, inputs: n)
        func run(_ inputs: Int, offset: Int, threads: Int) -> [Float] {
            var y = [Float](repeating: 0, count: inputs * rows)
            x.withUnsafeBufferPointer { xp in y.withUnsafeMutableBufferPointer { yp in
                q.multiply(xp.baseAddress! + offset * cols, inputs: inputs, into: yp.baseAddress!, threads: threads, activations: .q8)
            } }
            return y
        }
        for generic in [false, true] {
            radial_kernels_force_generic(generic ? 1 : 0)
            defer { radial_kernels_force_generic(0) }
            let all = run(n, offset: 0, threads: generic ? 1 : 2)
            #expect(TestSupport.maxAbsDiff(all, want) < 1e-4, "\(type) generic=\(generic)")
            #expect(TestSupport.maxAbsDiff(all, fp32) < 0.05, "\(type): int8 activations far from fp32")
            #expect(TestSupport.maxAbsDiff(all, fp32) > 0, "\(type): q8 must not be the fp32 path")
            // batch invariance: each row alone, and a batch of 3 starting at row 5, give the same bits
            for i in 0..<n { #expect(run(1, offset: i, threads: 1) == Array(all[(i * rows)..<((i + 1) * rows)])) }
            #expect(run(3, offset: 5, threads: 2) == Array(all[(5 * rows)..<(8 * rows)]))
        }
    }
}
