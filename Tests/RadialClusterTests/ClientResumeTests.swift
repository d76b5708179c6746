import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `radial generate` survives a coordinator restart: it waits for the coordinator to come back and continues after
/// the tokens it already has, from the K/V the workers still hold; the whole stream equals an unbroken run.
@Suite struct ClientResumeTests {
    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    func generateContinuesThroughACoordinatorRestart() async throws {
        let model = try ClusterTestSupport.requireRealModel()
        let file = try GGUFFile(path: model)
        let tokenizer = try Tokenizer(gguf: file)
        let prompt = tokenizer.encode("Once upon a time, in a small village by the sea,")
        let maxTokens = 160
        let generator = LocalGenerator(model: try LlamaModel(file: file), tokenizer: tokenizer)
        let want = try await blocking {
            var stop = StopConditions(maxTokens: maxTokens)
            stop.stopAtEndOfGeneration = false
            return try generator.generate(promptIDs: prompt, sampling: .greedy, stop: stop)
        }

        let cluster = try await LocalCluster.launch(model: model, layers: ["0-14", "15-29"])
        defer { cluster.stop() }
        let address = cluster.coordinator.address
        let client = Process()
        client.executableURL = URL(fileURLWithPath: TestPaths.binDir + "/radial")
        client.arguments = ["generate", "--coordinator", address, "--greedy", "--ignore-eos", "--max-tokens", "\(maxTokens)",
                            "--prompt-ids", prompt.map(String.init).joined(separator: ","), "--json", "--quiet", "--connect-timeout", "60"]
        let stdout = Pipe()
        client.standardOutput = stdout
        let stderrPath = try TestPaths.tempDir() + "/client.err"
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        client.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        try client.run()
        // Some tokens in, the coordinator dies (kill -9) and a new one starts on the same address.
        // On a dispatch thread: CPU-bound tests beside this one can hold the cooperative pool for seconds, and a
        // late poll would kill the coordinator after the generation ended.
        let restarted = try await blocking { () -> ServerProcess in
            var seen: UInt64 = 0
            for _ in 0..<1500 where seen < 12 {
                seen = (try? await cluster.status().tokensGenerated) ?? 0
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(seen >= 12, "the generation was under way before the restart")
            kill(cluster.coordinator.process.processIdentifier, SIGKILL)
            cluster.coordinator.process.waitUntilExit()
            return try await ServerProcess.launch(TestPaths.binDir + "/radial-coordinator",
                                     ["--model", model, "--workers", cluster.workers.map(\.address).joined(separator: ","),
                                      "--listen", address, "--threads", "1", "--connect-timeout", "20"])
        }
        defer { restarted.stop() }
        let output = try await blocking { () -> Data in
            let data = stdout.fileHandleForReading.readDataToEndOfFile()
            client.waitUntilExit()
            return data
        }
        #expect(client.terminationStatus == 0)
        let clientLog = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
        #expect(clientLog.contains("reconnecting"), "the kill landed after the generation ended: nothing was resumed")
        let last = try #require(String(decoding: output, as: UTF8.self).split(separator: "\n").last)
        let json = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
        #expect(json["generated_ids"] as? [Int] == want.generatedIDs, "the resumed stream equals an unbroken run")
        #expect(json["text"] as? String == want.text)
        // The workers still held the session: the new coordinator adopted its K/V instead of recomputing it.
        let channel = RPCChannel(ChannelConfig(target: address))
        defer { channel.close() }
        let status = try await channel.unary(Method.status, StatusRequest(), response: StatusReply.self, options: CallOptions(timeout: .seconds(10)))
        #expect(status.sessionsAdopted == 1)
    }
}
