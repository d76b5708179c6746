import CRadialProto
import RadialRPC
import Synchronization

/// Full method paths of Radial's services, as on the wire.
public enum Method {
    public static let workerInfo = "/radial.Worker/Info"
    public static let workerForward = "/radial.Worker/Forward"
    public static let workerCloseSession = "/radial.Worker/CloseSession"
    public static let workerRestoreSession = "/radial.Worker/RestoreSession"
    public static let workerAdoptSession = "/radial.Worker/AdoptSession"
    public static let workerConfigure = "/radial.Worker/Configure"
    public static let generate = "/radial.Coordinator/Generate"
    public static let status = "/radial.Coordinator/Status"
    public static let tokenize = "/radial.Coordinator/Tokenize"
    public static let echo = "/radial.Diagnostics/Echo"
    public static let echoStream = "/radial.Diagnostics/EchoStream"
    public static let healthCheck = "/grpc.health.v1.Health/Check"
    public static let healthWatch = "/grpc.health.v1.Health/Watch"
}

// MARK: Diagnostics

public struct EchoRequest: WireMessage, Equatable {
    public var payload: [UInt8]
    /// Reply with this many bytes instead of the payload (0: echo the payload).
    public var replyBytes: Int
    public var streamCount: Int
    public var delayMilliseconds: Int

    public init(payload: [UInt8] = [], replyBytes: Int = 0, streamCount: Int = 0, delayMilliseconds: Int = 0) {
        self.payload = payload
        self.replyBytes = replyBytes
        self.streamCount = streamCount
        self.delayMilliseconds = delayMilliseconds
    }

    /// The largest reply Echo makes: the default message limit of Radial's servers and channels.
    public static let maxReplyBytes: UInt32 = 64 << 20

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "EchoRequest", radial__echo_request__unpack, radial__echo_request__free_unpacked) { m in
            // A reply larger than a message may be could not be sent anyway; asking for one must not cost memory.
            guard m.reply_bytes <= Self.maxReplyBytes else {
                throw invalid("EchoRequest.reply_bytes", "\(m.reply_bytes) is over the \(Self.maxReplyBytes)-byte message limit")
            }
            guard m.delay_ms <= 60_000 else { throw invalid("EchoRequest.delay_ms", "\(m.delay_ms) is over 60000") }
            return EchoRequest(payload: bytes(m.payload), replyBytes: Int(m.reply_bytes), streamCount: Int(m.stream_count),
                               delayMilliseconds: Int(m.delay_ms))
        }
    }

    public func wireBytes() -> [UInt8] { wireBytesFromWriter() }

    public func withWireWriter<R>(_ body: (_ size: Int, _ write: (UnsafeMutableRawPointer) -> Void) -> R) -> R {
        payload.withUnsafeBufferPointer { payload in
            var m = Radial__EchoRequest()
            radial__echo_request__init(&m)
            m.payload = borrowed(payload)
            m.reply_bytes = UInt32(replyBytes)
            m.stream_count = UInt32(streamCount)
            m.delay_ms = UInt32(delayMilliseconds)
            return packing(m, body)
        }
    }
}

public struct EchoReply: WireMessage, Equatable {
    public var payload: [UInt8]
    public var index: Int

    public init(payload: [UInt8], index: Int = 0) {
        self.payload = payload
        self.index = index
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "EchoReply", radial__echo_reply__unpack, radial__echo_reply__free_unpacked) { m in
            EchoReply(payload: bytes(m.payload), index: Int(m.index))
        }
    }

    public func wireBytes() -> [UInt8] { wireBytesFromWriter() }

    public func withWireWriter<R>(_ body: (_ size: Int, _ write: (UnsafeMutableRawPointer) -> Void) -> R) -> R {
        payload.withUnsafeBufferPointer { payload in
            var m = Radial__EchoReply()
            radial__echo_reply__init(&m)
            m.payload = borrowed(payload)
            m.index = UInt32(index)
            return packing(m, body)
        }
    }
}

/// radial.Diagnostics: echo for latency probes and the transport benchmark. Every Radial server has it.
public final class DiagnosticsService: Sendable {
    /// Calls whose handler saw its call cancelled (client cancel or deadline): what the tests look at.
    public let cancelledCalls = Atomic(0)
    /// Handlers that have begun a requested delay, ever: tests wait on it to know a call is inside its handler
    /// (a count of delays in progress could be back at zero before a late poller looks).
    public let delayedCalls = Atomic(0)
    public let maxStreamCount = 100_000

    public init() {}

