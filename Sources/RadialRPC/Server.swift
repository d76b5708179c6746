import CGRPCShim
import Synchronization

/// How a server listens.
public struct ServerConfig: Sendable {
    /// "host:port"; port 0 picks a free port (read it from `RPCServer.port` after `start`).
    public var address: String
    public var tls: ServerTLS?
    /// When set, every call except those to `unauthenticatedServices` must carry `authorization: Bearer TOKEN`.
    public var bearerToken: String?
    /// Further tokens accepted beside `bearerToken`, each naming another client: a call's `ServerContext.principal`
    /// says which one it carried ("token 2" is the first of these), so a worker shared by several coordinators
    /// keeps each one's sessions to itself.
    public var extraBearerTokens: [String] = []
    /// Health probes (Kubernetes, grpc_health_probe) cannot usually send a token.
    public var unauthenticatedServices: Set<String> = ["grpc.health.v1.Health"]
    /// Largest message sent or received, in bytes.
    public var maxMessageBytes = 64 << 20
    /// Calls accepted ahead per method before a handler has picked them up.
    public var pendingCallsPerMethod = 8
    /// Services ("grpc.health.v1.Health") and methods ("/radial.Worker/Info") served on a second completion
    /// queue and thread, so they answer while a handler computes inline on the main one (a worker's Forward):
    /// a probe or a status call must not time out because the process is busy doing its job.
    public var controlServices: Set<String> = ["grpc.health.v1.Health", "/radial.Worker/Info"]

    public init(address: String, tls: ServerTLS? = nil, bearerToken: String? = nil) {
        self.address = address
        self.tls = tls
        self.bearerToken = bearerToken
    }
}

/// A unary handler: request bytes in, response bytes out. Throw `RPCError` to choose the status.
public typealias UnaryHandler = @Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> [UInt8]
/// A unary handler's fast path: the reply when it can be given without waiting for anything, or nil to run the
/// method's async handler instead (see `addUnary(_:offloaded:inline:_:)`).
public typealias InlineUnaryHandler = @Sendable (_ request: [UInt8], _ context: ServerContext) throws -> [UInt8]?
/// A server-streaming handler: send any number of responses through `responses`, then return.
public typealias StreamingHandler = @Sendable (_ request: [UInt8], _ context: ServerContext, _ responses: ResponseWriter) async throws -> Void

// What the server keeps: handlers whose replies are already in gRPC byte buffers (typed replies are encoded
// straight into one; raw bytes are copied in).
typealias EncodedUnaryHandler = @Sendable (_ request: [UInt8], _ context: ServerContext) async throws -> OutgoingMessage
typealias EncodedInlineHandler = @Sendable (_ request: [UInt8], _ context: ServerContext) throws -> OutgoingMessage?

enum MethodKind: Sendable {
    case unary(EncodedUnaryHandler)
    case serverStreaming(StreamingHandler)
}

struct MethodEntry: Sendable {
    let kind: MethodKind
    /// A unary method's fast path (nil: none).
    var inline: EncodedInlineHandler? = nil
    /// Run on the global pool rather than on the server's queue thread (for handlers that compute for long).
    let offloaded: Bool
}

/// A gRPC server over C core. Register methods, `start`, and `shutdown` to drain.
public final class RPCServer: Sendable {
    public let config: ServerConfig
    private let server: ServerHandle
    private let queue: CompletionQueue
    /// Serves `ServerConfig.controlServices`.
    private let controlQueue: CompletionQueue
    private let state = Mutex(State())

    private struct State {
        var methods: [String: MethodEntry] = [:]
        var port: Int?
        var shuttingDown = false
    }

    public init(config: ServerConfig) {
        GRPCLibrary.ensureInitialised()
        self.config = config
        let args = ChannelArguments([
            ("grpc.max_receive_message_length", .int(config.maxMessageBytes)),
            ("grpc.max_send_message_length", .int(config.maxMessageBytes)),
            // Core sets SO_REUSEPORT by default, so a second server on a busy port would "succeed" and share it.
            ("grpc.so_reuseport", .int(0)),
        ])
        server = ServerHandle(grpc_server_create(args.pointer, nil))
        queue = CompletionQueue(name: "radial-rpc-srv")
        controlQueue = CompletionQueue(name: "radial-rpc-ctl")
        grpc_server_register_completion_queue(server.pointer, queue.cq, nil)
        grpc_server_register_completion_queue(server.pointer, controlQueue.cq, nil)
    }

    /// The queue whose thread serves `path`.
    private func queue(for path: String) -> CompletionQueue {
        let service = path.split(separator: "/").first.map(String.init) ?? ""
        return config.controlServices.contains(service) || config.controlServices.contains(path) ? controlQueue : queue
    }

