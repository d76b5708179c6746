/// Dequantisation of ggml block formats to fp32, following ggml's reference `dequantize_row_*` functions.
/// The caller guarantees `src` holds exactly `dst.count / blockSize` blocks (GGUFFile checks sizes on open).
public enum Dequantize {
    public static func run(type: GGMLType, from src: UnsafeRawBufferPointer, into dst: UnsafeMutableBufferPointer<Float>) {
        let blocks = dst.count / type.blockSize
        precondition(src.count >= blocks * type.bytesPerBlock, "dequantise: source too short")
        guard let s = src.baseAddress, let d = dst.baseAddress else { return }
        switch type {
        case .f32:
            d.update(from: s.assumingMemoryBound(to: Float.self), count: dst.count)
        case .f16:
            for i in 0..<dst.count { d[i] = half(s, 2 * i) }
        case .bf16:
            for i in 0..<dst.count {
                d[i] = Float(bitPattern: UInt32(s.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            }
        case .q8_0:
            for b in 0..<blocks { q8_0(s + b * 34, d + b * 32) }
        case .q4_0:
            for b in 0..<blocks { q4_0(s + b * 18, d + b * 32) }
        case .q4_1:
            for b in 0..<blocks { q4_1(s + b * 20, d + b * 32) }
        case .q5_0:
            for b in 0..<blocks { q5_0(s + b * 22, d + b * 32) }
        case .q5_1:
            for b in 0..<blocks { q5_1(s + b * 24, d + b * 32) }
        case .q4_K:
            for b in 0..<blocks { q4_K(s + b * 144, d + b * 256) }
        case .q5_K:
            for b in 0..<blocks { q5_K(s + b * 176, d + b * 256) }
        case .q6_K:
            for b in 0..<blocks { q6_K(s + b * 210, d + b * 256) }
        }
    }

    @inline(__always)
    static func half(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
    }

    @inline(__always)
    static func byte(_ p: UnsafeRawPointer, _ offset: Int) -> UInt8 { p.load(fromByteOffset: offset, as: UInt8.self) }

    // block_q8_0 { half d; int8 qs[32] }: y = d * q
    static func q8_0(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0)
        for j in 0..<32 { y[j] = d * Float(p.load(fromByteOffset: 2 + j, as: Int8.self)) }
    }

    // block_q4_0 { half d; uint8 qs[16] }: low nibbles are elements 0..15, high nibbles 16..31; y = (q - 8) * d
    static func q4_0(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0)
        for j in 0..<16 {
            let q = byte(p, 2 + j)
            y[j] = Float(Int(q & 0x0F) - 8) * d
            y[j + 16] = Float(Int(q >> 4) - 8) * d
        }
    }

