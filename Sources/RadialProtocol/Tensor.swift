import CRadialProto
import RadialRPC

/// Element types a tensor may travel as. Hidden states are f32 by default; f16/bf16 halve the bytes on the wire
/// at a small cost in precision.
public enum DType: Int, Sendable, CaseIterable {
    case f32 = 1, f16 = 2, bf16 = 3

    public var byteSize: Int { self == .f32 ? 4 : 2 }
}

/// A dense, row-major, little-endian tensor as it travels: dtype, shape, and its elements in one contiguous buffer.
/// An f32 tensor keeps its values as the `[Float]` it was made from or decoded into, so neither encoding nor
/// `floats()` copies them (the one copy each way is protobuf-c's, into or out of the message); f16/bf16 keep the
/// packed bytes.
public struct WireTensor: Sendable, Equatable {
    public var dtype: DType
    public var shape: [Int]
    /// The elements when f32 (else empty).
    private var values: [Float] = []
    /// The packed elements when f16/bf16 (else empty).
    private var packed: [UInt8] = []

    /// Encodes `values` (shape's element count) as `dtype`; f32 shares the array, it does not copy it.
    public init(_ values: [Float], shape: [Int], dtype: DType = .f32) {
        precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
        self.dtype = dtype
        self.shape = shape
        switch dtype {
        case .f32:
            self.values = values
        case .f16:
            packed = [UInt8](repeating: 0, count: values.count * 2)
            packed.withUnsafeMutableBytes { raw in
                let out = raw.bindMemory(to: UInt16.self)
                for i in values.indices { out[i] = Float16(values[i]).bitPattern.littleEndian }
            }
        case .bf16:
            packed = [UInt8](repeating: 0, count: values.count * 2)
            packed.withUnsafeMutableBytes { raw in
                let out = raw.bindMemory(to: UInt16.self)
                for i in values.indices { out[i] = Self.bf16(values[i]).littleEndian }
            }
        }
    }

    /// An empty [0, width] matrix.
    static func empty(width: Int) -> WireTensor { WireTensor([], shape: [0, width]) }

    /// Copies `bytes` (already checked to be `shape`'s elements of `dtype`) out of a decoded message, once.
    init(dtype: DType, shape: [Int], copying bytes: UnsafeRawBufferPointer) {
        self.dtype = dtype
        self.shape = shape
        if dtype == .f32 {
            values = [Float](unsafeUninitializedCapacity: bytes.count / 4) { out, n in
                if !bytes.isEmpty { UnsafeMutableRawBufferPointer(out).copyMemory(from: bytes) }
                n = bytes.count / 4
            }
        } else {
            packed = Array(bytes)
        }
    }

    public var elementCount: Int { shape.reduce(1, *) }

    /// The elements' bytes as they travel.
    public var byteCount: Int { dtype == .f32 ? values.count * 4 : packed.count }

    /// The values as Float: f32 shares the tensor's array (no copy until one side writes); f16/bf16 convert.
    public func floats() -> [Float] {
        if dtype == .f32 { return values }
        let n = elementCount
        return [Float](unsafeUninitializedCapacity: n) { out, initialised in
            packed.withUnsafeBytes { raw in
                switch dtype {
                case .f32:
                    break
                case .f16:
                    for i in 0..<n { out[i] = Float(Float16(bitPattern: UInt16(littleEndian: raw.load(fromByteOffset: 2 * i, as: UInt16.self)))) }
                case .bf16:
                    for i in 0..<n { out[i] = Float(bitPattern: UInt32(UInt16(littleEndian: raw.load(fromByteOffset: 2 * i, as: UInt16.self))) << 16) }
                }
            }
            initialised = n
        }
    }

    /// Equal dtype, shape and bytes (so NaNs with the same bits are equal).
    public static func == (a: WireTensor, b: WireTensor) -> Bool {
        a.dtype == b.dtype && a.shape == b.shape && a.withBytes { x in b.withBytes { y in x.elementsEqual(y) } }
    }

    private func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        dtype == .f32 ? values.withUnsafeBytes(body) : packed.withUnsafeBytes(body)
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
        withBytes { raw in
            var m = Radial__Tensor()
            radial__tensor__init(&m)
            m.dtype = Radial__DType(rawValue: UInt32(dtype.rawValue))
            m.n_shape = shape.count
            m.shape = arena.array(shape.map { UInt64($0) })
            m.data = borrowed(raw)
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
        guard m.data.len == count * dtype.byteSize else {
            throw invalid(field, "shape \(dims) of \(dtype) needs \(count * dtype.byteSize) bytes, got \(m.data.len)")
        }
        return WireTensor(dtype: dtype, shape: dims.map { Int($0) }, copying: UnsafeRawBufferPointer(start: m.data.data, count: m.data.len))
    }

    /// A required [rows, width] matrix field.
    static func matrix(_ p: UnsafeMutablePointer<Radial__Tensor>?, field: String, rows: Int) throws -> WireTensor {
        guard let t = try from(p, field: field) else {
            if rows == 0 { return .empty(width: 0) }
            throw invalid(field, "missing (expected \(rows) rows)")
        }
        guard t.shape.count == 2 else { throw invalid(field, "expected a [rows, hidden] matrix, got shape \(t.shape)") }
        guard t.shape[0] == rows else { throw invalid(field, "has \(t.shape[0]) rows for \(rows) entries") }
        return t
    }
}
