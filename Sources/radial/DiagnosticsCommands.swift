import ArgumentParser
import RadialCommandLine
import Foundation
import RadialProtocol
import RadialRPC

/// `radial serve-echo`: a Diagnostics + Health server and nothing else, for measuring the network path between
/// two nodes (and for the transport's own tests and benchmark).
struct ServeEchoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve-echo",
        abstract: "Serve radial.Diagnostics (echo) and grpc.health.v1.Health until SIGTERM.",
        usage: "radial serve-echo [<options>]",
        discussion: """
            Prints 'listening on HOST:PORT' once bound (port 0 picks a free port). Pair with `radial rpc-bench`.

            Example:
              radial serve-echo --listen 127.0.0.1:7070
            """)

    @Option(name: .long, help: "HOST:PORT to listen on.")
    var listen = "127.0.0.1:0"
    @OptionGroup var security: ServerSecurityOptions

    func run() async throws {
        let server = RPCServer(config: try security.serverConfig(address: listen))
        await Serving.serveUntilSignal(server, listen: listen, service: "radial.Diagnostics", stopping: "draining")
        await server.shutdown(grace: .seconds(5))
    }
}

/// `radial health`: grpc.health.v1 Check against any server, like grpc_health_probe.
struct HealthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Ask a server's grpc.health.v1.Health service; exit 0 only when SERVING.",
        usage: "radial health <target> [<options>]")

    @Argument(help: "HOST:PORT of the server.")
    var target: String
    @Option(name: .long, help: "Service name to ask about (empty: the whole server).")
    var service = ""
    @Option(name: .long, help: "Give up after this many seconds.")
    var timeout: Double = 5
    @OptionGroup var security: ClientSecurityOptions

    func run() async throws {
        let channel = RPCChannel(try security.channelConfig(target: target))
        do {
            let reply = try await channel.unary(Method.healthCheck, HealthCheckRequest(service: service),
                                                response: HealthCheckResponse.self,
                                                options: CallOptions(timeout: .milliseconds(Int(timeout * 1000)), waitForReady: true))
            print(reply.status)
            if reply.status != .serving { throw ExitCode(2) }
        } catch let error as RPCError {
            exitWithRPCError(error, "health \(target)")
        }
    }
}

/// `radial rpc-bench`: unary round trips against a radial.Diagnostics server.
struct RPCBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rpc-bench",
        abstract: "Measure unary round-trip latency (p50, p99) and calls/s against radial.Diagnostics/Echo.",
        usage: "radial rpc-bench <target> [<options>]",
        discussion: """
            Every combination of --sizes and --concurrency is measured in turn.

            Example:
              radial rpc-bench 127.0.0.1:7070 --sizes 2048,262144 --concurrency 1,16
            """)

    @Argument(help: "HOST:PORT of a server with radial.Diagnostics (radial serve-echo, a worker, a coordinator).")
    var target: String
    @Option(name: .customLong("sizes"), parsing: .upToNextOption, help: ArgumentHelp(
        "Payload sizes in bytes, sent and echoed back, comma-separated.", valueName: "bytes,..."))
    var sizeLists = [NumberList<Int>([2048, 262_144])]
    @Option(name: .customLong("concurrency"), parsing: .upToNextOption, help: ArgumentHelp(
        "Calls in flight at once, comma-separated.", valueName: "n,..."))
    var concurrencyLists = [NumberList<Int>([1, 16])]
    @Option(name: .long, help: "Measured calls per configuration (after 10% warm-up).")
    var calls = 2000
    @Flag(name: .long, help: "Print one JSON object per configuration.")
    var json = false
    @OptionGroup var security: ClientSecurityOptions

    var sizes: [Int] { sizeLists.joined() }
    var concurrency: [Int] { concurrencyLists.joined() }

    func validate() throws {
        guard calls > 0, sizes.allSatisfy({ $0 >= 0 && $0 <= 64 << 20 }), concurrency.allSatisfy({ $0 >= 1 && $0 <= 1024 }) else {
            throw ValidationError("--calls > 0, sizes within 0...64 MiB, concurrency within 1...1024")
        }
    }

    func run() async throws {
        let channel = RPCChannel(try security.channelConfig(target: target))
        if !json { print("size_bytes  in_flight   calls   p50_us   p99_us   calls_per_s") }
        for size in sizes {
            for inFlight in concurrency {
                let request = EchoRequest(payload: [UInt8](repeating: 7, count: size))
                do {
                    _ = try await measure(channel, request, calls: max(20, calls / 10), inFlight: inFlight)  // warm-up
                    let (latencies, seconds) = try await measure(channel, request, calls: calls, inFlight: inFlight)
                    let sorted = latencies.sorted()
                    let p50 = sorted[sorted.count / 2] * 1e6, p99 = sorted[min(sorted.count - 1, sorted.count * 99 / 100)] * 1e6
                    let rate = Double(calls) / seconds
                    if json {
                        try printJSON(["impl": "radial-swift", "size_bytes": size, "in_flight": inFlight, "calls": calls,
                                   "p50_us": p50, "p99_us": p99, "calls_per_s": rate])
                    } else {
                        print(String(format: "%10d  %9d  %6d  %7.1f  %7.1f  %12.0f", size, inFlight, calls, p50, p99, rate))
                    }
                } catch {
                    exitWithRPCError(error, "rpc-bench \(target)")
                }
            }
        }
    }

    /// `calls` echo calls with `inFlight` workers; per-call latency and the wall time of the whole run.
    private func measure(_ channel: RPCChannel, _ request: EchoRequest, calls: Int, inFlight: Int) async throws -> ([Double], Double) {
        let bytes = request.wireBytes()
        let clock = ContinuousClock()
        let start = clock.now
        let latencies = try await withThrowingTaskGroup(of: [Double].self) { group in
            for worker in 0..<inFlight {
                let share = calls / inFlight + (worker < calls % inFlight ? 1 : 0)
                group.addTask(executorPreference: RPCClientExecutor.shared) {
                    var mine: [Double] = []
                    mine.reserveCapacity(share)
                    for _ in 0..<share {
                        let t0 = clock.now
                        let reply = try await channel.unary(Method.echo, request: bytes)
                        mine.append((clock.now - t0).seconds)
                        if reply.count < request.payload.count { throw RPCError(.dataLoss, "short echo: \(reply.count) bytes") }
                    }
                    return mine
                }
            }
            var all: [Double] = []
            for try await part in group { all += part }
            return all
        }
        return (latencies, (clock.now - start).seconds)
    }
}
