// GGUF, the file format llama.cpp writes models in. The layout, in order:
//  1. magic "GGUF" (4 bytes), version (u32: 2 or 3), tensor count (u64), metadata key/value count (u64)
//  2. metadata: key (u64 length + UTF-8 bytes), value type (u32), value (scalars little-endian; strings
//     length-prefixed; arrays: element type u32, count u64, elements)
//  3. tensor infos: name (string), dimension count (u32), dimensions (u64 each, innermost first),
//     ggml type (u32), offset (u64) relative to the start of the data section
//  4. padding to `general.alignment` (default 32), then the data section; every tensor offset is aligned.

/// A metadata value. Arrays keep their element type so that an empty array still says what it holds.
public enum GGUFValue: Sendable, Equatable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16)
    case uint32(UInt32), int32(Int32), uint64(UInt64), int64(Int64)
    case float32(Float), float64(Double), bool(Bool), string(String)
    case array(GGUFValueType, [GGUFValue])

    /// Any integer value as Int (nil for non-integers or values that do not fit).
    public var intValue: Int? {
        switch self {
        case .uint8(let v): return Int(v)
        case .int8(let v): return Int(v)
        case .uint16(let v): return Int(v)
        case .int16(let v): return Int(v)
        case .uint32(let v): return Int(v)
        case .int32(let v): return Int(v)
        case .uint64(let v): return Int(exactly: v)
        case .int64(let v): return Int(v)
        case .bool(let v): return v ? 1 : 0
        default: return nil
        }
    }

    /// Any numeric value as Double.
    public var doubleValue: Double? {
        switch self {
        case .float32(let v): return Double(v)
        case .float64(let v): return v
        default: return intValue.map(Double.init)
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: [GGUFValue]? {
        if case .array(_, let a) = self { return a }
        return nil
    }

    public var typeName: String {
        switch self {
        case .uint8: "uint8"
        case .int8: "int8"
        case .uint16: "uint16"
        case .int16: "int16"
        case .uint32: "uint32"
        case .int32: "int32"
        case .uint64: "uint64"
        case .int64: "int64"
        case .float32: "float32"
        case .float64: "float64"
        case .bool: "bool"
        case .string: "string"
        case .array(let t, _): "array[\(t)]"
        }
    }
}

/// The on-disk value type tags.
public enum GGUFValueType: UInt32, Sendable, CustomStringConvertible {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    public var description: String {
        switch self {
        case .uint8: "uint8"
        case .int8: "int8"
        case .uint16: "uint16"
        case .int16: "int16"
        case .uint32: "uint32"
        case .int32: "int32"
        case .float32: "float32"
        case .bool: "bool"
        case .string: "string"
        case .array: "array"
        case .uint64: "uint64"
        case .int64: "int64"
        case .float64: "float64"
        }
    }
}

/// ggml tensor types this reader can dequantise. Values are ggml's `enum ggml_type`.
public enum GGMLType: UInt32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q4_K = 12, q5_K = 13, q6_K = 14, bf16 = 30

    /// Elements per block and bytes per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0: 32
        case .q4_K, .q5_K, .q6_K: 256
        }
    }

    public var bytesPerBlock: Int {
        switch self {
        case .f32: 4
        case .f16, .bf16: 2
        case .q4_0: 18   // f16 scale + 16 bytes of nibbles
        case .q4_1: 20   // f16 scale, f16 min + 16 bytes of nibbles
        case .q5_0: 22   // f16 scale, 32 fifth bits, 16 bytes of nibbles
        case .q5_1: 24   // f16 scale, f16 min, 32 fifth bits, 16 bytes of nibbles
        case .q8_0: 34   // f16 scale + 32 int8
        case .q4_K: 144  // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 128 bytes of nibbles
        case .q5_K: 176  // f16 d, f16 dmin, 12 bytes of 6-bit scales/mins, 32 bytes of fifth bits, 128 of nibbles
        case .q6_K: 210  // 128 bytes low nibbles, 64 bytes high 2-bits, 16 int8 scales, f16 d
        }
    }

    public var description: String {
        switch self {
        case .f32: "F32"
        case .f16: "F16"
        case .q4_0: "Q4_0"
        case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"
        case .q5_1: "Q5_1"
        case .q8_0: "Q8_0"
        case .q4_K: "Q4_K"
        case .q5_K: "Q5_K"
        case .q6_K: "Q6_K"
        case .bf16: "BF16"
        }
    }

    /// ggml's names for types we do not read, so an error can say what the file holds.
    static func name(ofRaw raw: UInt32) -> String {
        if let t = GGMLType(rawValue: raw) { return t.description }
        let known: [UInt32: String] = [
            9: "Q8_1", 10: "Q2_K", 11: "Q3_K", 15: "Q8_K",
            16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S", 20: "IQ4_NL", 21: "IQ3_S",
            22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64", 29: "IQ1_M",
        ]
        return known[raw] ?? "type \(raw)"
    }
}

