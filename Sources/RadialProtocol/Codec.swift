import CRadialProto
import Foundation
import RadialRPC

/// C memory for one outgoing message: strings, arrays and nested messages the protobuf-c struct points into,
/// all freed together once the message is packed.
final class Arena {
    private var allocations: [UnsafeMutableRawPointer] = []

    func string(_ s: String) -> UnsafeMutablePointer<CChar> {
        let p = strdup(s)!
        allocations.append(UnsafeMutableRawPointer(p))
        return p
    }

    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
        guard !values.isEmpty else { return nil }
        let p = UnsafeMutablePointer<T>.allocate(capacity: values.count)
        p.initialize(from: values, count: values.count)
        allocations.append(UnsafeMutableRawPointer(p))
        return p
    }

    func strings(_ values: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        array(values.map { Optional(string($0)) })
    }

    /// A nested message on the C heap.
    func message<T>(_ value: T) -> UnsafeMutablePointer<T> {
        let p = UnsafeMutablePointer<T>.allocate(capacity: 1)
        p.initialize(to: value)
        allocations.append(UnsafeMutableRawPointer(p))
        return p
    }

    func messages<T>(_ values: [T]) -> UnsafeMutablePointer<UnsafeMutablePointer<T>?>? {
        array(values.map { Optional(message($0)) })
    }

    deinit { for p in allocations { free(p) } }
}

/// Packs a protobuf-c message struct (whose `base` was set by its generated `_init`).
func pack<T>(_ message: T) -> [UInt8] {
    packing(message) { size, write in
        [UInt8](unsafeUninitializedCapacity: size) { out, count in  // pack writes every byte: no zeroing
            if size > 0, let base = out.baseAddress { write(UnsafeMutableRawPointer(base)) }
            count = size
        }
    }
}

/// Packs through a `WireMessage.withWireWriter` body: the packed size, and a writer that packs into memory of
/// that size (the transport's send buffer).
func packing<T, R>(_ message: T, _ body: (Int, (UnsafeMutableRawPointer) -> Void) -> R) -> R {
    var message = message
    return withUnsafePointer(to: &message) { pointer in
        pointer.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { base in
            let size = protobuf_c_message_get_packed_size(base)
            return body(size) { out in
                let written = protobuf_c_message_pack(base, out.assumingMemoryBound(to: UInt8.self))
                precondition(written == size, "protobuf-c packed \(written) bytes after sizing \(size)")
            }
        }
    }
}

/// A bytes field that points into `buffer` instead of copying it, so a payload reaches the wire with the one copy
/// packing makes. Valid only inside the buffer's closure: pack there.
func borrowed(_ buffer: UnsafeBufferPointer<UInt8>) -> ProtobufCBinaryData {
    guard let base = buffer.baseAddress, buffer.count > 0 else { return ProtobufCBinaryData(len: 0, data: nil) }
    return ProtobufCBinaryData(len: buffer.count, data: UnsafeMutablePointer(mutating: base))
}

/// Raw memory of any element type (f32 values) as a bytes field, borrowed: protobuf-c only copies out of it.
func borrowed(_ raw: UnsafeRawBufferPointer) -> ProtobufCBinaryData {
    guard let base = raw.baseAddress, raw.count > 0 else { return ProtobufCBinaryData(len: 0, data: nil) }
    return ProtobufCBinaryData(len: raw.count, data: UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: UInt8.self)))
}

/// Unpacks with the generated `_unpack` (garbage gives NULL: INVALID_ARGUMENT), converts, frees.
func unpack<T, R>(_ bytes: [UInt8], _ name: String,
                  _ unpackFn: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<T>?,
                  _ freeFn: (UnsafeMutablePointer<T>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void,
                  _ convert: (T) throws -> R) throws -> R {
    let message: UnsafeMutablePointer<T>? = bytes.withUnsafeBufferPointer { buffer in
        var empty: UInt8 = 0
        return unpackFn(nil, buffer.count, buffer.baseAddress ?? withUnsafePointer(to: &empty) { $0 })
    }
    guard let message else { throw RPCError.invalidArgument("\(name): the bytes are not a valid \(name) message") }
    defer { freeFn(message, nil) }
    return try convert(message.pointee)
}

// Reading fields of an unpacked message.

func text(_ p: UnsafeMutablePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }

func list<T>(_ count: Int, _ p: UnsafeMutablePointer<T>?) -> [T] {
    guard count > 0, let p else { return [] }
    return Array(UnsafeBufferPointer(start: p, count: count))
}

func texts(_ count: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> [String] {
    list(count, p).map(text)
}

func messageList<T, R>(_ count: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<T>?>?, _ convert: (T) throws -> R) rethrows -> [R] {
    try list(count, p).compactMap { try $0.map { try convert($0.pointee) } }
}

func bytes(_ data: ProtobufCBinaryData) -> [UInt8] {
    guard data.len > 0, let p = data.data else { return [] }
    return Array(UnsafeBufferPointer(start: p, count: data.len))
}

/// A conversion failure that names the field, as INVALID_ARGUMENT.
func invalid(_ field: String, _ problem: String) -> RPCError { .invalidArgument("\(field): \(problem)") }
