import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing

/// The coordinator refuses clusters it cannot serve correctly, frees KV when a client cancels, and answers bad
/// requests with the right status codes.
@Suite struct ClusterControlTests {
    /// Starts workers, runs a coordinator over them to its exit, and returns what it printed.
    func coordinatorRefusal(model: String, workers: [(model: String, layers: String, extra: [String])]) throws -> ProcessResult {
        let bin = TestPaths.binDir
        let started = try workers.map {
            try ServerProcess(bin + "/radial-worker", ["--model", $0.model, "--layers", $0.layers, "--listen", "127.0.0.1:0"] + $0.extra)
        }
        defer { for w in started { w.stop() } }
        return try TestPaths.execute(bin + "/radial-coordinator",
                                     ["--model", model, "--workers", started.map(\.address).joined(separator: ","),
                                      "--listen", "127.0.0.1:0", "--connect-timeout", "20"])
    }

    @Test func refusesAWorkerWithAnotherModel() async throws {
        // Child processes / seconds of CPU: off the cooperative pool (see `blocking`).
        try await blocking {
            let mine = try ClusterTestSupport.writeTinyModel(seed: 42)
            let other = try ClusterTestSupport.writeTinyModel(seed: 7)  // same shapes and metadata, other weights
            let r = try coordinatorRefusal(model: mine, workers: [(mine, "0-1", []), (other, "2-2", [])])
            #expect(r.status != 0)
            #expect(r.stderr.contains("serves another model"), "got: \(r.stderr)")
        }
    }

    @Test func refusesAWorkerWithOtherArithmetic() async throws {
        // Child processes / seconds of CPU: off the cooperative pool (see `blocking`).
        try await blocking {
            let model = try ClusterTestSupport.writeTinyModel()
            let r = try coordinatorRefusal(model: model, workers: [(model, "0-1", []), (model, "2-2", ["--activations", "q8"])])
            #expect(r.status != 0)
            #expect(r.stderr.contains("runs --activations q8, this coordinator f32"), "got: \(r.stderr)")
        }
    }

    @Test func refusesMissingLayers() async throws {
        // Child processes / seconds of CPU: off the cooperative pool (see `blocking`).
        try await blocking {
            let model = try ClusterTestSupport.writeTinyModel()
            let r = try coordinatorRefusal(model: model, workers: [(model, "0-0", []), (model, "2-2", [])])
            #expect(r.status != 0)
            #expect(r.stderr.contains("layers 1-1 are served by no worker"), "got: \(r.stderr)")
        }
    }

    @Test func refusesOverlappingRanges() async throws {
        // Child processes / seconds of CPU: off the cooperative pool (see `blocking`).
        try await blocking {
            let model = try ClusterTestSupport.writeTinyModel()
            let r = try coordinatorRefusal(model: model, workers: [(model, "0-1", []), (model, "1-2", [])])
            #expect(r.status != 0)
            #expect(r.stderr.contains("overlap"), "got: \(r.stderr)")
        }
    }

    @Test func refusesAnotherProtocolVersion() async throws {
        // Child processes / seconds of CPU: off the cooperative pool (see `blocking`).
        try await blocking {
            let model = try ClusterTestSupport.writeTinyModel()
            let r = try coordinatorRefusal(model: model, workers: [(model, "0-2", ["--protocol-version", "99"])])
            #expect(r.status != 0)
            #expect(r.stderr.contains("protocol version 99"), "got: \(r.stderr)")
        }
    }

