import Foundation
import Logging
import RadialProtocol
import RadialRPC

/// Process-level plumbing of the servers: the "listening on" line scripts wait for, and the process's log.
public enum Serving {
    /// The executable's name, for log and error lines.
    public static let program = CommandLine.arguments.first.map { ($0 as NSString).lastPathComponent } ?? "radial"

    /// Prints "listening on HOST:PORT" on standard output once bound (port 0 in `listen` becomes the real port);
    /// other servers of the process say what they are first ("http listening on …").
    public static func announce(listen: String, port: Int, what: String? = nil) {
        let host = listen.split(separator: ":").dropLast().joined(separator: ":")
        FileHandle.standardOutput.write(Data("\(what.map { "\($0) " } ?? "")listening on \(host):\(port)\n".utf8))
        FileHandle.standardOutput.synchronizeFile()
    }

    /// The process's logger, labelled with the program's name (see `LoggingOptions` for level and format).
    public static var logger: Logger { Logger(label: program) }

    /// One info line in the process's log.
    public static func log(_ message: String) {
        logger.info("\(message)")
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
        let termination = TerminationSignal.arm()  // before the announcement: a supervisor may signal right after it
        let port: Int
        do { port = try server.start() } catch { exitWithRPCError(error, "listen on \(listen)") }
        announce(listen: listen, port: port)
        let signal = await termination.wait()
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
