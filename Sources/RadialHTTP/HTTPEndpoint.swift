import Foundation
import Hummingbird
import Logging
import Metrics
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization

/// Prometheus metrics for the whole process: swift-metrics' API everywhere (counters, timers, gauges in the
/// coordinator and worker modules), one Prometheus registry behind it, read at `GET /metrics`.
public enum ProcessMetrics {
    private static let registry = PrometheusCollectorRegistry()

    /// Sends every swift-metrics handle created from now on to the Prometheus registry (call once, first).
    public static func bootstrap() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // Per-token and per-call latencies span ~100 µs (loopback RTT) to seconds (a long prefill).
        factory.defaultDurationHistogramBuckets = [
            .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1), .milliseconds(2.5), .milliseconds(5),
            .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
            .seconds(1), .seconds(2.5), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
        ]
        factory.valueHistogramBuckets["radial_hops_per_token"] = [0, 1, 2, 3, 4, 6, 8, 12, 16]
        MetricsSystem.bootstrap(factory)
    }

    /// The exposition text (Prometheus text format 0.0.4).
    public static func exposition() -> [UInt8] { registry.emitToBuffer() }

    /// `GET /metrics` on `router`; `refresh` sets point-in-time gauges (queue depth, memory) just before each read.
    public static func addRoute(to router: Router<BasicRequestContext>, refresh: @escaping @Sendable () -> Void) {
        router.get("/metrics") { _, _ in
            refresh()
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                            body: .init(byteBuffer: ByteBuffer(bytes: exposition())))
        }
    }
}

/// An HTTP server (Hummingbird) beside a process's gRPC server: started and stopped by the process, not by
/// signals of its own (the process already handles SIGTERM and drains in its own order).
public final class HTTPEndpoint: Sendable {
    private let group: ServiceGroup
    private let running: Task<Void, any Error>
    /// The port it listens on (the real one when asked for port 0).
    public let port: Int

    /// Starts serving `router` on HOST:PORT; throws when it cannot listen there.
    public init(router: Router<BasicRequestContext>, listen: String) async throws {
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]) else {
            throw HTTPEndpointError("listen address must be HOST:PORT, got '\(listen)'")
        }
        let host = String(listen[..<colon]).trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        let bound = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname(host, port: port), serverName: "radial"),
                              onServerRunning: { channel in
                                  bound.continuation.yield(channel.localAddress?.port ?? port)
                                  bound.continuation.finish()
                              },
                              logger: Logger(label: "http"))
        let group = ServiceGroup(configuration: .init(services: [app], logger: Logger(label: "http")))
        self.group = group
        running = Task {
            defer { bound.continuation.finish() }
            try await group.run()
        }
        var first = bound.stream.makeAsyncIterator()
        guard let actual = await first.next() else {
            do { try await running.value } catch { throw HTTPEndpointError("cannot listen on \(listen) (HTTP): \(error)") }
            throw HTTPEndpointError("cannot listen on \(listen) (HTTP)")
        }
        self.port = actual
    }

    /// Stops accepting connections and lets requests in progress finish.
    public func shutdown() async {
        await group.triggerGracefulShutdown()
        _ = try? await running.value
    }
}

public struct HTTPEndpointError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
