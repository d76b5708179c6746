import Foundation
import RadialCommandLine
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing

/// The coordinator's OpenAI-compatible HTTP API and every process's /metrics, driven by real clients: the official
/// `openai` Python package, curl, and prometheus_client's parser (Tests/http/openai_check.py), on the real model.
@Suite struct HTTPAPITests {
    static let token = "http-test-token"

    @Test func openAIClientCurlAndPrometheusAgainstARealCluster() async throws {
        // The coordinator's token file names a second client too: each line is a token its servers accept.
        let tokenFile = try TestPaths.tempDir() + "/tokens"
        try "\(Self.token)\nsecond-client-token\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        let cluster = try await LocalCluster.launch(model: try ClusterTestSupport.requireRealModel(), layers: ["0-14", "15-29"],
                                       workerArgs: ["--metrics-listen", "127.0.0.1:0"],
                                       coordinatorArgs: ["--http-listen", "127.0.0.1:0", "--auth-token-file", tokenFile],
                                       environment: ["RADIAL_AUTH_TOKEN": Self.token, "RADIAL_WORKER_AUTH_TOKEN": Self.token],
                                       bearerToken: Self.token)
        defer { cluster.stop() }
        let base = "http://" + (try #require(cluster.coordinator.httpAddress))
        let workerMetrics = try cluster.workers.map { "http://" + (try #require($0.httpAddress)) }

        // The official client: whole and streamed chat, completions, errors, metrics on every process.
        let check = try await blocking { try TestPaths.execute("/usr/bin/env", ["python3", TestPaths.packageRoot + "/Tests/http/openai_check.py",
                                                           "--base", base, "--token", Self.token, "--worker-metrics"] + workerMetrics) }
        try #require(check.status == 0, "openai_check.py failed: \(check.stderr)\n\(check.stdout)")
        let seen = try #require(try JSONSerialization.jsonObject(with: Data(check.stdout.utf8)) as? [String: Any])
        let chat = try #require(seen["chat"] as? [String: Any]), stream = try #require(seen["stream"] as? [String: Any])
        let text = try #require(chat["text"] as? String)
        #expect(text.contains("Paris"))
        #expect(stream["text"] as? String == text)
        #expect(stream["ids"] as? [Int] == chat["ids"] as? [Int])
        let completion = try #require(seen["completion"] as? [String: Any])
        #expect(completion["text"] as? String == completion["again"] as? String, "the same seed gave different text")
        #expect((seen["workers"] as? [Any])?.count == 2)

        // The same conversation over gRPC Generate: the HTTP API serves the very same tokens.
        let grpc = try await cluster.generate(GenerateRequest(input: .chat([ChatMessage(role: "user", content: "What is the capital of France?")]),
                                                              sampling: .greedy, maxTokens: 40))
        #expect(grpc.ids == chat["ids"] as? [Int])
        #expect(grpc.text == text)

        // curl: a streamed completion ends with [DONE] and every event is JSON; no token is 401 in OpenAI's shape.
        let streamed = try await blocking { try TestPaths.execute("/usr/bin/env", [
            "curl", "-sS", "-N", "--max-time", "120", base + "/v1/completions", "-H", "Authorization: Bearer \(Self.token)",
            "-H", "Content-Type: application/json", "-d", #"{"prompt": "The sky is", "max_tokens": 6, "temperature": 0, "stream": true}"#,
        ]) }
        try #require(streamed.status == 0, "curl: \(streamed.stderr)")
        let events = streamed.stdout.split(separator: "\n").filter { $0.hasPrefix("data: ") }.map { $0.dropFirst(6) }
        #expect(events.last == "[DONE]")
        for e in events.dropLast() {
            #expect((try? JSONSerialization.jsonObject(with: Data(e.utf8))) != nil, "not JSON: \(e)")
        }
        #expect(events.count == 6 + 3, "one event per token, the first (role) and last (finish_reason) chunks, [DONE]: \(events)")
        let refused = try await blocking { try TestPaths.execute("/usr/bin/env", ["curl", "-sS", "-w", "\n%{http_code}", base + "/v1/models"]) }
        let lines = refused.stdout.split(separator: "\n")
        #expect(lines.last == "401")
        let body = try JSONSerialization.jsonObject(with: Data(lines.dropLast().joined(separator: "\n").utf8)) as? [String: Any]
        #expect((body?["error"] as? [String: Any])?["code"] as? String == "invalid_api_key")
        let second = try await blocking { try TestPaths.execute("/usr/bin/env", ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", base + "/v1/models",
                                                                                 "-H", "Authorization: Bearer second-client-token"]) }
        #expect(second.stdout == "200", "the token file's second line is accepted too")

        // One log line per request, with its outcome and counts.
        let log = cluster.coordinator.stderrText
        #expect(log.contains("radial.requests: request api=http"))
        #expect(log.contains("outcome=eos"))
        #expect(log.contains("outcome=invalid_argument"))
        #expect(log.contains("api=grpc"))
        #expect(cluster.stop().allSatisfy { $0 == 0 })
    }

    /// Every line of the JSON log format parses as one object with the event's fields.
    @Test func jsonLogLines() throws {
        let line = LineLogHandler.format(.json, time: Date(timeIntervalSince1970: 0), level: .warning, label: "radial.requests",
                                         message: "request \"quoted\"\nnext", fields: ["outcome": "eos", "request": "abc"])
        #expect(line.hasSuffix("\n") && line.dropLast().contains("\n") == false)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        #expect(object["level"] == "warning")
        #expect(object["logger"] == "radial.requests")
        #expect(object["msg"] == "request \"quoted\"\nnext")
        #expect(object["outcome"] == "eos")
        #expect(object["ts"] == "1970-01-01T00:00:00.000Z")
        let text = LineLogHandler.format(.text, time: Date(timeIntervalSince1970: 0), level: .info, label: "radial-worker",
                                         message: "stopped", fields: ["b": "2", "a": "1"])
        #expect(text == "1970-01-01T00:00:00.000Z info radial-worker: stopped a=1 b=2\n")
    }
}
