import CGRPCShim
import Synchronization

/// gRPC core's own log lines (connection failures, bad handshakes, …), handed to the process's logger instead of
/// gRPC's default `E1201 12:00:00.000 chttp2_server.cc:…` lines on standard error. Which lines arrive is still
/// gRPC's choice: GRPC_VERBOSITY (DEBUG, INFO or ERROR; gRPC's default is ERROR) is honoured.
public enum GRPCCoreLog {
    public enum Severity: Sendable { case debug, info, error }
    public typealias Sink = @Sendable (_ severity: Severity, _ file: String, _ line: Int, _ message: String) -> Void

    private static let sink = Mutex<Sink?>(nil)

    /// Routes every line gRPC core logs from now on to `sink` (call once, early; later calls replace the sink).
    public static func route(to sink: @escaping Sink) {
        Self.sink.withLock { $0 = sink }
        gpr_set_log_function { args in
            guard let args, let route = GRPCCoreLog.sink.withLock({ $0 }) else { return }
            let a = args.pointee
            let severity: Severity = a.severity == GPR_LOG_SEVERITY_ERROR ? .error : a.severity == GPR_LOG_SEVERITY_INFO ? .info : .debug
            let file = a.file.map { String(cString: $0) } ?? "?"
            route(severity, file, Int(a.line), a.message.map { String(cString: $0) } ?? "")
        }
    }
}