    /// Registers a unary method by its full path ("/package.Service/Method"). Before `start` only.
    ///
    /// Handlers start on the server's completion-queue thread, which saves a thread wake-up per call; one that
    /// computes for long (milliseconds) should pass `offloaded: true`, or it delays every other call's I/O.
    public func addUnary(_ path: String, offloaded: Bool = false, _ handler: @escaping UnaryHandler) {
        addEncodedUnary(path, offloaded: offloaded, inline: nil) { OutgoingMessage(bytes: try await handler($0, $1)) }
    }

    /// Registers a unary method with a fast path. Before `start` only.
    ///
    /// `inline` runs on the completion-queue thread the moment the call arrives; when it returns a reply, that
    /// reply, the status and the receipt of the call's close go to core as one batch, with no Task and no
    /// continuation (what a C server does). Every microsecond the queue thread spends per call counts, even after
    /// the reply is sent: that thread is also C core's poller, which finishes the write (measured: a C server that
    /// spins 30 us after sending its reply answers ~30 us later). When `inline` returns nil, `handler` runs as
    /// `addUnary` would run it. Nothing can interrupt `inline`, so it must not block for long: a client's cancel
    /// or deadline is seen only by `handler`.
    public func addUnary(_ path: String, offloaded: Bool = false, inline: @escaping InlineUnaryHandler,
                         _ handler: @escaping UnaryHandler) {
        addEncodedUnary(path, offloaded: offloaded, inline: { try inline($0, $1).map { OutgoingMessage(bytes: $0) } }) {
            OutgoingMessage(bytes: try await handler($0, $1))
        }
    }

    func addEncodedUnary(_ path: String, offloaded: Bool, inline: EncodedInlineHandler?, _ handler: @escaping EncodedUnaryHandler) {
        state.withLock { $0.methods[path] = MethodEntry(kind: .unary(handler), inline: inline, offloaded: offloaded) }
    }

    /// Registers a server-streaming method. Before `start` only.
    public func addServerStreaming(_ path: String, offloaded: Bool = false, _ handler: @escaping StreamingHandler) {
        state.withLock { $0.methods[path] = MethodEntry(kind: .serverStreaming(handler), offloaded: offloaded) }
    }

    /// The bound port, once started.
    public var port: Int? { state.withLock { $0.port } }

    /// Binds and starts serving; returns the bound port (the real one when the address asked for port 0).
    @discardableResult
    public func start() throws -> Int {
        let methods = state.withLock { $0.methods }
        // Registered methods let core deliver the request message with the call itself: one batch fewer per call.
        var registered: [(String, RegisteredMethod, MethodEntry)] = []
        for (path, entry) in methods.sorted(by: { $0.key < $1.key }) {
            guard let handle = grpc_server_register_method(server.pointer, path, nil,
                                                           GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0) else {
                throw RPCError(.internal, "gRPC refused to register \(path)")
            }
            registered.append((path, RegisteredMethod(handle: handle), entry))
        }
        let credentials = config.tls?.credentials() ?? grpc_insecure_server_credentials_create()
        let port = grpc_server_add_http2_port(server.pointer, config.address, credentials)
        grpc_server_credentials_release(credentials)
        guard port > 0 else {
            throw RPCError(.unavailable, "cannot listen on \(config.address) (address in use, or not a host:port this machine has)")
        }
        grpc_server_start(server.pointer)
        state.withLock { $0.port = Int(port) }
        for (path, handle, entry) in registered {
            for _ in 0..<max(1, config.pendingCallsPerMethod) { requestCall(path: path, method: handle, entry: entry) }
        }
        requestUnknownCall()
        return Int(port)
    }

