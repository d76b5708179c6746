import Metrics
import RadialModel
import RadialProtocol
import RadialRPC
import Synchronization

/// The coordinator's connection to one worker: its channel, what it said about itself at the handshake, and how
/// often and how fast the coordinator has called it.
public final class WorkerClient: Sendable {
    public let address: String
    public let info: WorkerInfo
    let channel: RPCChannel
    private let stats = Mutex(Stats())
    private let meters: Meters

    /// The same figures for Prometheus, labelled with the worker's address.
    struct Meters {
        let rtt, compute: Timer
        let sent, received, rows: Counter
        init(worker: String) {
            let d = [("worker", worker)]
            rtt = Timer(label: "radial_worker_rtt_seconds", dimensions: d)
            compute = Timer(label: "radial_worker_compute_seconds", dimensions: d)
            sent = Counter(label: "radial_worker_bytes_sent_total", dimensions: d)
            received = Counter(label: "radial_worker_bytes_received_total", dimensions: d)
            rows = Counter(label: "radial_worker_rows_total", dimensions: d)
        }
    }

    struct Stats {
        var visits: UInt64 = 0
        var tokenVisits: UInt64 = 0
        /// Token visits routing saved: rows of a batch that did not need this worker.
        var tokenVisitsSkipped: UInt64 = 0
        var latency = LatencyWindow()
        var healthy = true
        var bytesSent: UInt64 = 0
        var bytesReceived: UInt64 = 0
        /// Round trip minus the worker's own compute: network, serialisation and thread wake-ups per visit.
        var overhead = LatencyWindow()
    }

    init(address: String, channel: RPCChannel, info: WorkerInfo) {
        self.address = address
        self.channel = channel
        self.info = info
        meters = Meters(worker: address)
    }

    public var layers: LayerRange { info.layers }

    /// One Forward round trip; records its latency and the exact message bytes both ways (as gRPC got them: the
    /// request is encoded once, straight into gRPC's buffer).
    func forward(_ request: ForwardRequest, timeout: Duration) async throws -> ForwardReply {
        let clock = ContinuousClock(), start = clock.now
        let (reply, sent, received): (ForwardReply, Int, Int)
        do {
            (reply, sent, received) = try await channel.unaryCountingBytes(Method.workerForward, request, response: ForwardReply.self,
                                                                           options: CallOptions(timeout: timeout))
        } catch let error as RPCError {
            if error.code == .unavailable || error.code == .deadlineExceeded { stats.withLock { $0.healthy = false } }
            throw error
        }
        let elapsed = (clock.now - start).seconds
        stats.withLock { s in
            s.visits += 1
            s.tokenVisits += UInt64(request.tokens.count)
            s.latency.add(elapsed)
            s.healthy = true
            s.bytesSent += UInt64(sent)
            s.bytesReceived += UInt64(received)
            s.overhead.add(max(0, elapsed - reply.computeSeconds))
        }
        meters.rtt.recordSeconds(elapsed)
        meters.compute.recordSeconds(reply.computeSeconds)
        meters.sent.increment(by: Int64(sent))
        meters.received.increment(by: Int64(received))
        meters.rows.increment(by: Int64(request.tokens.count))
        return reply
    }

    func markUnhealthy() { stats.withLock { $0.healthy = false } }

    func countSkipped(_ rows: Int) {
        if rows > 0 { stats.withLock { $0.tokenVisitsSkipped += UInt64(rows) } }
    }

    func closeSessions(_ ids: [UInt64], handshake: Handshake) async {
        _ = try? await channel.unary(Method.workerCloseSession, CloseSessionRequest(handshake: handshake, sessionIDs: ids),
                                     response: CloseSessionReply.self, options: CallOptions(timeout: .seconds(10)))
    }

    /// The worker's current Info (nil when it does not answer within `timeout`).
    func currentInfo(handshake: Handshake, timeout: Duration) async -> WorkerInfo? {
        let info = try? await channel.unary(Method.workerInfo, InfoRequest(handshake: handshake), response: WorkerInfo.self,
                                            options: CallOptions(timeout: timeout))
        stats.withLock { $0.healthy = info != nil }
        return info
    }

    func snapshot() -> Stats { stats.withLock { $0 } }
}

