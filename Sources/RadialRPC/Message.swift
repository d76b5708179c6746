/// A message with a wire form: generated protobuf-c structs are converted to and from Swift value types in
/// RadialProtocol, which conforms its types to this.
public protocol WireMessage: Sendable {
    /// Decodes and validates; throws INVALID_ARGUMENT naming the field when the bytes or shapes are wrong.
    init(wire bytes: [UInt8]) throws
    func wireBytes() -> [UInt8]
    /// Encodes into memory the caller provides: `body` gets the exact wire size and a writer that fills that
    /// many bytes. The transport uses it to encode straight into the buffer gRPC sends, with no array in
    /// between. Messages with large payloads implement it (and `wireBytes()` as `wireBytesFromWriter()`); the
    /// default goes through `wireBytes()`, which costs one copy more.
    func withWireWriter<R>(_ body: (_ size: Int, _ write: (UnsafeMutableRawPointer) -> Void) -> R) -> R
}

extension WireMessage {
    public func withWireWriter<R>(_ body: (_ size: Int, _ write: (UnsafeMutableRawPointer) -> Void) -> R) -> R {
        let bytes = wireBytes()
        return body(bytes.count) { out in
            bytes.withUnsafeBytes { if let base = $0.baseAddress { out.copyMemory(from: base, byteCount: $0.count) } }
        }
    }

    /// `wireBytes()` for a message that implements `withWireWriter`: what it writes, in an array.
    public func wireBytesFromWriter() -> [UInt8] {
        withWireWriter { size, write in
            [UInt8](unsafeUninitializedCapacity: size) { out, count in  // the writer fills every byte: no zeroing
                if size > 0, let base = out.baseAddress { write(UnsafeMutableRawPointer(base)) }
                count = size
            }
        }
    }
}

extension RPCServer {
    /// A typed unary method. A request that does not decode is INVALID_ARGUMENT without running the handler.
    public func addUnary<Request: WireMessage, Response: WireMessage>(
        _ path: String, _ type: Request.Type = Request.self, offloaded: Bool = false,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        addEncodedUnary(path, offloaded: offloaded, inline: nil) { bytes, context in
            OutgoingMessage(try await handler(try Request(wire: bytes), context))
        }
    }

    /// A typed unary method with a fast path (see `RPCServer.addUnary(_:offloaded:inline:_:)`): `inline` answers
    /// without waiting when it can (nil: run `handler`). A request that does not decode is INVALID_ARGUMENT.
    public func addUnary<Request: WireMessage, Response: WireMessage>(
        _ path: String, _ type: Request.Type = Request.self,
        inline: @escaping @Sendable (Request, ServerContext) throws -> Response?,
        _ handler: @escaping @Sendable (Request, ServerContext) async throws -> Response
    ) {
        addEncodedUnary(path, offloaded: false, inline: { bytes, context in
            try inline(try Request(wire: bytes), context).map { OutgoingMessage($0) }
        }) { bytes, context in
            OutgoingMessage(try await handler(try Request(wire: bytes), context))
        }
    }

    /// A typed unary method whose handler never waits: it always answers inline, on the completion-queue thread,
    /// as the call arrives (see `RPCServer.addUnary(_:offloaded:inline:_:)`).
    public func addUnarySync<Request: WireMessage, Response: WireMessage>(
        _ path: String, _ type: Request.Type = Request.self,
        _ handler: @escaping @Sendable (Request, ServerContext) throws -> Response
    ) {
        addUnary(path, type, inline: { request, context in try handler(request, context) }) { request, context in
            try handler(request, context)
        }
    }

    /// A typed server-streaming method; `send` each response.
    public func addServerStreaming<Request: WireMessage, Response: WireMessage>(
        _ path: String, _ type: Request.Type = Request.self, response: Response.Type = Response.self, offloaded: Bool = false,
        _ handler: @escaping @Sendable (Request, ServerContext, TypedResponseWriter<Response>) async throws -> Void
    ) {
        addServerStreaming(path, offloaded: offloaded) { (bytes: [UInt8], context: ServerContext, writer: ResponseWriter) async throws in
            try await handler(try Request(wire: bytes), context, TypedResponseWriter(writer: writer))
        }
    }
}

public struct TypedResponseWriter<Response: WireMessage>: Sendable {
    let writer: ResponseWriter
    public func send(_ response: Response) async throws { try await writer.send(OutgoingMessage(response)) }
}

extension RPCChannel {
    /// A typed unary call. A response that does not decode is INTERNAL (the server broke the protocol).
    public func unary<Request: WireMessage, Response: WireMessage>(
        _ path: String, _ request: Request, response: Response.Type = Response.self, options: CallOptions = CallOptions()
    ) async throws -> Response {
        let bytes = try await unary(path, message: OutgoingMessage(request), options: options)
        do { return try Response(wire: bytes) } catch let error as RPCError {
            throw RPCError(.internal, "bad response from \(config.target) for \(path): \(error.message)")
        }
    }

    /// A typed unary call that also says how many bytes went each way. The request is encoded straight into gRPC's
    /// buffer, as by `unary`: counting costs no second encode.
    public func unaryCountingBytes<Request: WireMessage, Response: WireMessage>(
        _ path: String, _ request: Request, response: Response.Type = Response.self, options: CallOptions = CallOptions()
    ) async throws -> (response: Response, sent: Int, received: Int) {
        let message = OutgoingMessage(request)
        let sent = message.size
        let bytes = try await unary(path, message: message, options: options)
        do { return (try Response(wire: bytes), sent, bytes.count) } catch let error as RPCError {
            throw RPCError(.internal, "bad response from \(config.target) for \(path): \(error.message)")
        }
    }

    /// A typed server-streaming call.
    public func serverStreaming<Request: WireMessage, Response: WireMessage>(
        _ path: String, _ request: Request, response: Response.Type = Response.self, options: CallOptions = CallOptions()
    ) throws -> TypedResponseStream<Response> {
        TypedResponseStream(raw: try serverStreaming(path, message: OutgoingMessage(request), options: options), target: config.target)
    }
}

public struct TypedResponseStream<Response: WireMessage>: AsyncSequence, Sendable {
    public typealias Element = Response
    let raw: ResponseStream
    let target: String

    public func cancel() { raw.cancel() }

    public func makeAsyncIterator() -> Iterator { Iterator(raw: raw.makeAsyncIterator(), target: target) }

    public struct Iterator: AsyncIteratorProtocol {
        var raw: ResponseStream.Iterator
        let target: String
        public mutating func next() async throws -> Response? {
            guard let bytes = try await raw.next() else { return nil }
            do { return try Response(wire: bytes) } catch let error as RPCError {
                throw RPCError(.internal, "bad response from \(target): \(error.message)")
            }
        }
    }
}
