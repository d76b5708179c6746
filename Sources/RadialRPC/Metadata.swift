import CGRPCShim

/// Call metadata (HTTP/2 headers and trailers): ordered key/value pairs, keys in lower case. Binary ("-bin")
/// values are carried as the bytes' lossy UTF-8 text; Radial does not use them.
public struct Metadata: Sendable, Equatable, ExpressibleByDictionaryLiteral {
    public private(set) var entries: [Entry] = []

    public struct Entry: Sendable, Equatable {
        public var key: String
        public var value: String
    }

    public init() {}
    public init(dictionaryLiteral elements: (String, String)...) {
        for (key, value) in elements { add(key, value) }
    }

    public mutating func add(_ key: String, _ value: String) {
        entries.append(Entry(key: key.lowercased(), value: value))
    }

    /// The first value for `key`.
    public subscript(key: String) -> String? {
        let key = key.lowercased()
        return entries.first { $0.key == key }?.value
    }

    public var isEmpty: Bool { entries.isEmpty }
}

extension Metadata {
    /// Reads a metadata array gRPC filled in.
    init(_ array: grpc_metadata_array) {
        for i in 0..<array.count {
            let item = array.metadata[i]
            add(String(slice: item.key), String(slice: item.value))
        }
    }
}

extension String {
    init(slice: grpc_slice) {
        var slice = slice
        let start = rgs_slice_start(&slice)
        let count = rgs_slice_length(&slice)
        guard let start, count > 0 else { self = ""; return }
        self = String(decoding: UnsafeBufferPointer(start: start, count: count), as: UTF8.self)
    }
}

/// Metadata laid out as a C `grpc_metadata` array for a send op; owns its slices until released.
final class CMetadata {
    let pointer: UnsafeMutablePointer<grpc_metadata>?
    let count: Int

    init(_ metadata: Metadata) {
        count = metadata.entries.count
        guard count > 0 else { pointer = nil; return }
        let items = UnsafeMutablePointer<grpc_metadata>.allocate(capacity: count)
        for (i, entry) in metadata.entries.enumerated() {
            var item = grpc_metadata()
            item.key = grpc_slice_from_copied_string(entry.key)
            item.value = grpc_slice_from_copied_string(entry.value)
            items[i] = item
        }
        pointer = items
    }

    deinit {
        guard let pointer else { return }
        for i in 0..<count {
            grpc_slice_unref(pointer[i].key)
            grpc_slice_unref(pointer[i].value)
        }
        pointer.deallocate()
    }
}
