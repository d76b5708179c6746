#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A GGUF file, memory-mapped read-only. Parsing validates every count, length and offset against the file
/// size, so a broken file is a `GGUFError`, never a crash. Tensor data is not copied: `data(of:)` views the map.
///
/// Immutable after `init`; the mapping lives as long as this object, hence `@unchecked Sendable`.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Metadata keys in file order (for printing and fingerprinting).
    public let metadataKeys: [String]
    /// Tensors in file order.
    public let tensors: [GGUFTensorInfo]
    public let alignment: Int
    public let dataOffset: Int
    public let fileSize: Int
    private let tensorIndex: [String: Int]
    let base: UnsafeRawPointer
    private let mappedLength: Int

    // Sanity limits: far above any real model, far below what a corrupt count would ask for.
    static let maxTensors: UInt64 = 1 << 20
    static let maxKeys: UInt64 = 1 << 20
    static let maxDims: UInt32 = 4

    public convenience init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw GGUFError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw GGUFError.cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        let size = Int(st.st_size)
        guard size > 0 else { throw GGUFError.truncated(what: "header", offset: 0, fileSize: 0) }
        guard let map = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), map != MAP_FAILED else {
            throw GGUFError.cannotOpen(path: path, reason: "mmap failed: \(String(cString: strerror(errno)))")
        }
        do {
            try self.init(path: path, base: UnsafeRawPointer(map), length: size, unmapOnDeinit: true)
        } catch {
            munmap(map, size)
            throw error
        }
    }

    private let unmapOnDeinit: Bool

    private init(path: String, base: UnsafeRawPointer, length: Int, unmapOnDeinit: Bool) throws {
        self.path = path
        self.base = base
        self.mappedLength = length
        self.fileSize = length
        self.unmapOnDeinit = unmapOnDeinit
        var r = ByteReader(base: base, count: length)

        let magic = try r.bytes(4, what: "magic")
        guard magic == Array("GGUF".utf8) else {
            let shown = magic.allSatisfy { $0 >= 32 && $0 < 127 } ? "\"\(String(decoding: magic, as: UTF8.self))\""
                : magic.map { String($0, radix: 16) }.joined(separator: " ")
            throw GGUFError.badMagic(found: shown)
        }
        version = try r.u32(what: "version")
        guard version == 2 || version == 3 else { throw GGUFError.unsupportedVersion(version) }
        let tensorCount = try r.u64(what: "tensor count")
        let keyCount = try r.u64(what: "metadata count")
        guard tensorCount <= Self.maxTensors else {
            throw GGUFError.absurdCount(what: "tensors", count: tensorCount, limit: Self.maxTensors)
        }
        guard keyCount <= Self.maxKeys else {
            throw GGUFError.absurdCount(what: "metadata keys", count: keyCount, limit: Self.maxKeys)
        }

        var meta: [String: GGUFValue] = [:]
        var keys: [String] = []
        for _ in 0..<keyCount {
            let key = try r.string(what: "metadata key")
            let rawType = try r.u32(what: "value type of \(key)")
            guard let type = GGUFValueType(rawValue: rawType) else { throw GGUFError.invalidValueType(key: key, raw: rawType) }
            let value = try r.value(of: type, key: key)
            guard meta.updateValue(value, forKey: key) == nil else { throw GGUFError.duplicateKey(key) }
            keys.append(key)
        }
        metadata = meta
        metadataKeys = keys

        var align = 32
        if let a = meta["general.alignment"] {
            guard let v = a.intValue, v > 0, v & (v - 1) == 0 else { throw GGUFError.badAlignment(a.intValue ?? -1) }
            align = v
        }
        alignment = align

        struct Raw { let name: String; let dims: [Int]; let type: GGMLType; let offset: Int }
        var raws: [Raw] = []
        var index: [String: Int] = [:]
        for _ in 0..<tensorCount {
            let name = try r.string(what: "tensor name")
            let nDims = try r.u32(what: "dimension count of \(name)")
            guard nDims >= 1 && nDims <= Self.maxDims else { throw GGUFError.badDimensions(tensor: name, dimensions: []) }
            var rawDims: [UInt64] = []
            for _ in 0..<nDims { rawDims.append(try r.u64(what: "dimensions of \(name)")) }
            // Each dimension and their product must stay far below Int.max; a file cannot hold more anyway.
            var elements: UInt64 = 1
            for d in rawDims {
                let (p, overflow) = elements.multipliedReportingOverflow(by: d)
                guard d > 0, !overflow, p <= UInt64(length) * 8 else {
                    throw GGUFError.badDimensions(tensor: name, dimensions: rawDims)
                }
                elements = p
            }
            let rawType = try r.u32(what: "type of \(name)")
            guard let type = GGMLType(rawValue: rawType) else {
                throw GGUFError.unsupportedTensorType(tensor: name, type: GGMLType.name(ofRaw: rawType))
            }
            let offset = try r.u64(what: "offset of \(name)")
            guard offset <= UInt64(length) else {
                throw GGUFError.tensorOutOfBounds(tensor: name, end: Int(clamping: offset), fileSize: length)
            }
            guard Int(offset) % align == 0 else { throw GGUFError.misalignedTensor(tensor: name, offset: Int(offset), alignment: align) }
            let dims = rawDims.map { Int($0) }
            guard dims[0] % type.blockSize == 0 else { throw GGUFError.badDimensions(tensor: name, dimensions: rawDims) }
            guard index.updateValue(raws.count, forKey: name) == nil else { throw GGUFError.duplicateTensor(name) }
            raws.append(Raw(name: name, dims: dims, type: type, offset: Int(offset)))
        }
        tensorIndex = index

        let dataStart = (r.offset + align - 1) / align * align
        dataOffset = dataStart
        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(raws.count)
        for raw in raws {
            let elements = raw.dims.reduce(1, *)
            let bytes = elements / raw.type.blockSize * raw.type.bytesPerBlock
            let end = dataStart + raw.offset + bytes
            guard end <= length else { throw GGUFError.tensorOutOfBounds(tensor: raw.name, end: end, fileSize: length) }
            infos.append(GGUFTensorInfo(name: raw.name, dimensions: raw.dims, type: raw.type, offset: raw.offset,
                                        elementCount: elements, byteCount: bytes))
        }
        tensors = infos
    }

    deinit {
        if unmapOnDeinit { munmap(UnsafeMutableRawPointer(mutating: base), mappedLength) }
    }

    /// Drops this process's resident pages of `tensor` (whole pages inside it): after a tensor was copied into
    /// another layout its file pages would otherwise count twice in the RSS. Only for a file mapping (a later
    /// read faults the pages back in from the page cache); a no-op for anything else.
    public func releasePages(of tensor: GGUFTensorInfo) {
        guard unmapOnDeinit else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = Int(bitPattern: base) + dataOffset + tensor.offset
        let lo = (start + page - 1) / page * page, hi = (start + tensor.byteCount) / page * page
        guard hi > lo, let p = UnsafeMutableRawPointer(bitPattern: lo) else { return }
        madvise(p, hi - lo, Int32(MADV_DONTNEED))
    }

    // MARK: Lookup

    public func tensor(_ name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    public func requireTensor(_ name: String) throws -> GGUFTensorInfo {
        guard let t = tensor(name) else { throw GGUFError.missingTensor(name) }
        return t
    }

    /// The raw bytes of a tensor, a view into the mapping (valid while this object lives).
    public func data(of tensor: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + dataOffset + tensor.offset, count: tensor.byteCount)
    }

    /// A tensor dequantised to fp32, row-major with `rows` rows of `columns` values.
    public func floats(_ name: String) throws -> [Float] {
        let t = try requireTensor(name)
        return [Float](unsafeUninitializedCapacity: t.elementCount) { buf, n in
            Dequantize.run(type: t.type, from: data(of: t), into: UnsafeMutableBufferPointer(rebasing: buf[0..<t.elementCount]))
            n = t.elementCount
        }
    }

    public func int(_ key: String) throws -> Int {
        guard let v = metadata[key] else { throw GGUFError.missingKey(key) }
        guard let i = v.intValue else { throw GGUFError.wrongValueType(key: key, expected: "integer", found: v.typeName) }
        return i
    }

    public func double(_ key: String) throws -> Double {
        guard let v = metadata[key] else { throw GGUFError.missingKey(key) }
        guard let d = v.doubleValue else { throw GGUFError.wrongValueType(key: key, expected: "number", found: v.typeName) }
        return d
    }

    public func string(_ key: String) throws -> String {
        guard let v = metadata[key] else { throw GGUFError.missingKey(key) }
        guard let s = v.stringValue else { throw GGUFError.wrongValueType(key: key, expected: "string", found: v.typeName) }
        return s
    }

    public func strings(_ key: String) throws -> [String] {
        guard let v = metadata[key] else { throw GGUFError.missingKey(key) }
        guard case .array(.string, let items) = v else {
            throw GGUFError.wrongValueType(key: key, expected: "array[string]", found: v.typeName)
        }
        return items.map { $0.stringValue ?? "" }
    }

    public func ints(_ key: String) throws -> [Int] {
        guard let v = metadata[key] else { throw GGUFError.missingKey(key) }
        guard case .array(_, let items) = v, items.allSatisfy({ $0.intValue != nil }) else {
            throw GGUFError.wrongValueType(key: key, expected: "array of integers", found: v.typeName)
        }
        return items.map { $0.intValue! }
    }

    public func floatArray(_ key: String) throws -> [Float] {
        guard let v = metadata[key] else { throw GGUFError.missingKey(key) }
        guard case .array(_, let items) = v, items.allSatisfy({ $0.doubleValue != nil }) else {
            throw GGUFError.wrongValueType(key: key, expected: "array of numbers", found: v.typeName)
        }
        return items.map { Float($0.doubleValue!) }
    }
}