    /// Stops accepting calls, lets running calls finish for up to `grace`, cancels whatever is left, then frees
    /// the server. Safe to call more than once.
    public func shutdown(grace: Duration = .seconds(5)) async {
        let first = state.withLock { s -> Bool in defer { s.shuttingDown = true }; return !s.shuttingDown }
        guard first else { return }
        let drained = DrainFlag()
        let server = self.server
        let overtime = Task {
            try? await Task.sleep(for: grace)
            if !drained.done.load(ordering: .acquiring) { grpc_server_cancel_all_calls(server.pointer) }
        }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let tag = CompletionTag { _ in
                drained.done.store(true, ordering: .releasing)
                continuation.resume()
            }
            grpc_server_shutdown_and_notify(server.pointer, queue.cq, tag.retainedPointer())
        }
        overtime.cancel()
        server.destroy()
        queue.shutdown()
        controlQueue.shutdown()
    }

    // MARK: accepting calls

    /// Asks core for the next call to `path`; re-arms itself each time one arrives (`pendingCallsPerMethod` such
    /// requests are out at once).
    private func requestCall(path: String, method: RegisteredMethod, entry: MethodEntry) {
        let slot = IncomingCall()
        let queue = queue(for: path)
        let tag = CompletionTag { [self] success in
            guard success, let call = slot.call.pointee else { return }  // false: the server is shutting down
            let rearm: @Sendable () -> Void = { [self] in
                if !state.withLock({ $0.shuttingDown }) { requestCall(path: path, method: method, entry: entry) }
            }
            let metadata = Metadata(slot.metadata.pointee)
            let auth = authCheck(for: path)
            // Who is calling: the bearer token it carried, else the client certificate it presented (mutual TLS).
            let principal = auth?.principal(metadata) ?? (config.tls?.clientCAPEM != nil ? tlsClientIdentity(call) : nil)
            let context = ServerContext(method: path, metadata: metadata, deadlineSeconds: rgs_seconds_until(slot.deadline.pointee),
                                        principal: principal)
            let payload = slot.takePayload()
            let handle = CallHandle(call)
            // An inline answer re-arms once it has been sent, as a C server asks for its next call after replying:
            // this thread is also core's poller, and all it does before polling again delays the reply's write.
            if let inline = entry.inline, !entry.offloaded,
               ServerCall.answerInline(handle, context: context, payload: payload, auth: auth, inline, whenDone: rearm) {
                return
            }
            rearm()
            let serverCall = ServerCall(call: handle, context: context)
            let executor: any TaskExecutor = entry.offloaded ? globalConcurrentExecutor : queue
            context.attach(Task(executorPreference: executor) {
                await serverCall.run(kind: entry.kind, payload: payload, auth: auth)
            })
        }
        let pointer = tag.retainedPointer()
        let error = grpc_server_request_registered_call(server.pointer, method.handle, slot.call, slot.deadline, slot.metadata,
                                                        slot.payload, queue.cq, queue.cq, pointer)
        if error != GRPC_CALL_OK { CompletionTag.cancel(pointer) }
    }

    /// Calls to methods nobody registered arrive here and get UNIMPLEMENTED.
    private func requestUnknownCall() {
        let slot = IncomingCall()
        let tag = CompletionTag { [self] success in
            guard success, let call = slot.call.pointee else { return }
            if !state.withLock({ $0.shuttingDown }) { requestUnknownCall() }
            let method = String(slice: slot.details.pointee.method)
            let handle = CallHandle(call)
            Task(executorPreference: queue) { await ServerCall.reject(handle, RPCError(.unimplemented, "method \(method) is not implemented by this server")) }
        }
        let pointer = tag.retainedPointer()
        let error = grpc_server_request_call(server.pointer, slot.call, slot.details, slot.metadata, queue.cq, queue.cq, pointer)
        if error != GRPC_CALL_OK { CompletionTag.cancel(pointer) }
    }

    private func authCheck(for path: String) -> BearerTokenCheck? {
        guard let token = config.bearerToken else { return nil }
        let service = path.split(separator: "/").first.map(String.init) ?? ""
        return config.unauthenticatedServices.contains(service) ? nil : BearerTokenCheck(tokens: [token] + config.extraBearerTokens)
    }
}

/// Core's handle for a registered method: an opaque token, valid as long as the server.
private struct RegisteredMethod: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer
}

/// Heap out-parameters of one request_call: core fills them in when a call arrives.
private final class IncomingCall: @unchecked Sendable {
    // Written by core before the tag fires, read once on the queue thread afterwards.
    let call = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 1)
    let deadline = UnsafeMutablePointer<gpr_timespec>.allocate(capacity: 1)
    let metadata = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
    let payload = UnsafeMutablePointer<UnsafeMutablePointer<grpc_byte_buffer>?>.allocate(capacity: 1)
    let details = UnsafeMutablePointer<grpc_call_details>.allocate(capacity: 1)

    init() {
        call.initialize(to: nil)
        deadline.initialize(to: gpr_timespec())
        grpc_metadata_array_init(metadata)
        payload.initialize(to: nil)
        grpc_call_details_init(details)
    }

    /// The request message delivered with the call; nil when the client sent none.
    func takePayload() -> [UInt8]?? {
        guard let buffer = payload.pointee else { return .some(nil) }
        defer { grpc_byte_buffer_destroy(buffer); payload.pointee = nil }
        return readByteBuffer(buffer).map { .some($0) } ?? nil  // nil: unreadable
    }

    deinit {
        grpc_metadata_array_destroy(metadata)
        if let buffer = payload.pointee { grpc_byte_buffer_destroy(buffer) }
        grpc_call_details_destroy(details)
        call.deallocate(); deadline.deallocate(); metadata.deallocate(); payload.deallocate(); details.deallocate()
    }
}

private final class DrainFlag: Sendable {
    let done = Atomic(false)
}

/// Owns the grpc_server pointer.
private final class ServerHandle: @unchecked Sendable {
    // grpc_server functions are thread-safe; destroy happens once, after shutdown completed.
    let pointer: OpaquePointer
    private let destroyed = Atomic(false)

    init(_ pointer: OpaquePointer) { self.pointer = pointer }

    func destroy() {
        if !destroyed.exchange(true, ordering: .acquiringAndReleasing) { grpc_server_destroy(pointer) }
    }
}
