/// gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html), the same numbers as C core's
/// `grpc_status_code`.
public enum StatusCode: Int32, Sendable, CustomStringConvertible, CaseIterable {
    case ok = 0
    case cancelled = 1
    case unknown = 2
    case invalidArgument = 3
    case deadlineExceeded = 4
    case notFound = 5
    case alreadyExists = 6
    case permissionDenied = 7
    case resourceExhausted = 8
    case failedPrecondition = 9
    case aborted = 10
    case outOfRange = 11
    case unimplemented = 12
    case `internal` = 13
    case unavailable = 14
    case dataLoss = 15
    case unauthenticated = 16

    public init(wire: Int32) { self = StatusCode(rawValue: wire) ?? .unknown }

    /// The canonical upper-case name, as grpcurl and other gRPC tools print it.
    public var description: String {
        switch self {
        case .ok: "OK"
        case .cancelled: "CANCELLED"
        case .unknown: "UNKNOWN"
        case .invalidArgument: "INVALID_ARGUMENT"
        case .deadlineExceeded: "DEADLINE_EXCEEDED"
        case .notFound: "NOT_FOUND"
        case .alreadyExists: "ALREADY_EXISTS"
        case .permissionDenied: "PERMISSION_DENIED"
        case .resourceExhausted: "RESOURCE_EXHAUSTED"
        case .failedPrecondition: "FAILED_PRECONDITION"
        case .aborted: "ABORTED"
        case .outOfRange: "OUT_OF_RANGE"
        case .unimplemented: "UNIMPLEMENTED"
        case .internal: "INTERNAL"
        case .unavailable: "UNAVAILABLE"
        case .dataLoss: "DATA_LOSS"
        case .unauthenticated: "UNAUTHENTICATED"
        }
    }
}

/// A call that ended with a status other than OK: thrown by clients, and thrown by server handlers to choose the
/// status the client sees. Any other error a handler throws reaches the client as UNKNOWN.
public struct RPCError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: StatusCode
    public var message: String

    public init(_ code: StatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }

    public static func invalidArgument(_ message: String) -> RPCError { RPCError(.invalidArgument, message) }
    public static func failedPrecondition(_ message: String) -> RPCError { RPCError(.failedPrecondition, message) }
    public static func notFound(_ message: String) -> RPCError { RPCError(.notFound, message) }
    public static func resourceExhausted(_ message: String) -> RPCError { RPCError(.resourceExhausted, message) }
    public static func unavailable(_ message: String) -> RPCError { RPCError(.unavailable, message) }
    public static func `internal`(_ message: String) -> RPCError { RPCError(.internal, message) }

    /// The status a handler's error turns into on the wire.
    static func from(handlerError error: any Error) -> RPCError {
        if let rpc = error as? RPCError { return rpc }
        if error is CancellationError { return RPCError(.cancelled, "the call was cancelled") }
        return RPCError(.unknown, String(describing: error))
    }
}