/// A bounds-checked little-endian cursor over the mapped header.
struct ByteReader {
    let base: UnsafeRawPointer
    let count: Int
    var offset = 0

    mutating func need(_ n: Int, what: String) throws {
        guard n >= 0, n <= count - offset else { throw GGUFError.truncated(what: what, offset: offset, fileSize: count) }
    }

    mutating func bytes(_ n: Int, what: String) throws -> [UInt8] {
        try need(n, what: what)
        defer { offset += n }
        return Array(UnsafeRawBufferPointer(start: base + offset, count: n))
    }

    mutating func load<T: FixedWidthInteger>(_: T.Type, what: String) throws -> T {
        try need(MemoryLayout<T>.size, what: what)
        defer { offset += MemoryLayout<T>.size }
        return T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
    }

    mutating func u32(what: String) throws -> UInt32 { try load(UInt32.self, what: what) }
    mutating func u64(what: String) throws -> UInt64 { try load(UInt64.self, what: what) }

    mutating func string(what: String) throws -> String {
        let start = offset
        let n = try u64(what: "length of \(what)")
        guard n <= UInt64(count - offset) else { throw GGUFError.truncated(what: what, offset: start, fileSize: count) }
        let len = Int(n)
        let buf = UnsafeRawBufferPointer(start: base + offset, count: len)
        guard let s = String(validating: buf, as: UTF8.self) else { throw GGUFError.invalidUTF8(what: what, offset: start) }
        offset += len
        return s
    }

