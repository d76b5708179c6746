import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
import RadialWorker
import Testing

/// Serving paths a user relies on, each asserted on its behaviour: chunked prefill, the K/V budget as a client sees
/// it, mutual TLS from the coordinator to its workers, the coordinator's drain on SIGTERM, and idle sessions
/// expiring.
@Suite struct ServingPathTests {
    /// A prompt longer than --max-batch-tokens is prefilled in chunks; the output equals the unchunked engine's.
    @Test func chunkedPrefillEqualsUnchunked() async throws {
        let model = try ClusterTestSupport.writeTinyModel(weightType: .q8_0)
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-1", "2-2"], coordinatorArgs: ["--max-batch-tokens", "7"])
        defer { cluster.stop() }
        let prompt = (0..<40).map { 3 + ($0 * 13) % 250 }
        let want = try await Reference(path: model).generate(prompt, .greedy, maxTokens: 12)
        let got = try await cluster.generate(GenerateRequest(input: .ids(prompt), maxTokens: 12))
        #expect(got.ids == want.generatedIDs)
    }

    /// A worker whose K/V budget cannot hold the prompt: the client gets RESOURCE_EXHAUSTED naming the budget, and
    /// a short request still succeeds afterwards.
    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    func kvBudgetFullIsResourceExhaustedAtTheClient() async throws {
        // 46 KB of K/V per position, caches grow by doubling from 64 positions: 4 MiB holds one session of up to 64
        // positions (2.8 MiB) but not one of 100 (128 positions, 5.6 MiB).
        let model = try ClusterTestSupport.requireRealModel()
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-29"], workerArgs: ["--kv-budget-mb", "4", "--max-session-kv-mb", "4"])
        defer { cluster.stop() }
        let long = await ClusterTestSupport.rpcError {
            _ = try await cluster.generate(GenerateRequest(input: .ids(Array(repeating: 28, count: 100)), maxTokens: 4))
        }
        #expect(long?.code == .resourceExhausted && long?.message.contains("KV budget") == true, "\(String(describing: long))")
        let short = try await cluster.generate(GenerateRequest(input: .ids([1, 504, 279]), maxTokens: 3))
        #expect(short.ids.count == 3)
    }

    /// One session may hold a quarter of a worker's K/V budget by default: a longer one is RESOURCE_EXHAUSTED
    /// naming the per-session cap, and leaves room for the others.
    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    func oneSessionCannotTakeTheWholeBudget() async throws {
        // 46 KB per position: a 16 MiB budget caps a session at 4 MiB, about 90 positions.
        let cluster = try await LocalCluster.launch(model: try ClusterTestSupport.requireRealModel(), layers: ["0-29"], workerArgs: ["--kv-budget-mb", "16"])
        defer { cluster.stop() }
        let long = await ClusterTestSupport.rpcError {
            _ = try await cluster.generate(GenerateRequest(input: .ids(Array(repeating: 28, count: 120)), maxTokens: 4))
        }
        #expect(long?.code == .resourceExhausted && long?.message.contains("per-session cap") == true, "\(String(describing: long))")
        let fits = try await cluster.generate(GenerateRequest(input: .ids(Array(repeating: 28, count: 60)), maxTokens: 3))
        #expect(fits.ids.count == 3)
    }

    /// Workers that require client certificates: the coordinator presents its own (mutual TLS end to end) and
    /// serves; without one it is refused and says the handshake failed.
    @Test func coordinatorPresentsAClientCertificateToWorkers() async throws {
        let certs = try TestPaths.makeCertificates()
        let model = try ClusterTestSupport.writeTinyModel()
        let tls = ["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey, "--tls-client-ca", certs.ca]
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-2"], workerArgs: tls,
                                       coordinatorArgs: ["--worker-tls-ca", certs.ca, "--worker-tls-cert", certs.clientCert,
                                                         "--worker-tls-key", certs.clientKey])
        defer { cluster.stop() }
        let got = try await cluster.generate(GenerateRequest(input: .ids([5, 6, 7]), maxTokens: 4))
        #expect(got.ids.count == 4)
        // The same worker, a coordinator without a client certificate: refused at the handshake.
        let refused = try TestPaths.execute(TestPaths.binDir + "/radial-coordinator",
                                            ["--model", model, "--workers", cluster.workers[0].address, "--listen", "127.0.0.1:0",
                                             "--worker-tls-ca", certs.ca, "--connect-timeout", "3"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("did not answer its handshake"), "\(refused.stderr)")
    }

    /// SIGTERM with generations running that finish within --drain-seconds: they end normally, and the
    /// coordinator exits 0 without cancelling them.
    @Test func sigtermLetsGenerationsFinishInsideTheDrainWindow() async throws {
        let model = try ClusterTestSupport.writeTinyModel()
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-2"], coordinatorArgs: ["--drain-seconds", "30"])
        defer { cluster.stop() }
        let stream = try cluster.channel.serverStreaming(Method.generate, GenerateRequest(input: .ids([5, 6, 7]), maxTokens: 60, ignoreEOS: true),
                                                         response: GenerateReply.self)
        var iterator = stream.makeAsyncIterator()
        _ = try await iterator.next()  // accepted
        cluster.coordinator.process.terminate()
        var tokens = 0, finish: FinishReason?
        while let reply = try await iterator.next() {
            tokens += reply.tokens.count
            if let f = reply.finishReason { finish = f }
        }
        #expect(finish == .maxTokens && tokens == 60, "finished normally inside the drain window: \(String(describing: finish)), \(tokens)")
        #expect(cluster.coordinator.stop() == 0)
    }

    /// A session idle past the TTL is evicted: its K/V is freed, and a late row for it is NOT_FOUND with the reason.
    @Test func idleSessionsExpireAfterTheTTL() async throws {
        let path = try ClusterTestSupport.writeTinyModel()
        let file = try GGUFFile(path: path)
        let model = try LlamaModel(file: file)
        let shard = try LlamaShard(file: file, config: model.config, range: LayerRange(0, 3))
        var config = WorkerConfig(workerID: "ttl", kvBudgetBytes: 8 << 20, maxBatchTokens: 64)
        config.sessionTTL = .milliseconds(300)
        let service = WorkerService(shard: shard, fingerprint: file.fingerprint, config: config)
        let evictor = Task { await service.evictIdleSessions() }
        defer { evictor.cancel() }
        let embedded = try model.head.embed([5])
        _ = try service.host.forward(tokens: [TokenEntry(sessionID: 1, position: 0)], hidden: embedded, fills: [], fillHidden: [],
                                     kvPolicy: .fill, chooser: nil)
        #expect(service.host.snapshot.sessions == 1)
        for _ in 0..<100 where service.host.snapshot.sessions > 0 { try await Task.sleep(for: .milliseconds(50)) }
        #expect(service.host.snapshot.sessions == 0 && service.host.snapshot.kvUsedBytes == 0)
        do {
            _ = try service.host.forward(tokens: [TokenEntry(sessionID: 1, position: 1)], hidden: embedded, fills: [], fillHidden: [],
                                         kvPolicy: .fill, chooser: nil)
            Issue.record("a row for an evicted session was computed")
        } catch let error as RPCError {
            #expect(error.code == .notFound && error.message.contains("evicted"), "\(error)")
        }
    }
}
