import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A worker lost mid-generation: its sessions are rebuilt by replaying their history on a replica, or on the same
/// worker once it is back, and every generation ends exactly as a fault-free run does.
@Suite struct FailoverTests {
    static let prompts = (0..<8).map { i in (0..<(3 + 5 * i)).map { 3 + ($0 * 7 + i * 13) % 250 } }
    /// Long enough that the fault lands mid-run even when a loaded test process polls late.
    static let maxTokens = 900

    /// A tiny model with room for the long generations.
    static func model() throws -> String {
        var spec = TinyModelSpec()
        spec.weightType = .q8_0
        spec.contextLength = 1024
        let path = try TestPaths.tempDir() + "/tiny.gguf"
        try spec.write(to: path)
        return path
    }

    /// Every generation runs its full length (end of generation ignored), so the fault lands while all 8 run.
    func expected(_ model: String) async throws -> [[Int]] {
        let generator = try Reference(path: model).generator
        var stop = StopConditions(maxTokens: Self.maxTokens)
        stop.stopAtEndOfGeneration = false
        return try await blocking { [stop] in
            try Self.prompts.enumerated().map { i, p in
                try generator.generate(promptIDs: p, sampling: ClusterTestSupport.sampling(seed: i % 2 == 0 ? nil : UInt64(70 + i)),
                                       stop: stop).generatedIDs
            }
        }
    }

    /// Runs every prompt at once; `fault` runs once the cluster has generated `after` tokens.
    func runAll(_ cluster: LocalCluster, after: UInt64, fault: @escaping @Sendable () throws -> Void) async throws -> [[Int]] {
        try await withThrowingTaskGroup(of: (Int, [Int]).self) { group in
            for (i, p) in Self.prompts.enumerated() {
                group.addTask {
                    var request = GenerateRequest(input: .ids(p), sampling: ClusterTestSupport.sampling(seed: i % 2 == 0 ? nil : UInt64(70 + i)),
                                                  maxTokens: Self.maxTokens)
                    request.ignoreEOS = true
                    return (i, try await cluster.generate(request).ids)
                }
            }
            group.addTask {
                // On a dispatch thread: a poll starved by busy tests beside this one would fault too late.
                try await blocking {
                    for _ in 0..<3000 {
                        if (try await cluster.status()).tokensGenerated >= after { break }
                        try await Task.sleep(for: .milliseconds(10))
                    }
                    try fault()
                }
                return (-1, [])
            }
            var out = Array(repeating: [Int](), count: Self.prompts.count)
            for try await (i, ids) in group where i >= 0 { out[i] = ids }
            return out
        }
    }

    @Test func killingAReplicaMidGenerationChangesNoToken() async throws {
        let model = try Self.model()
        let want = try await expected(model)
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-1", "0-1", "2-2", "2-2"], coordinatorArgs: ["--failover-wait", "20"])
        defer { cluster.stop() }
        let victims = [cluster.workers[0], cluster.workers[3]]
        let got = try await runAll(cluster, after: 40) {
            for v in victims { kill(v.process.processIdentifier, SIGKILL) }
        }
        for i in want.indices { #expect(got[i] == want[i], "request \(i): a failover changed its tokens") }
        #expect(cluster.coordinator.process.isRunning)
        var status = try await cluster.status()
        for _ in 0..<100 where status.historyBytes > 0 {  // sessions are released off the batching loop
            try await Task.sleep(for: .milliseconds(20))
            status = try await cluster.status()
        }
        #expect(status.failovers >= 1, "Status counts the failovers")
        #expect(status.historyBytes == 0, "finished sessions keep no history")
    }

    @Test func aWorkerRestartedMidGenerationGetsItsSessionsBack() async throws {
        let model = try Self.model()
        let want = try await expected(model)
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-1", "2-2"], coordinatorArgs: ["--failover-wait", "30"])
        defer { cluster.stop() }
        let victim = cluster.workers[1], address = victim.address
        let restarted = Mutex<ServerProcess?>(nil)
        defer { restarted.withLock { $0?.stop() } }
        let got = try await runAll(cluster, after: 40) {
            kill(victim.process.processIdentifier, SIGKILL)
            victim.process.waitUntilExit()
            let p = try ServerProcess(TestPaths.binDir + "/radial-worker", ["--model", model, "--layers", "2-2", "--listen", address, "--threads", "1"])
            restarted.withLock { $0 = p }
        }
        for i in want.indices { #expect(got[i] == want[i], "request \(i): a restart changed its tokens") }
    }
}
