#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes GGUF v3 files. The tests build tiny models with it (random weights the numpy reference then reads),
/// and broken files on purpose by editing the bytes it produces.
public struct GGUFWriter {
    public var alignment = 32
    private var kvs: [(String, GGUFValue)] = []
    private var tensors: [(name: String, dims: [Int], type: GGMLType, bytes: [UInt8])] = []

    public init() {}

    public mutating func set(_ key: String, _ value: GGUFValue) { kvs.append((key, value)) }

    /// Adds a tensor from row-major fp32 values; `dimensions` innermost first (columns, rows).
    public mutating func addTensor(_ name: String, dimensions: [Int], values: [Float], as type: GGMLType = .f32) {
        precondition(dimensions.reduce(1, *) == values.count, "\(name): \(values.count) values for dims \(dimensions)")
        tensors.append((name, dimensions, type, Quantize.encode(values, as: type)))
    }

    /// Adds a tensor from already-encoded bytes (for blocks made elsewhere).
    public mutating func addRawTensor(_ name: String, dimensions: [Int], type: GGMLType, bytes: [UInt8]) {
        tensors.append((name, dimensions, type, bytes))
    }

    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        out += Array("GGUF".utf8)
        Self.put(&out, UInt32(3))
        Self.put(&out, UInt64(tensors.count))
        let allKVs = kvs.contains { $0.0 == "general.alignment" } || alignment == 32
            ? kvs : kvs + [("general.alignment", .uint32(UInt32(alignment)))]
        Self.put(&out, UInt64(allKVs.count))
        for (k, v) in allKVs {
            Self.putString(&out, k)
            Self.put(&out, Self.tag(of: v).rawValue)
            Self.putValue(&out, v)
        }
        var offset = 0
        var offsets: [Int] = []
        for t in tensors {
            offsets.append(offset)
            offset = (offset + t.bytes.count + alignment - 1) / alignment * alignment
        }
        for (t, off) in zip(tensors, offsets) {
            Self.putString(&out, t.name)
            Self.put(&out, UInt32(t.dims.count))
            for d in t.dims { Self.put(&out, UInt64(d)) }
            Self.put(&out, t.type.rawValue)
            Self.put(&out, UInt64(off))
        }
        while out.count % alignment != 0 { out.append(0) }
        let dataStart = out.count
        for (t, off) in zip(tensors, offsets) {
            while out.count < dataStart + off { out.append(0) }
            out += t.bytes
        }
        return out
    }

    public func write(to path: String) throws {
        let bytes = serialized()
        guard let f = fopen(path, "wb") else { throw GGUFError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { fclose(f) }
        let n = bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, f) }
        guard n == bytes.count else { throw GGUFError.cannotOpen(path: path, reason: "short write") }
    }

    static func tag(of v: GGUFValue) -> GGUFValueType {
        switch v {
        case .uint8: .uint8
        case .int8: .int8
        case .uint16: .uint16
        case .int16: .int16
        case .uint32: .uint32
        case .int32: .int32
        case .uint64: .uint64
        case .int64: .int64
        case .float32: .float32
        case .float64: .float64
        case .bool: .bool
        case .string: .string
        case .array: .array
        }
    }

    static func put<T: FixedWidthInteger>(_ out: inout [UInt8], _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { out += $0 }
    }

    static func putString(_ out: inout [UInt8], _ s: String) {
        put(&out, UInt64(s.utf8.count))
        out += Array(s.utf8)
    }

    static func putValue(_ out: inout [UInt8], _ v: GGUFValue) {
        switch v {
        case .uint8(let x): put(&out, x)
        case .int8(let x): put(&out, x)
        case .uint16(let x): put(&out, x)
        case .int16(let x): put(&out, x)
        case .uint32(let x): put(&out, x)
        case .int32(let x): put(&out, x)
        case .uint64(let x): put(&out, x)
        case .int64(let x): put(&out, x)
        case .float32(let x): put(&out, x.bitPattern)
        case .float64(let x): put(&out, x.bitPattern)
        case .bool(let x): put(&out, UInt8(x ? 1 : 0))
        case .string(let s): putString(&out, s)
        case .array(let t, let items):
            put(&out, t.rawValue)
            put(&out, UInt64(items.count))
            for i in items { putValue(&out, i) }
        }
    }
}

/// Encoders for the simple formats, mirroring ggml's reference quantisers (round to nearest).
public enum Quantize {
    public static func encode(_ values: [Float], as type: GGMLType) -> [UInt8] {
        var out: [UInt8] = []
        func half(_ f: Float) { GGUFWriter.put(&out, Float16(f).bitPattern) }
        switch type {
        case .f32:
            for v in values { GGUFWriter.put(&out, v.bitPattern) }
        case .f16:
            for v in values { half(v) }
        case .bf16:
            for v in values { GGUFWriter.put(&out, UInt16(truncatingIfNeeded: v.bitPattern >> 16)) }
        case .q8_0:
            for b in stride(from: 0, to: values.count, by: 32) {
                let blk = values[b..<b + 32]
                let amax = blk.map(abs).max() ?? 0
                let d = amax / 127
                let id = d != 0 ? 1 / d : 0
                half(d)
                for v in blk { out.append(UInt8(bitPattern: Int8((v * id).rounded()))) }
            }
        case .q4_0:
            for b in stride(from: 0, to: values.count, by: 32) {
                let blk = Array(values[b..<b + 32])
                let mx = blk.max { abs($0) < abs($1) } ?? 0
                let d = mx / -8
                let id = d != 0 ? 1 / d : 0
                half(d)
                for j in 0..<16 {
                    let lo = UInt8(min(15, max(0, Int((blk[j] * id + 8.5).rounded(.down)))))
                    let hi = UInt8(min(15, max(0, Int((blk[j + 16] * id + 8.5).rounded(.down)))))
                    out.append(lo | hi << 4)
                }
            }
        case .q4_1:
            for b in stride(from: 0, to: values.count, by: 32) {
                let blk = Array(values[b..<b + 32])
                let lo = blk.min() ?? 0, hi = blk.max() ?? 0
                let d = (hi - lo) / 15
                let id = d != 0 ? 1 / d : 0
                half(d)
                half(lo)
                for j in 0..<16 {
                    let a = UInt8(min(15, max(0, Int(((blk[j] - lo) * id + 0.5).rounded(.down)))))
                    let c = UInt8(min(15, max(0, Int(((blk[j + 16] - lo) * id + 0.5).rounded(.down)))))
                    out.append(a | c << 4)
                }
            }
        case .q5_0, .q5_1, .q4_K, .q5_K, .q6_K:
            preconditionFailure("no encoder for \(type); add raw blocks with addRawTensor")
        }
        return out
    }
}
