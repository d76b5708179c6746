import CGRPCShim
import Synchronization

/// What a handler knows about its call: method, request metadata, deadline, and whether the client has gone.
public final class ServerContext: Sendable {
    public let method: String
    public let metadata: Metadata
    /// When the client's deadline expires (nil: no deadline). Core also cancels the call at that moment.
    public let deadline: ContinuousClock.Instant?
    /// Who made the call, as far as the server can tell: which of its bearer tokens the call carried ("token 1",
    /// "token 2", …; see `ServerConfig.extraBearerTokens`), else, on a server that requires client certificates,
    /// the certificate's subject ("tls CN=…"). nil when the server tells no clients apart (no token, no client
    /// certificates, or a method open to all, as health checks are).
    public let principal: String?
    private let state = Mutex(CancelState())

    private struct CancelState {
        var cancelled = false
        var task: Task<Void, Never>?
    }

    init(method: String, metadata: Metadata, deadlineSeconds: Double, principal: String? = nil) {
        self.method = method
        self.metadata = metadata
        self.principal = principal
        deadline = deadlineSeconds.isFinite
            ? ContinuousClock.now.advanced(by: .microseconds(Int64(deadlineSeconds * 1e6))) : nil
    }

    /// True once the client cancelled, the deadline passed or the server is shutting down: the handler's Task is
    /// cancelled at the same moment, so `Task.isCancelled` and `try Task.checkCancellation()` work too.
    public var isCancelled: Bool { state.withLock { $0.cancelled } }

    /// Time left before the deadline (nil: none).
    public var timeRemaining: Duration? { deadline.map { ContinuousClock.now.duration(to: $0) } }

    func attach(_ task: Task<Void, Never>) {
        let cancelNow = state.withLock { s -> Bool in s.task = task; return s.cancelled }
        if cancelNow { task.cancel() }
    }

    func markCancelled() {
        let task = state.withLock { s -> Task<Void, Never>? in s.cancelled = true; return s.task }
        task?.cancel()
    }
}

/// Sends the responses of a server-streaming call. Await each `send` before the next.
public final class ResponseWriter: Sendable {
    private let call: CallHandle
    private let headersSent = Atomic(false)

    init(call: CallHandle) { self.call = call }

    /// Sends one response; throws CANCELLED when the client has gone away.
    public func send(_ message: [UInt8]) async throws { try await send(OutgoingMessage(bytes: message)) }

    func send(_ message: OutgoingMessage) async throws {
        let batch = Batch()
        if !headersSent.exchange(true, ordering: .acquiringAndReleasing) { batch.sendInitialMetadata(Metadata()) }
        batch.sendMessage(message)
        let result = await batch.run(on: call)
        if !result.success { throw RPCError(.cancelled, "the client is gone") }
    }

    func finish(_ status: RPCError) async {
        let batch = Batch()
        if !headersSent.exchange(true, ordering: .acquiringAndReleasing) { batch.sendInitialMetadata(Metadata()) }
        batch.sendStatus(status)
        _ = await batch.run(on: call)
    }
}

/// One accepted call on the server: watches for cancellation, checks auth, runs the handler, sends the status.
final class ServerCall: Sendable {
    let call: CallHandle
    let context: ServerContext

    init(call: CallHandle, context: ServerContext) {
        self.call = call
        self.context = context
    }

    /// `payload`: .some(bytes) the request, .some(nil) none sent, nil unreadable.
    func run(kind: MethodKind, payload: [UInt8]??, auth: BearerTokenCheck?) async {
        // RECV_CLOSE_ON_SERVER completes when the call is over; `cancelled` says the client (or the deadline, or
        // shutdown) ended it early.
        let close = Batch()
        close.receiveCloseOnServer()
        close.start(on: call) { [context] result in
            if result.cancelled || !result.success { context.markCancelled() }
        }

        let request: [UInt8]
        switch Self.admit(payload, auth: auth, context: context) {
        case .success(let bytes): request = bytes
        case .failure(let refusal): return await Self.reject(call, refusal, watchClose: false)
        }

        switch kind {
        case .unary(let handler):
            let batch = Batch()
            batch.sendInitialMetadata(Metadata())
            do {
                let response = try await handler(request, context)
                batch.sendMessage(response)
                batch.sendStatus(RPCError(.ok, ""))
            } catch {
                batch.sendStatus(context.isCancelled && error is CancellationError
                                 ? RPCError(.cancelled, "cancelled") : RPCError.from(handlerError: error))
            }
            _ = await batch.run(on: call)
        case .serverStreaming(let handler):
            let writer = ResponseWriter(call: call)
            do {
                try await handler(request, context, writer)
                await writer.finish(RPCError(.ok, ""))
            } catch {
                await writer.finish(RPCError.from(handlerError: error))
            }
        }
    }

    /// Tries a unary call's inline handler; true when the call was answered (reply or error), false when the
    /// handler wants its async path. The answer, the status and the receipt of the call's close go in one batch;
    /// `whenDone` runs once core has finished it (only when answered).
    static func answerInline(_ call: CallHandle, context: ServerContext, payload: [UInt8]??, auth: BearerTokenCheck?,
                             _ inline: EncodedInlineHandler, whenDone: @escaping @Sendable () -> Void) -> Bool {
        let batch = Batch()
        batch.sendInitialMetadata(Metadata())
        switch admit(payload, auth: auth, context: context) {
        case .failure(let refusal):
            batch.sendStatus(refusal)
        case .success(let request):
            do {
                guard let reply = try inline(request, context) else { return false }
                batch.sendMessage(reply)
                batch.sendStatus(RPCError(.ok, ""))
            } catch {
                batch.sendStatus(RPCError.from(handlerError: error))
            }
        }
        batch.receiveCloseOnServer()
        batch.start(on: call) { _ in whenDone() }
        return true
    }

    /// The request bytes, or the status that refuses the call before any handler runs: a failed token check, an
    /// unreadable message, or none. `payload`: .some(bytes) the request, .some(nil) none sent, nil unreadable.
    static func admit(_ payload: [UInt8]??, auth: BearerTokenCheck?, context: ServerContext) -> Result<[UInt8], RPCError> {
        if let auth, let error = auth.check(context.metadata) { return .failure(error) }
        guard let payload else { return .failure(.invalidArgument("the request message could not be read (bad compression?)")) }
        guard let request = payload else { return .failure(.invalidArgument("the call carried no request message")) }
        return .success(request)
    }

    /// Ends a call with an error status without running a handler.
    static func reject(_ call: CallHandle, _ status: RPCError, watchClose: Bool = true) async {
        let batch = Batch()
        batch.sendInitialMetadata(Metadata())
        batch.sendStatus(status)
        if watchClose {  // every server call needs its close received once, or core never frees it
            let close = Batch()
            close.receiveCloseOnServer()
            close.start(on: call) { _ in }
        }
        _ = await batch.run(on: call)
    }
}