    // block_q4_1 { half d; half m; uint8 qs[16] }: y = q * d + m
    static func q4_1(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), m = half(p, 2)
        for j in 0..<16 {
            let q = byte(p, 4 + j)
            y[j] = Float(q & 0x0F) * d + m
            y[j + 16] = Float(q >> 4) * d + m
        }
    }

    // The fifth bit of element j of a Q5_0/Q5_1 block, from the 32 bits qh (element j's bit is bit j).
    @inline(__always)
    static func fifthBits(_ p: UnsafeRawPointer, _ offset: Int) -> UInt32 {
        p.loadUnaligned(fromByteOffset: offset, as: UInt32.self)
    }

    // block_q5_0 { half d; uint8 qh[4]; uint8 qs[16] }: q = (nibble | fifth bit << 4) - 16, y = q * d
    static func q5_0(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), qh = fifthBits(p, 2)
        for j in 0..<16 {
            let q = byte(p, 6 + j)
            let h0 = UInt8(truncatingIfNeeded: ((qh >> UInt32(j)) << 4) & 0x10)
            let h1 = UInt8(truncatingIfNeeded: (qh >> UInt32(j + 12)) & 0x10)
            y[j] = Float(Int((q & 0x0F) | h0) - 16) * d
            y[j + 16] = Float(Int((q >> 4) | h1) - 16) * d
        }
    }

    // block_q5_1 { half d; half m; uint8 qh[4]; uint8 qs[16] }: q = nibble | fifth bit << 4, y = q * d + m
    static func q5_1(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), m = half(p, 2), qh = fifthBits(p, 4)
        for j in 0..<16 {
            let q = byte(p, 8 + j)
            let h0 = UInt8(truncatingIfNeeded: ((qh >> UInt32(j)) << 4) & 0x10)
            let h1 = UInt8(truncatingIfNeeded: (qh >> UInt32(j + 12)) & 0x10)
            y[j] = Float((q & 0x0F) | h0) * d + m
            y[j + 16] = Float((q >> 4) | h1) * d + m
        }
    }

    // The 6-bit scale and min of sub-block j, packed into 12 bytes (ggml's get_scale_min_k4).
    @inline(__always)
    static func scaleMinK4(_ j: Int, _ q: UnsafeRawPointer) -> (Float, Float) {
        if j < 4 {
            return (Float(byte(q, j) & 63), Float(byte(q, j + 4) & 63))
        }
        let sc = (byte(q, j + 4) & 0x0F) | ((byte(q, j - 4) >> 6) << 4)
        let m = (byte(q, j + 4) >> 4) | ((byte(q, j) >> 6) << 4)
        return (Float(sc), Float(m))
    }

    // block_q4_K { half d; half dmin; uint8 scales[12]; uint8 qs[128] }: 8 sub-blocks of 32, y = d*sc*q - dmin*m
    static func q4_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), dmin = half(p, 2)
        let scales = p + 4
        var q = p + 16
        var out = y
        var sub = 0
        for _ in 0..<4 {
            let (sc1, m1) = scaleMinK4(sub, scales)
            let (sc2, m2) = scaleMinK4(sub + 1, scales)
            let d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2
            for l in 0..<32 { out[l] = d1 * Float(byte(q, l) & 0x0F) - mm1 }
            for l in 0..<32 { out[32 + l] = d2 * Float(byte(q, l) >> 4) - mm2 }
            out += 64
            q += 32
            sub += 2
        }
    }

    // block_q5_K { half d; half dmin; uint8 scales[12]; uint8 qh[32]; uint8 qs[128] }: like Q4_K, with a fifth
    // bit per element from qh (bit 2i for the low nibbles of the i-th 64-element group, bit 2i+1 for the high)
    static func q5_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 0), dmin = half(p, 2)
        let scales = p + 4, qh = p + 16
        var ql = p + 48
        var out = y
        var sub = 0
        var u1: UInt8 = 1, u2: UInt8 = 2
        for _ in 0..<4 {
            let (sc1, m1) = scaleMinK4(sub, scales)
            let (sc2, m2) = scaleMinK4(sub + 1, scales)
            let d1 = d * sc1, mm1 = dmin * m1, d2 = d * sc2, mm2 = dmin * m2
            for l in 0..<32 { out[l] = d1 * Float((byte(ql, l) & 0x0F) + (byte(qh, l) & u1 != 0 ? 16 : 0)) - mm1 }
            for l in 0..<32 { out[32 + l] = d2 * Float((byte(ql, l) >> 4) + (byte(qh, l) & u2 != 0 ? 16 : 0)) - mm2 }
            out += 64
            ql += 32
            sub += 2
            u1 <<= 2
            u2 <<= 2
        }
    }

    // block_q6_K { uint8 ql[128]; uint8 qh[64]; int8 scales[16]; half d }: 16 sub-blocks of 16,
    // q = (4 low bits | 2 high bits << 4) - 32, y = d * scale * q
    static func q6_K(_ p: UnsafeRawPointer, _ y: UnsafeMutablePointer<Float>) {
        let d = half(p, 208)
        var ql = p, qh = p + 128, sc = p + 192
        var out = y
        for _ in 0..<2 {
            for l in 0..<32 {
                let isc = l / 16
                let h = byte(qh, l)
                let q1 = Int(byte(ql, l) & 0x0F | ((h >> 0) & 3) << 4) - 32
                let q2 = Int(byte(ql, l + 32) & 0x0F | ((h >> 2) & 3) << 4) - 32
                let q3 = Int(byte(ql, l) >> 4 | ((h >> 4) & 3) << 4) - 32
                let q4 = Int(byte(ql, l + 32) >> 4 | ((h >> 6) & 3) << 4) - 32
                let s = { (k: Int) in Float(sc.load(fromByteOffset: isc + k, as: Int8.self)) }
                out[l] = d * s(0) * Float(q1)
                out[l + 32] = d * s(2) * Float(q2)
                out[l + 64] = d * s(4) * Float(q3)
                out[l + 96] = d * s(6) * Float(q4)
            }
            out += 128
            ql += 64
            qh += 32
            sc += 8
        }
    }
}
