import CRadialKernels
import Foundation
import RadialTestSupport
import Testing
@testable import RadialModel

/// The in-place GGUF kernels (radial_gguf_*) and GGUFMatrix: dequantisation bit for bit against Dequantize,
/// products against Double references (generic and SIMD, fp32 and int8 inputs), results independent of batch
/// and row range, and matrices stacked from parts of different types.
@Suite(.serialized) struct GGUFMatrixTests {
    /// ggml type ids the kernels handle (Q5_0 6, Q5_1 7 and Q5_K 13 are not GGMLType cases here yet; they are
    /// tested through the C entry points with a reference dequantiser below).
    static let allTypes: [Int] = [0, 1, 30, 2, 3, 6, 7, 8, 12, 13, 14]

    static func geometry(_ t: Int) -> (bytes: Int, elems: Int) {
        switch t {
        case 0: (4, 1)
        case 1, 30: (2, 1)
        case 2: (18, 32)
        case 3: (20, 32)
        case 6: (22, 32)
        case 7: (24, 32)
        case 8: (34, 32)
        case 12: (144, 256)
        case 13: (176, 256)
        default: (210, 256)
        }
    }

    /// Random blocks: any byte pattern is a valid block once its fp16 scales are finite; those are set to
    /// small random halves (float types get random finite values).
    static func randomBlocks(_ t: Int, count: Int, _ rng: inout SplitMix64) -> [UInt8] {
        let (bb, _) = geometry(t)
        var out = (0..<(bb * count)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        func half(_ at: Int, _ scale: Double) {
            let h = Float16(Float((rng.nextDouble() * 2 - 1) * scale)).bitPattern
            out[at] = UInt8(h & 0xFF)
            out[at + 1] = UInt8(h >> 8)
        }
        for b in 0..<count {
            let p = b * bb
            switch t {
            case 0:
                let f = Float(rng.nextDouble() * 2 - 1).bitPattern
                for k in 0..<4 { out[p + k] = UInt8(truncatingIfNeeded: f >> (8 * k)) }
            case 1: half(p, 1)
            case 30:
                let f = Float(rng.nextDouble() * 2 - 1).bitPattern
                out[p] = UInt8(truncatingIfNeeded: f >> 16)
                out[p + 1] = UInt8(truncatingIfNeeded: f >> 24)
            case 2, 6, 8: half(p, 0.05)
            case 3, 7, 12, 13: half(p, 0.05); half(p + 2, 0.05)
            default: half(p + 208, 0.01)
            }
        }
        return out
    }

    /// The reference dequantisation: Dequantize.run where GGMLType has the type, else ggml's
    /// dequantize_row_q5_0 / q5_1 / q5_K transcribed here.
    static func reference(_ t: Int, _ bytes: [UInt8], count: Int) -> [Float] {
        var y = [Float](repeating: .nan, count: count)
        bytes.withUnsafeBytes { src in
            y.withUnsafeMutableBufferPointer { dst in
                if let type = GGMLType(rawValue: UInt32(t)) {
                    Dequantize.run(type: type, from: src, into: dst)
                    return
                }
                let s = src.baseAddress!
                func half(_ o: Int) -> Float { Float(Float16(bitPattern: s.loadUnaligned(fromByteOffset: o, as: UInt16.self))) }
                func byte(_ o: Int) -> Int { Int(s.load(fromByteOffset: o, as: UInt8.self)) }
                let (bb, be) = geometry(t)
                for b in 0..<(count / be) {
                    let p = b * bb, o = b * be
                    if t == 13 {
                        let d = half(p), dmin = half(p + 2)
                        for c in 0..<4 {
                            let (sc1, m1) = Dequantize.scaleMinK4(2 * c, s + p + 4)
                            let (sc2, m2) = Dequantize.scaleMinK4(2 * c + 1, s + p + 4)
                            let d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2
                            for l in 0..<32 {
                                let ql = byte(p + 48 + 32 * c + l), qh = byte(p + 16 + l)
                                dst[o + 64 * c + l] = d1 * Float((ql & 15) + (qh >> (2 * c) & 1) * 16) - mm1
                                dst[o + 64 * c + 32 + l] = d2 * Float((ql >> 4) + (qh >> (2 * c + 1) & 1) * 16) - mm2
                            }
                        }
                        continue
                    }
                    let one = t == 7
                    let d = half(p), m: Float = one ? half(p + 2) : 0
                    let qh = UInt32(littleEndian: s.loadUnaligned(fromByteOffset: p + (one ? 4 : 2), as: UInt32.self))
                    let qs = p + (one ? 8 : 6)
                    for j in 0..<16 {
                        let x0 = (byte(qs + j) & 15) | Int((qh >> UInt32(j)) << 4 & 0x10)
                        let x1 = (byte(qs + j) >> 4) | Int((qh >> UInt32(j + 12)) & 0x10)
                        if one {
                            dst[o + j] = Float(x0) * d + m
                            dst[o + j + 16] = Float(x1) * d + m
                        } else {
                            dst[o + j] = Float(x0 - 16) * d
                            dst[o + j + 16] = Float(x1 - 16) * d
                        }
                    }
                }
            }
        }
        return y
    }

    static func randomInputs(_ count: Int, _ rng: inout SplitMix64) -> [Float] {
        (0..<count).map { _ in Float(rng.nextDouble() * 2 - 1) }
    }

    /// Double products over the dequantised weights, with the tolerance each allows: 1e-5 of the sum of
    /// |w·x| (fp32 summation in another order), plus a floor.
    static func expectClose(_ got: [Float], _ w: [Float], rows: Int, cols: Int, _ x: [Float], inputs: Int,
                            _ what: String) {
        for i in 0..<inputs { for r in 0..<rows {
            var s = 0.0, mag = 0.0
            for c in 0..<cols {
                let p = Double(w[r * cols + c]) * Double(x[i * cols + c])
                s += p
                mag += abs(p)
            }
            let err = abs(Double(got[i * rows + r]) - s)
            if err > 1e-5 * mag + 1e-6 {
                Issue.record("\(what): input \(i) row \(r): \(got[i * rows + r]) vs \(s)")
                return
            }
        } }
    }

    /// int8 inputs as radial_quantize_q8 makes them, and their dequantised values xd·q: the int8 kernels'
    /// integer arithmetic computes exactly the product of the weights with those.
    static func quantized(_ x: [Float], inputs n: Int, cols: Int) -> (q: [Int8], d: [Float], s: [Float], values: [Float]) {
        let nb = cols / 32
        var q = [Int8](repeating: 0, count: n * cols), d = [Float](repeating: 0, count: n * nb), s = d
        radial_quantize_q8(x, Int32(cols), Int32(n), Int32(nb), &q, Int32(cols), &d, &s)
        let values = (0..<(n * cols)).map { d[($0 / cols) * nb + ($0 % cols) / 32] * Float(q[$0]) }
        return (q, d, s, values)
    }

    @Test(arguments: allTypes)
    func dequantizeRowsIsBitExact(_ t: Int) {
        var rng = SplitMix64(seed: UInt64(100 + t))
        let (bb, be) = Self.geometry(t)
        let rows = 5, cols = be == 256 ? 512 : 96, rowBytes = cols / be * bb
        let bytes = Self.randomBlocks(t, count: rows * cols / be, &rng)
        let want = Self.reference(t, bytes, count: rows * cols)
        // rows 1..4 into a tile with a wider stride
        var got = [Float](repeating: -1, count: 3 * (cols + 7))
        radial_gguf_dequantize_rows(Int32(t), bytes, rowBytes, Int32(cols), 1, 4, &got, Int32(cols + 7))
        for r in 0..<3 { for c in 0..<cols where got[r * (cols + 7) + c].bitPattern != want[(r + 1) * cols + c].bitPattern {
            Issue.record("type \(t) row \(r + 1) col \(c): \(got[r * (cols + 7) + c]) vs \(want[(r + 1) * cols + c])")
            return
        } }
        #expect(got[cols] == -1, "type \(t): wrote past the row")
    }

    /// Both arithmetics, generic and SIMD: against Double references, and each (input, row) bit-equal
    /// whatever the batch size and row range of the call.
    @Test(arguments: allTypes)
    func kernelsMatchReferenceAndIgnoreBatching(_ t: Int) {
        var rng = SplitMix64(seed: UInt64(200 + t))
        let (bb, be) = Self.geometry(t)
        let float = be == 1
        let rows = 29, cols = be == 256 ? 512 : float ? 104 : 160, rowBytes = cols / be * bb
        let bytes = Self.randomBlocks(t, count: rows * cols / be, &rng)
        let w = Self.reference(t, bytes, count: rows * cols)
        let n = 11
        let x = Self.randomInputs(n * cols, &rng)
        let xq = float ? nil : Self.quantized(x, inputs: n, cols: cols)
        // 1: the portable kernels, 2: AVX2 without extensions, 0: the best this CPU runs (AVX512-VNNI dots)
        for level in [1, 2, 0] {
            radial_kernels_force_generic(Int32(level))
            defer { radial_kernels_force_generic(0) }
            for q8 in float ? [false] : [false, true] {
                let what = "type \(t) level=\(level) q8=\(q8)"
                // inputs [i0, i0+k) times rows [r0, r1), results in y[i*ldy + r]
                func product(_ i0: Int, _ k: Int, _ r0: Int, _ r1: Int) -> [Float] {
                    var y = [Float](repeating: .nan, count: k * rows)
                    if let xq, q8 {
                        let nb = cols / 32
                        xq.q.withUnsafeBufferPointer { q in xq.d.withUnsafeBufferPointer { d in xq.s.withUnsafeBufferPointer { s in
                            radial_gguf_matmul_q8(Int32(t), bytes, rowBytes, Int32(cols), Int32(r0), Int32(r1),
                                                  q.baseAddress! + i0 * cols, Int32(cols), d.baseAddress! + i0 * nb,
                                                  s.baseAddress! + i0 * nb, Int32(k), &y, Int32(rows), 0)
                        } } }
                    } else {
                        x.withUnsafeBufferPointer { xp in
                            radial_gguf_matmul(Int32(t), bytes, rowBytes, Int32(cols), Int32(r0), Int32(r1),
                                               xp.baseAddress! + i0 * cols, Int32(cols), Int32(k), &y, Int32(rows), 0)
                        }
                    }
                    return y
                }
                let all = product(0, n, 0, rows)
                Self.expectClose(all, w, rows: rows, cols: cols, q8 ? xq!.values : x, inputs: n, what)
                for (i0, k, r0, r1) in [(0, 1, 0, rows), (4, 1, 3, 17), (2, 8, 0, rows), (8, 3, 5, 6), (1, 3, 11, 29)] {
                    let part = product(i0, k, r0, r1)
                    for i in 0..<k { for r in r0..<r1 where part[i * rows + r].bitPattern != all[(i0 + i) * rows + r].bitPattern {
                        Issue.record("\(what): input \(i0 + i) row \(r) differs with \(k) inputs, rows \(r0)..<\(r1)")
                        return
                    } }
                }
                // accumulate adds to what is there
                var z = [Float](repeating: 0.25, count: rows)
                x.withUnsafeBufferPointer { xp in
                    radial_gguf_matmul(Int32(t), bytes, rowBytes, Int32(cols), 0, Int32(rows), xp.baseAddress!, Int32(cols), 1, &z, Int32(rows), 1)
                }
                let alone = product(0, 1, 0, rows)
                if !q8 { #expect(zip(z, alone).allSatisfy { abs($0 - (0.25 + $1)) <= 1e-6 + 1e-6 * abs($1) }, "\(what) accumulate") }
            }
        }
    }

    /// A GGUF file with parts of several types stacked as one matrix (what a fused QKV or gate/up is).
    func mixedFile() throws -> (GGUFFile, [GGUFTensorInfo]) {
        var rng = SplitMix64(seed: 9)
        let cols = 512
        var wr = GGUFWriter()
        // (name, type, rows): the writer quantises the legacy and float types; K-quants are raw blocks
        let spec: [(String, GGMLType, Int)] = [("a", .q4_0, 13), ("b", .q8_0, 20), ("c", .q4_K, 9), ("d", .q6_K, 16),
                                               ("e", .f16, 5), ("f", .q4_1, 7), ("g", .bf16, 3), ("h", .f32, 4)]
        for (name, type, rows) in spec {
            if type == .q4_K || type == .q6_K {
                wr.addRawTensor(name, dimensions: [cols, rows], type: type,
                                bytes: Self.randomBlocks(Int(type.rawValue), count: rows * cols / 256, &rng))
            } else {
                wr.addTensor(name, dimensions: [cols, rows], values: Self.randomInputs(rows * cols, &rng), as: type)
            }
        }
        let path = try TestSupport.tempDir() + "/mixed.gguf"
        try wr.write(to: path)
        let f = try GGUFFile(path: path)
        return (f, try spec.map { try f.requireTensor($0.0) })
    }

    @Test func stackedMixedTypes() throws {
        let (f, tensors) = try mixedFile()
        let m = try #require(GGUFMatrix(tensors: tensors, file: f))
        let rows = m.rows, cols = m.columns
        #expect(rows == 77 && cols == 512)
        #expect(m.bytes == tensors.reduce(0) { $0 + $1.byteCount })
        let w = try tensors.flatMap { try f.floats($0.name) }

        // dequantize: bit for bit Dequantize's, including a range crossing parts
        var tile = [Float](repeating: 0, count: 30 * cols)
        m.dequantize(rowStart: 10, rowCount: 30, into: &tile)
        #expect(tile.map(\.bitPattern) == w[(10 * cols)..<(40 * cols)].map(\.bitPattern))

        var rng = SplitMix64(seed: 4)
        let n = 8
        let x = Self.randomInputs(n * cols, &rng)
        let xq = Self.quantized(x, inputs: n, cols: cols)
        for generic in [true, false] {
            radial_kernels_force_generic(generic ? 1 : 0)
            defer { radial_kernels_force_generic(0) }
            for act in QuantizedMatrix.Activations.allCases {
                // The generic switch is per thread: only the calling thread's work is forced.
                for threads in generic ? [1] : [1, 3] {
                    var y = [Float](repeating: .nan, count: n * rows)
                    m.multiply(x, inputs: n, into: &y, threads: threads, activations: act)
                    // q8 arithmetic: float parts take fp32 inputs, block parts the int8 ones
                    if act == .q8 {
                        var floatRows = Set<Int>(), row = 0
                        for t in tensors { if [.f32, .f16, .bf16].contains(t.type) { floatRows.formUnion(row..<row + t.rows) }; row += t.rows }
                        var worst = 0.0
                        for r in 0..<rows {
                            let xs = floatRows.contains(r) ? x : xq.values
                            for i in 0..<n {
                                var s = 0.0, mag = 0.0
                                for c in 0..<cols {
                                    let p = Double(w[r * cols + c]) * Double(xs[i * cols + c])
                                    s += p
                                    mag += abs(p)
                                }
                                worst = max(worst, abs(Double(y[i * rows + r]) - s) / (1e-5 * mag + 1e-6))
                            }
                        }
                        #expect(worst <= 1, "q8 generic=\(generic) threads=\(threads): error \(worst) x tolerance")
                    } else {
                        Self.expectClose(y, w, rows: rows, cols: cols, x, inputs: n, "stacked generic=\(generic) threads=\(threads)")
                    }
                    // one input alone, and a row range across parts accumulated into a tile: the same bits
                    for (i, start, count) in [(0, 0, rows), (5, 17, 40), (7, 60, 17)] {
                        var z = [Float](repeating: 0, count: count)
                        x.withUnsafeBufferPointer { xp in
                            m.multiply(xp.baseAddress! + i * cols, inputs: 1, into: &z, accumulate: true,
                                       rowStart: start, rowCount: count, threads: threads, activations: act)
                        }
                        #expect(z.map(\.bitPattern) == y[(i * rows + start)..<(i * rows + start + count)].map(\.bitPattern),
                                "\(act) generic=\(generic) threads=\(threads) input \(i) rows \(start)+\(count)")
                    }
                }
            }
        }
    }

    @Test func supportsAndRejects() throws {
        for t in GGMLType.allCases { #expect(GGUFMatrix.supports(t)) }
        let (f, tensors) = try mixedFile()
        #expect(GGUFMatrix(tensors: [], file: f) == nil)
        var wr = GGUFWriter()
        wr.addTensor("narrow", dimensions: [32, 2], values: [Float](repeating: 1, count: 64), as: .q8_0)
        let path = try TestSupport.tempDir() + "/narrow.gguf"
        try wr.write(to: path)
        let g = try GGUFFile(path: path)
        // column counts differ: refused
        #expect(GGUFMatrix(tensors: [tensors[0], try g.requireTensor("narrow")], file: f) == nil)
    }
}
