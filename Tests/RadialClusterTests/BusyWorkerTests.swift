import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Synchronization
import Testing

/// A worker busy with a long Forward still answers health checks and Info at once: they are served on their own
/// completion queue and thread, so a Kubernetes probe or `radial status` does not mistake "computing" for "dead".
@Suite struct BusyWorkerTests {
    @Test func healthAndInfoAnswerDuringALongForward() async throws {
        let model = try ClusterTestSupport.requireRealModel()
        let worker = try await ServerProcess.launch(TestPaths.binDir + "/radial-worker",
                                       ["--model", model, "--layers", "0-29", "--listen", "127.0.0.1:0", "--threads", "1"])
        defer { worker.stop() }
        let channel = RPCChannel(ChannelConfig(target: worker.address))
        defer { channel.close() }
        let info = try await channel.unary(Method.workerInfo, InfoRequest(handshake: Handshake(modelFingerprint: "")),
                                           response: WorkerInfo.self, options: CallOptions(timeout: .seconds(10)))
        let dim = info.hiddenSize, rows = 2048
        var rng = SplitMix64(seed: 3)
        let hidden = (0..<(rows * dim)).map { _ in Float(Double(rng.next() % 2001) / 1000 - 1) }
        let request = ForwardRequest(handshake: info.handshake, tokens: (0..<rows).map { TokenEntry(sessionID: 7, position: $0) },
                                     hidden: WireTensor(hidden, shape: [rows, dim]))
        let clock = ContinuousClock(), start = clock.now
        let done = Done()
        let forward = Task {
            defer { done.flag.store(true, ordering: .releasing) }
            _ = try await channel.unary(Method.workerForward, request, response: ForwardReply.self, options: CallOptions(timeout: .seconds(300)))
            return clock.now - start
        }
        // Probe every 100 ms, each call with a 1 s deadline, while the Forward runs (seconds: before the control
        // queue, every probe waited for it and failed DEADLINE_EXCEEDED).
        var answered = 0, duringForward = 0
        try await Task.sleep(for: .milliseconds(200))
        while true {
                        let health = try await channel.unary(Method.healthCheck, HealthCheckRequest(), response: HealthCheckResponse.self,
                                                 options: CallOptions(timeout: .seconds(1)))
            #expect(health.status == .serving)
            _ = try await channel.unary(Method.workerInfo, InfoRequest(handshake: info.handshake), response: WorkerInfo.self,
                                        options: CallOptions(timeout: .seconds(1)))
            answered += 1
            try await Task.sleep(for: .milliseconds(100))
            if answered >= 100 { break }
            if done.flag.load(ordering: .acquiring) { break }
            duringForward += 1
        }
        let took = try await forward.value
        #expect(took > .seconds(2), "the Forward was too short to test anything (\(took))")
        #expect(duringForward >= 3, "only \(duringForward) probes landed while the Forward ran (\(took))")
    }
}

private final class Done: Sendable { let flag = Atomic(false) }