/// Where a tensor is and what it holds. `dimensions` are innermost first, as in the file:
/// a matrix listed as [inputs, rows] is `rows` rows of `inputs` values in row-major order.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    public let dimensions: [Int]
    public let type: GGMLType
    /// Offset from the start of the data section.
    public let offset: Int
    public let elementCount: Int
    public let byteCount: Int

    /// Rows and columns of the row-major view (a vector is one row).
    public var rows: Int { dimensions.dropFirst().reduce(1, *) }
    public var columns: Int { dimensions.first ?? 1 }
}

/// Everything that can be wrong with a GGUF file, each naming the problem.
public enum GGUFError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, reason: String)
    case badMagic(found: String)
    case unsupportedVersion(UInt32)
    case truncated(what: String, offset: Int, fileSize: Int)
    case absurdCount(what: String, count: UInt64, limit: UInt64)
    case invalidValueType(key: String, raw: UInt32)
    case invalidUTF8(what: String, offset: Int)
    case duplicateKey(String)
    case duplicateTensor(String)
    case badAlignment(Int)
    case badDimensions(tensor: String, dimensions: [UInt64])
    case unsupportedTensorType(tensor: String, type: String)
    case misalignedTensor(tensor: String, offset: Int, alignment: Int)
    case tensorOutOfBounds(tensor: String, end: Int, fileSize: Int)
    case missingKey(String)
    case wrongValueType(key: String, expected: String, found: String)
    case missingTensor(String)
    case unexpectedShape(tensor: String, expected: [Int], found: [Int])

    public var description: String {
        switch self {
        case .cannotOpen(let p, let r): "cannot open model file \(p): \(r)"
        case .badMagic(let f): "not a GGUF file: magic is \(f), expected \"GGUF\""
        case .unsupportedVersion(let v): "unsupported GGUF version \(v) (this reader handles 2 and 3)"
        case .truncated(let w, let o, let s): "GGUF file truncated: \(w) at byte \(o) runs past the end of the \(s)-byte file"
        case .absurdCount(let w, let c, let l): "GGUF header claims \(c) \(w), more than the limit of \(l): the file is corrupt"
        case .invalidValueType(let k, let r): "metadata key \(k) has unknown value type \(r)"
        case .invalidUTF8(let w, let o): "\(w) at byte \(o) is not valid UTF-8"
        case .duplicateKey(let k): "metadata key \(k) appears twice"
        case .duplicateTensor(let n): "tensor \(n) appears twice"
        case .badAlignment(let a): "general.alignment is \(a); it must be a power of two"
        case .badDimensions(let n, let d): "tensor \(n) has invalid dimensions \(d)"
        case .unsupportedTensorType(let n, let t): "tensor \(n) has type \(t), which this engine cannot dequantise (supported: \(GGMLType.allCases.map(\.description).joined(separator: ", ")))"
        case .misalignedTensor(let n, let o, let a): "tensor \(n) has offset \(o), not a multiple of the alignment \(a)"
        case .tensorOutOfBounds(let n, let e, let s): "tensor \(n) ends at byte \(e), past the end of the \(s)-byte file"
        case .missingKey(let k): "model metadata lacks the key \(k)"
        case .wrongValueType(let k, let e, let f): "metadata key \(k) is \(f), expected \(e)"
        case .missingTensor(let n): "model lacks the tensor \(n)"
        case .unexpectedShape(let n, let e, let f): "tensor \(n) has dimensions \(f), expected \(e)"
        }
    }
}
