import CGRPCShim
import Synchronization

/// How a client channel connects.
public struct ChannelConfig: Sendable {
    /// "host:port" (or any gRPC target URI, e.g. "ipv4:127.0.0.1:5000").
    public var target: String
    public var tls: ClientTLS?
    /// Sent as `authorization: Bearer TOKEN` on every call.
    public var bearerToken: String?
    /// Largest message sent or received, in bytes.
    public var maxMessageBytes = 64 << 20
    /// Upper bound on the wait between reconnection attempts after the peer goes away (gRPC backs off
    /// exponentially up to this). Short by default: Radial's peers are usually on the same network.
    public var maxReconnectBackoff: Duration = .seconds(2)

    public init(target: String, tls: ClientTLS? = nil, bearerToken: String? = nil) {
        self.target = target
        self.tls = tls
        self.bearerToken = bearerToken
    }
}

/// Per-call settings.
public struct CallOptions: Sendable {
    /// The call fails with DEADLINE_EXCEEDED after this long (and the server sees the deadline).
    public var timeout: Duration?
    public var metadata = Metadata()
    /// Wait for the channel to (re)connect instead of failing at once with UNAVAILABLE while it is down.
    public var waitForReady = false

    public init(timeout: Duration? = nil, metadata: Metadata = Metadata(), waitForReady: Bool = false) {
        self.timeout = timeout
        self.metadata = metadata
        self.waitForReady = waitForReady
    }
}

/// A client connection to one server (gRPC core reconnects it by itself when the peer restarts). Thread-safe;
/// share one per peer.
public final class RPCChannel: Sendable {
    public let config: ChannelConfig
    // grpc_channel is thread-safe; the pointer never changes after init.
    private let handle: ChannelHandle
    private let queue: CompletionQueue

    public init(_ config: ChannelConfig) {
        GRPCLibrary.ensureInitialised()
        self.config = config
        var args: [(String, ChannelArguments.Value)] = [
            ("grpc.max_receive_message_length", .int(config.maxMessageBytes)),
            ("grpc.max_send_message_length", .int(config.maxMessageBytes)),
            ("grpc.max_reconnect_backoff_ms", .int(Int(config.maxReconnectBackoff.milliseconds))),
            ("grpc.initial_reconnect_backoff_ms", .int(min(100, Int(config.maxReconnectBackoff.milliseconds)))),
            ("grpc.min_reconnect_backoff_ms", .int(min(100, Int(config.maxReconnectBackoff.milliseconds)))),
        ]
        if let name = config.tls?.serverNameOverride { args.append(("grpc.ssl_target_name_override", .string(name))) }
        let cArgs = ChannelArguments(args)
        let credentials = config.tls?.credentials() ?? grpc_insecure_credentials_create()
        let channel = grpc_channel_create(config.target, credentials, cArgs.pointer)!
        grpc_channel_credentials_release(credentials)
        handle = ChannelHandle(channel)
        queue = ClientQueues.shared
    }

    /// A unary call with raw message bytes.
    public func unary(_ method: String, request: [UInt8], options: CallOptions = CallOptions()) async throws -> [UInt8] {
        try await unary(method, message: OutgoingMessage(bytes: request), options: options)
    }

    func unary(_ method: String, message request: OutgoingMessage, options: CallOptions) async throws -> [UInt8] {
        let call = try makeCall(method, options: options)
        let batch = Batch()
        batch.sendInitialMetadata(outgoingMetadata(options), flags: options.waitForReady ? rgs_flag_wait_for_ready() : 0)
        batch.sendMessage(request)
        batch.sendCloseFromClient()
        batch.receiveInitialMetadata()
        batch.receiveMessage()
        batch.receiveStatusOnClient()
        let result = await withTaskCancellationHandler {
            // Unchecked: `start` calls its completion exactly once (from the tag, or at once when refused).
            await withUnsafeContinuation { continuation in
                batch.start(on: call) { continuation.resume(returning: $0) }
                // A cancel that came before the batch started found nothing to stop; stop it now.
                if Task.isCancelled { call.cancel() }
            }
        } onCancel: {
            call.cancel()
        }
        let status = result.status ?? RPCError(.internal, "no status received")
        guard status.code == .ok else { throw status }
        if result.messageUnreadable { throw RPCError(.internal, "the response message could not be read") }
        guard let message = result.message else { throw RPCError(.internal, "the server sent OK without a response message") }
        return message
    }

    /// A server-streaming call: one request, a sequence of responses. Iterate the result; leaving the loop early
    /// (or cancelling the task) cancels the call.
    public func serverStreaming(_ method: String, request: [UInt8], options: CallOptions = CallOptions()) throws -> ResponseStream {
        try serverStreaming(method, message: OutgoingMessage(bytes: request), options: options)
    }

    func serverStreaming(_ method: String, message request: OutgoingMessage, options: CallOptions) throws -> ResponseStream {
        let call = try makeCall(method, options: options)
        let batch = Batch()
        batch.sendInitialMetadata(outgoingMetadata(options), flags: options.waitForReady ? rgs_flag_wait_for_ready() : 0)
        batch.sendMessage(request)
        batch.sendCloseFromClient()
        let stream = ResponseStream(call: call)
        batch.start(on: call) { _ in }  // a failure here shows up in the receive ops and the final status
        return stream
    }

    /// Closes the channel: calls still running fail with CANCELLED or UNAVAILABLE.
    public func close() { handle.destroy() }

