import Foundation
import RadialProtocol
import RadialRPC

/// Process-level plumbing of the servers: the "listening on" line scripts wait for, and timestamped log lines on
/// standard error.
public enum Serving {
    /// The executable's name, for log and error lines.
    public static let program = CommandLine.arguments.first.map { ($0 as NSString).lastPathComponent } ?? "radial"

    /// Prints "listening on HOST:PORT" on standard output once bound (port 0 in `listen` becomes the real port).
    public static func announce(listen: String, port: Int) {
        let host = listen.split(separator: ":").dropLast().joined(separator: ":")
        FileHandle.standardOutput.write(Data("listening on \(host):\(port)\n".utf8))
        FileHandle.standardOutput.synchronizeFile()
    }

    /// One log line on standard error: time, program, message.
    public static func log(_ message: String) {
        let stamp = ISO8601DateFormatter.string(from: Date(), timeZone: .current,
                                                formatOptions: [.withTime, .withColonSeparatorInTime, .withFractionalSeconds])
        FileHandle.standardError.write(Data("\(stamp) \(program): \(message)\n".utf8))
    }

    /// What every Radial server does around its own service: grpc.health.v1 (reporting `service` SERVING) and
    /// radial.Diagnostics on `server`, start it (exit 1 with a clear message if it cannot bind), print the listening
    /// line; then wait for SIGTERM or SIGINT, log it with `stopping` (what the process does next), and report
    /// NOT_SERVING so probes and load balancers stop sending work. The caller drains and shuts down.
    public static func serveUntilSignal(_ server: RPCServer, listen: String, service: String, stopping: String) async {
        let health = HealthService()
        health.set(service, .serving)
        health.register(on: server)
        DiagnosticsService().register(on: server)
        let port: Int
        do { port = try server.start() } catch { exitWithRPCError(error, "listen on \(listen)") }
        announce(listen: listen, port: port)
        let signal = await TerminationSignal.wait()
        log("signal \(signal): \(stopping)")
        health.enterShutdown()
    }

    /// Prints a fatal error and exits 1.
    public static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("\(program): error: \(message)\n".utf8))
        exit(1)
    }
}

/// The release every binary reports with --version (with the wire protocol it speaks).
public enum RadialRelease {
    public static let version = "0.5.0"
    public static var description: String { "\(version) (protocol \(ProtocolVersion.current))" }
}
