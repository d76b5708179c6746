import CRadialProto
import RadialRPC

/// Element types a tensor may travel as. Hidden states are f32 by default; f16/bf16 halve the bytes on the wire
/// at a small cost in precision.
public enum DType: Int, Sendable, CaseIterable {
    case f32 = 1, f16 = 2, bf16 = 3

    public var byteSize: Int { self == .f32 ? 4 : 2 }
}

/// A dense, row-major, little-endian tensor as it travels: dtype, shape, raw bytes (one contiguous buffer).
public struct WireTensor: Sendable, Equatable {
    public var dtype: DType
    public var shape: [Int]
    public var data: [UInt8]

    /// Encodes `values` (shape's element count) as `dtype`.
    public init(_ values: [Float], shape: [Int], dtype: DType = .f32) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        self.dtype = dtype
        self.shape = shape
        switch dtype {
        case .f32:
            data = values.withUnsafeBytes { Array($0) }
        case .f16:
            data = [UInt8](repeating: 0, count: values.count * 2)
            data.withUnsafeMutableBytes { raw in
                let out = raw.bindMemory(to: UInt16.self)
                for i in values.indices { out[i] = Float16(values[i]).bitPattern.littleEndian }
            }
        case .bf16:
            data = [UInt8](repeating: 0, count: values.count * 2)
            data.withUnsafeMutableBytes { raw in
                let out = raw.bindMemory(to: UInt16.self)
                for i in values.indices { out[i] = Self.bf16(values[i]).littleEndian }
            }
        }
    }

    init(unchecked dtype: DType, shape: [Int], data: [UInt8]) {
        self.dtype = dtype
        self.shape = shape
        self.data = data
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// The values as Float (converting from f16/bf16).
    public func floats() -> [Float] {
        let n = elementCount
        return [Float](unsafeUninitializedCapacity: n) { out, initialised in
            data.withUnsafeBytes { raw in
                switch dtype {
                case .f32:
                    _ = raw.copyBytes(to: UnsafeMutableRawBufferPointer(out))
                case .f16:
                    for i in 0..<n { out[i] = Float(Float16(bitPattern: UInt16(littleEndian: raw.load(fromByteOffset: 2 * i, as: UInt16.self)))) }
                case .bf16:
                    for i in 0..<n { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.load(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
                }
            }
            initialised = n
        }
    }

    /// Round to nearest even, as most bf16 converters do.
    static func bf16(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if x.isNaN { return UInt16(bits >> 16) | 0x40 }
        let rounding = ((bits >> 16) & 1) + 0x7FFF
        return UInt16((bits &+ rounding) >> 16)
    }

    /// The C form, for `body` to pack: the data is borrowed, not copied, so the message must be packed inside.
    func withC<R>(_ arena: Arena, _ body: (UnsafeMutablePointer<Radial__Tensor>) -> R) -> R {
        data.withUnsafeBufferPointer { bytes in
            var m = Radial__Tensor()
            radial__tensor__init(&m)
            m.dtype = Radial__DType(rawValue: UInt32(dtype.rawValue))
            m.n_shape = shape.count
            m.shape = arena.array(shape.map { UInt64($0) })
            m.data = borrowed(bytes)
            return body(arena.message(m))
        }
    }

    /// Reads and validates a tensor field: known dtype, sane shape, and exactly the bytes the shape needs.
    static func from(_ p: UnsafeMutablePointer<Radial__Tensor>?, field: String) throws -> WireTensor? {
        guard let m = p?.pointee else { return nil }
        guard let dtype = DType(rawValue: Int(m.dtype.rawValue)) else {
            throw invalid(field, "unknown dtype \(m.dtype.rawValue) (expected F32, F16 or BF16)")
        }
        let dims = list(m.n_shape, m.shape)
        var count = 1
        for d in dims {
            let (product, overflow) = count.multipliedReportingOverflow(by: Int(clamping: d))
            guard !overflow, d <= UInt64(Int32.max) else { throw invalid(field, "absurd shape \(dims)") }
            count = product
        }
        let tensorBytes = bytes(m.data)
        guard tensorBytes.count == count * dtype.byteSize else {
            throw invalid(field, "shape \(dims) of \(dtype) needs \(count * dtype.byteSize) bytes, got \(tensorBytes.count)")
        }
        return WireTensor(unchecked: dtype, shape: dims.map { Int($0) }, data: tensorBytes)
    }

    /// A required [rows, width] matrix field.
    static func matrix(_ p: UnsafeMutablePointer<Radial__Tensor>?, field: String, rows: Int) throws -> WireTensor {
        guard let t = try from(p, field: field) else {
            if rows == 0 { return WireTensor(unchecked: .f32, shape: [0, 0], data: []) }
            throw invalid(field, "missing (expected \(rows) rows)")
        }
        guard t.shape.count == 2 else { throw invalid(field, "expected a [rows, hidden] matrix, got shape \(t.shape)") }
        guard t.shape[0] == rows else { throw invalid(field, "has \(t.shape[0]) rows for \(rows) entries") }
        return t
    }
}