    private func makeCall(_ method: String, options: CallOptions) throws -> CallHandle {
        let micros = options.timeout.map { max(0, $0.microseconds) } ?? -1
        let deadline = rgs_deadline_after_micros(micros)
        let cq = queue.cq
        guard let call = handle.withChannel({ channel, registered in
            if let registered = registered(method) {
                return grpc_channel_create_registered_call(channel, nil, 0, cq, registered, deadline, nil).map(CallHandle.init)
            }
            let path = grpc_slice_from_copied_string(method)
            defer { grpc_slice_unref(path) }
            return grpc_channel_create_call(channel, nil, 0, cq, path, nil, deadline, nil).map(CallHandle.init)
        }) else {
            throw RPCError(.unavailable, "the channel to \(config.target) is closed")
        }
        return call
    }

    private func outgoingMetadata(_ options: CallOptions) -> Metadata {
        var metadata = options.metadata
        if let token = config.bearerToken { metadata.add("authorization", "Bearer \(token)") }
        return metadata
    }
}

/// The responses of a server-streaming call, as an async sequence; throws RPCError when the call ends with a
/// status other than OK.
public final class ResponseStream: AsyncSequence, Sendable {
    public typealias Element = [UInt8]
    private let call: CallHandle
    private let state = Mutex(State())

    private struct State {
        var headersRequested = false
        var finished = false
    }

    init(call: CallHandle) { self.call = call }

    public func makeAsyncIterator() -> Iterator { Iterator(stream: self) }

    public struct Iterator: AsyncIteratorProtocol {
        let stream: ResponseStream
        public mutating func next() async throws -> [UInt8]? { try await stream.next() }
    }

    /// Cancels the call (the server's handler sees the cancellation).
    public func cancel() { call.cancel() }

    func next() async throws -> [UInt8]? {
        let (first, done) = state.withLock { s -> (Bool, Bool) in
            defer { s.headersRequested = true }
            return (!s.headersRequested, s.finished)
        }
        if done { return nil }
        let batch = Batch()
        if first { batch.receiveInitialMetadata() }
        batch.receiveMessage()
        let result = await withTaskCancellationHandler {
            // Unchecked: `start` calls its completion exactly once (from the tag, or at once when refused).
            await withUnsafeContinuation { continuation in
                batch.start(on: call) { continuation.resume(returning: $0) }
                if Task.isCancelled { call.cancel() }  // cancelled before the batch started
            }
        } onCancel: { [call] in call.cancel() }
        if let message = result.message { return message }
        if result.messageUnreadable {
            call.cancel()
            state.withLock { $0.finished = true }
            throw RPCError(.internal, "a response message could not be read")
        }
        // End of stream: the status says whether it ended well.
        let statusBatch = Batch()
        statusBatch.receiveStatusOnClient()
        let status = (await statusBatch.run(on: call)).status ?? RPCError(.internal, "no status received")
        state.withLock { $0.finished = true }
        if status.code != .ok { throw status }
        return nil
    }

    deinit {
        // Abandoned before the end: tell the server.
        if !state.withLock({ $0.finished }) { call.cancel() }
    }
}

/// Owns the grpc_channel pointer; calls are created under the lock so none starts on a destroyed channel.
private final class ChannelHandle: @unchecked Sendable {
    // Only used while the lock is held and `closed` is false.
    private let channel: OpaquePointer
    private let state = Mutex(State())

    private struct State {
        var closed = false
        /// Methods registered with core (grpc_channel_register_call): core then builds each call's path once,
        /// not per call from a C string. Bounded, since registrations live as long as the channel.
        var registered: [String: UnsafeMutableRawPointer] = [:]
    }

    private static let maxRegisteredMethods = 256

    init(_ channel: OpaquePointer) { self.channel = channel }

    /// Runs `body` with the channel and a function giving a method's registration handle (nil past the bound:
    /// call it unregistered).
    func withChannel(_ body: (OpaquePointer, (String) -> UnsafeMutableRawPointer?) -> CallHandle?) -> CallHandle? {
        state.withLock { state in
            if state.closed { return nil }
            return body(channel) { method in
                if let handle = state.registered[method] { return handle }
                guard state.registered.count < Self.maxRegisteredMethods,
                      let handle = grpc_channel_register_call(channel, method, nil, nil) else { return nil }
                state.registered[method] = handle
                return handle
            }
        }
    }

    func destroy() {
        state.withLock { state in
            if !state.closed { state.closed = true; grpc_channel_destroy(channel) }
        }
    }

    deinit { destroy() }
}

/// All client calls in a process complete on one queue: its thread only resumes continuations, so one is plenty.
enum ClientQueues {
    static let shared = CompletionQueue(name: "radial-rpc-cli")
}

/// The executor of the client completion queue's thread. A task that makes RPCs in a loop and does little else
/// between them (a benchmark, a scheduler step) runs faster with this preference: each reply then resumes it on
/// the thread that received it, with no thread wake-up (`Task(executorPreference: RPCClientExecutor.shared)`).
/// Do not compute for long there: that thread does every client call's I/O.
public enum RPCClientExecutor {
    public static var shared: any TaskExecutor { ClientQueues.shared }
}

extension Duration {
    var microseconds: Int64 { components.seconds * 1_000_000 + components.attoseconds / 1_000_000_000_000 }
    var milliseconds: Int64 { microseconds / 1000 }
}