    /// A client that goes away mid-generation: the session's KV is freed on every worker (seen in Status).
    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    func clientCancelFreesKVOnEveryWorker() async throws {
        let cluster = try await LocalCluster.launch(model: try ClusterTestSupport.requireRealModel(), layers: ["0-14", "15-29"])
        defer { cluster.stop() }
        // Thousands of tokens, end-of-generation ignored: still running when Status is read, however slow the machine.
        let request = GenerateRequest(input: .chat([ChatMessage(role: "user", content: "Write a very long story about a dragon and a knight.")]),
                                      sampling: .greedy, maxTokens: 4000, ignoreEOS: true)
        let stream = try cluster.channel.serverStreaming(Method.generate, request, response: GenerateReply.self)
        var tokens = 0
        for try await reply in stream {
            tokens += reply.tokens.count
            if tokens >= 3 { break }
        }
        let during = try await cluster.status()
        #expect(during.sessionsRunning == 1)
        #expect(during.workers.allSatisfy { $0.info?.sessions == 1 && ($0.info?.kvUsedBytes ?? 0) > 0 }, "the session holds KV on every worker")
        stream.cancel()
        var after = during
        for _ in 0..<600 {
            after = try await cluster.status()
            if after.sessionsRunning == 0 && after.workers.allSatisfy({ $0.info?.sessions == 0 }) { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(after.sessionsRunning == 0)
        #expect(after.workers.allSatisfy { $0.info?.sessions == 0 && $0.info?.kvUsedBytes == 0 }, "KV freed: \(after.workers.map { $0.info?.kvUsedBytes ?? 99 })")
    }

    @Test func badRequestsGetClearStatusCodes() async throws {
        let model = try ClusterTestSupport.writeTinyModel()  // context 256
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-1", "2-2"], coordinatorArgs: ["--max-prompt-tokens", "100"])
        defer { cluster.stop() }
        let tooLong = await ClusterTestSupport.rpcError {
            _ = try await cluster.generate(GenerateRequest(input: .ids(Array(repeating: 5, count: 150))))
        }
        #expect(tooLong?.code == .invalidArgument)
        #expect(tooLong?.message.contains("150 tokens") == true, "\(String(describing: tooLong))")
        let badID = await ClusterTestSupport.rpcError {
            _ = try await cluster.generate(GenerateRequest(input: .ids([1, 2, 100_000])))
        }
        #expect(badID?.code == .invalidArgument)
        // The coordinator keeps serving after all of that.
        let ok = try await cluster.generate(GenerateRequest(input: .ids([5, 6, 7]), maxTokens: 4))
        #expect(ok.finish != nil)
    }

    /// One running and one waiting fill a coordinator with --max-sessions 1 --max-queue 1; a third request is
    /// RESOURCE_EXHAUSTED. (The real model and thousands of tokens, so the first two are still generating when the
    /// third arrives.)
    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    func fullQueueIsResourceExhausted() async throws {
        let cluster = try await LocalCluster.launch(model: try ClusterTestSupport.requireRealModel(), layers: ["0-29"],
                                       coordinatorArgs: ["--max-sessions", "1", "--max-queue", "1"])
        defer { cluster.stop() }
        let long = GenerateRequest(input: .chat([ChatMessage(role: "user", content: "Write a very long story about a dragon.")]),
                                   sampling: .greedy, maxTokens: 4000, ignoreEOS: true)
        let a = try cluster.channel.serverStreaming(Method.generate, long, response: GenerateReply.self)
        let b = try cluster.channel.serverStreaming(Method.generate, long, response: GenerateReply.self)
        var ia = a.makeAsyncIterator(), ib = b.makeAsyncIterator()
        _ = try await ia.next()
        _ = try await ib.next()  // both accepted: the first reply carries the prompt ids
        let third = await ClusterTestSupport.rpcError {
            _ = try await cluster.generate(GenerateRequest(input: .ids([5, 6]), maxTokens: 2))
        }
        #expect(third?.code == .resourceExhausted, "\(String(describing: third))")
        #expect(third?.message.contains("queue is full") == true)
        a.cancel()
        b.cancel()
        let ok = try await cluster.generate(GenerateRequest(input: .ids([5, 6, 7]), maxTokens: 4))
        #expect(ok.ids.count == 4 || ok.finish == .endOfGeneration, "serves again once the queue drains")
    }

    /// SIGTERM with a generation running: the coordinator refuses new work, cancels what is still running once
    /// --drain-seconds pass, ends the client's stream with CANCELLED as the finish reason, and exits 0.
    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    /// The stream is read off the cooperative pool (`blocking`): the time bound is the coordinator's, and in the
    /// full suite synchronous real-model tests can hold that pool's threads long enough to stretch the reading.
    func sigtermCancelsAfterTheDrainPeriodAndExitsZero() async throws {
        let cluster = try await LocalCluster.launch(model: try ClusterTestSupport.requireRealModel(), layers: ["0-29"], coordinatorArgs: ["--drain-seconds", "1"])
        defer { cluster.stop() }
        try await blocking {
            let request = GenerateRequest(input: .text("Tell me a story"), sampling: .greedy, maxTokens: 4000, ignoreEOS: true)
            let stream = try cluster.channel.serverStreaming(Method.generate, request, response: GenerateReply.self)
            var iterator = stream.makeAsyncIterator()
            _ = try await iterator.next()
            _ = try await iterator.next()  // generating
            let clock = ContinuousClock(), start = clock.now
            cluster.coordinator.process.terminate()
            var finish: FinishReason?
            while let reply = try await iterator.next() { if let f = reply.finishReason { finish = f } }
            #expect(finish == .cancelled)
            #expect(cluster.coordinator.stop() == 0)
            #expect(clock.now - start < .seconds(60), "cancelled after the 1 s drain, not after 4000 tokens")
        }
    }

    /// A worker restarted on the same port with another range, or another arithmetic, while the coordinator runs:
    /// the coordinator's Forward states what it expects, the worker refuses the mismatch, and the client gets
    /// FAILED_PRECONDITION naming it, never text computed by the wrong layers.
    @Test(arguments: [["--layers", "0-2"], ["--layers", "2-2", "--activations", "q8"]])
    func aWorkerRestartedAsSomethingElseIsRefusedNotUsed(_ restartArgs: [String]) async throws {
        let model = try ClusterTestSupport.writeTinyModel()
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-1", "2-2"])
        defer { cluster.stop() }
        let before = try await cluster.generate(GenerateRequest(input: .ids([5, 6, 7]), maxTokens: 4))
        #expect(before.ids.count == 4)
        let port = cluster.workers[1].address
        cluster.workers[1].stop()
        let replacement = try await ServerProcess.launch(TestPaths.binDir + "/radial-worker",
                                            ["--model", model, "--listen", port, "--threads", "1"] + restartArgs)
        defer { replacement.stop() }
        // Until the coordinator's channel has reconnected to the new process, a step fails UNAVAILABLE instead.
        var refused: RPCError?
        for _ in 0..<50 {
            refused = await ClusterTestSupport.rpcError {
                _ = try await cluster.generate(GenerateRequest(input: .ids([5, 6, 7]), maxTokens: 4))
            }
            if refused?.code != .unavailable { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(refused?.code == .failedPrecondition, "\(String(describing: refused))")
        #expect(refused?.message.contains("the coordinator expects layers 2-2") == true, "\(String(describing: refused))")
    }

    /// Safe defaults: a worker or coordinator on a non-loopback address needs a token (or client certificates)
    /// unless --insecure; a token can come from a file.
    @Test func nonLoopbackListenNeedsAuthenticationOrInsecure() async throws {
        // Child processes / seconds of CPU: off the cooperative pool (see `blocking`).
        try await blocking {
            let model = try ClusterTestSupport.writeTinyModel()
            let bin = TestPaths.binDir
            for exe in ["radial-worker", "radial-coordinator"] {
                let extra = exe == "radial-worker" ? ["--layers", "0-2"] : ["--workers", "127.0.0.1:1"]
                let refused = try TestPaths.execute(bin + "/" + exe, ["--model", model, "--listen", "0.0.0.0:0"] + extra)
                #expect(refused.status != 0)
                #expect(refused.stderr.contains("refusing to listen on 0.0.0.0:0 without client authentication"), "\(exe): \(refused.stderr)")
            }
            let insecure = try ServerProcess(bin + "/radial-worker", ["--model", model, "--layers", "0-2", "--listen", "0.0.0.0:0", "--insecure"])
            #expect(insecure.stderrText.contains("--insecure"))
            insecure.stop()
            let tokenFile = try TestPaths.tempDir() + "/token"
            try "s3cret\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
            let withToken = try ServerProcess(bin + "/radial-worker", ["--model", model, "--layers", "0-2", "--listen", "0.0.0.0:0", "--auth-token-file", tokenFile])
            withToken.stop()
        }
    }
}