    mutating func value(of type: GGUFValueType, key: String, depth: Int = 0) throws -> GGUFValue {
        let what = "value of \(key)"
        switch type {
        case .uint8: return .uint8(try load(UInt8.self, what: what))
        case .int8: return .int8(try load(Int8.self, what: what))
        case .uint16: return .uint16(try load(UInt16.self, what: what))
        case .int16: return .int16(try load(Int16.self, what: what))
        case .uint32: return .uint32(try load(UInt32.self, what: what))
        case .int32: return .int32(try load(Int32.self, what: what))
        case .uint64: return .uint64(try load(UInt64.self, what: what))
        case .int64: return .int64(try load(Int64.self, what: what))
        case .float32: return .float32(Float(bitPattern: try load(UInt32.self, what: what)))
        case .float64: return .float64(Double(bitPattern: try load(UInt64.self, what: what)))
        case .bool:
            let b = try load(UInt8.self, what: what)
            return .bool(b != 0)
        case .string: return .string(try string(what: what))
        case .array:
            guard depth < 4 else { throw GGUFError.invalidValueType(key: key, raw: GGUFValueType.array.rawValue) }
            let rawElem = try u32(what: "array element type of \(key)")
            guard let elem = GGUFValueType(rawValue: rawElem) else { throw GGUFError.invalidValueType(key: key, raw: rawElem) }
            let n = try u64(what: "array length of \(key)")
            // Every element takes at least one byte, so a count above the remaining bytes is a lie.
            let remaining = UInt64(count - offset)
            guard n <= remaining else { throw GGUFError.absurdCount(what: "elements in \(key)", count: n, limit: remaining) }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(n))
            for _ in 0..<n { items.append(try value(of: elem, key: key, depth: depth + 1)) }
            return .array(elem, items)
        }
    }
}