    public func register(on server: RPCServer) {
        // Without a delay Echo answers inline: what the transport benchmark measures.
        let reply: @Sendable (EchoRequest) -> EchoReply = { request in
            EchoReply(payload: request.replyBytes > 0 ? [UInt8](repeating: 0x5A, count: request.replyBytes) : request.payload)
        }
        server.addUnary(Method.echo, EchoRequest.self, inline: { request, _ in
            request.delayMilliseconds > 0 ? nil : reply(request)
        }) { [self] request, context in
            try await delay(request, context)
            return reply(request)
        }
        server.addServerStreaming(Method.echoStream, EchoRequest.self, response: EchoReply.self) { [self] request, context, out in
            guard request.streamCount <= maxStreamCount else {
                throw RPCError.invalidArgument("EchoRequest.stream_count: at most \(maxStreamCount)")
            }
            for i in 0..<request.streamCount {
                try await delay(request, context)
                try await out.send(EchoReply(payload: request.payload, index: i))
            }
        }
    }

    private func delay(_ request: EchoRequest, _ context: ServerContext) async throws {
        guard request.delayMilliseconds > 0 else { return }
        delayedCalls.add(1, ordering: .relaxed)
        do {
            try await Task.sleep(for: .milliseconds(request.delayMilliseconds))
        } catch {
            cancelledCalls.add(1, ordering: .relaxed)
            throw error
        }
    }
}

// MARK: Health (grpc.health.v1)

public enum ServingStatus: Int, Sendable {
    case unknown = 0, serving = 1, notServing = 2, serviceUnknown = 3
}

public struct HealthCheckRequest: WireMessage, Equatable {
    public var service: String
    public init(service: String = "") { self.service = service }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "HealthCheckRequest", grpc__health__v1__health_check_request__unpack,
                          grpc__health__v1__health_check_request__free_unpacked) { HealthCheckRequest(service: text($0.service)) }
    }

    public func wireBytes() -> [UInt8] {
        let arena = Arena()
        var m = Grpc__Health__V1__HealthCheckRequest()
        grpc__health__v1__health_check_request__init(&m)
        m.service = arena.string(service)
        return pack(m)
    }
}

public struct HealthCheckResponse: WireMessage, Equatable {
    public var status: ServingStatus
    public init(status: ServingStatus) { self.status = status }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "HealthCheckResponse", grpc__health__v1__health_check_response__unpack,
                          grpc__health__v1__health_check_response__free_unpacked) {
            HealthCheckResponse(status: ServingStatus(rawValue: Int($0.status.rawValue)) ?? .unknown)
        }
    }

    public func wireBytes() -> [UInt8] {
        var m = Grpc__Health__V1__HealthCheckResponse()
        grpc__health__v1__health_check_response__init(&m)
        m.status = Grpc__Health__V1__HealthCheckResponse__ServingStatus(rawValue: UInt32(status.rawValue))
        return pack(m)
    }
}

/// The standard health service: "" is the whole server; services are set by name ("radial.Worker", ...).
/// Check answers NOT_FOUND for a service it does not know; Watch streams each change until the client leaves.
public final class HealthService: Sendable {
    private let state = Mutex(State())

    private struct State {
        var statuses: [String: ServingStatus] = ["": .serving]
        var watchers: [Int: (service: String, continuation: AsyncStream<ServingStatus>.Continuation)] = [:]
        var nextWatcher = 0
    }

    public init() {}

    public func set(_ service: String, _ status: ServingStatus) {
        let toNotify = state.withLock { s -> [AsyncStream<ServingStatus>.Continuation] in
            s.statuses[service] = status
            return s.watchers.values.filter { $0.service == service }.map(\.continuation)
        }
        for c in toNotify { c.yield(status) }
    }

    /// Every service NOT_SERVING: what a server says while it drains on shutdown.
    public func enterShutdown() {
        let services = state.withLock { Array($0.statuses.keys) }
        for service in services { set(service, .notServing) }
    }

    public func status(of service: String) -> ServingStatus? { state.withLock { $0.statuses[service] } }

    public func register(on server: RPCServer) {
        server.addUnarySync(Method.healthCheck, HealthCheckRequest.self) { [self] request, _ in
            guard let status = status(of: request.service) else {
                throw RPCError.notFound("unknown service \"\(request.service)\"")
            }
            return HealthCheckResponse(status: status)
        }
        server.addServerStreaming(Method.healthWatch, HealthCheckRequest.self, response: HealthCheckResponse.self) { [self] request, _, out in
            let (stream, continuation) = AsyncStream.makeStream(of: ServingStatus.self, bufferingPolicy: .bufferingNewest(1))
            let id = state.withLock { s -> Int in
                defer { s.nextWatcher += 1 }
                s.watchers[s.nextWatcher] = (request.service, continuation)
                continuation.yield(s.statuses[request.service] ?? .serviceUnknown)
                return s.nextWatcher
            }
            defer { state.withLock { _ = $0.watchers.removeValue(forKey: id) } }
            var last: ServingStatus?
            for await status in stream where status != last {
                try await out.send(HealthCheckResponse(status: status))
                last = status
            }
            try Task.checkCancellation()
        }
    }
}
