import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing

/// Stop strings through the coordinator: every way a generation can end with a stop string set, over the wire,
/// and the coordinator still serves afterwards (a stop string used to crash it when the generation ended otherwise).
@Suite struct StopStringClusterTests {
    @Test func everyEndingWithAStopStringOverTheWire() async throws {
        let model = try ClusterTestSupport.writeTinyModel()
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-1", "2-2"])
        defer { cluster.stop() }
        let prompt = PromptInput.ids([5, 6, 7, 8])
        // Dense greedy text, no stop: the reference.
        let plain = try await cluster.generate(GenerateRequest(input: prompt, maxTokens: 24, ignoreEOS: true))
        #expect(plain.finish == .maxTokens)

        // Ends by length with a stop string that never appears.
        let length = try await cluster.generate(GenerateRequest(input: prompt, maxTokens: 24, stop: ["\u{1}never\u{2}"], ignoreEOS: true))
        #expect(length.finish == .maxTokens)
        #expect(length.text == plain.text)
        #expect(length.ids == plain.ids)

        // Ends by the stop string: the text is cut before its first occurrence and the stream says "stop".
        let chars = Array(plain.text.unicodeScalars)
        try #require(chars.count >= 6, "the tiny model produced too little text: \(plain.text.debugDescription)")
        let stop = String(String.UnicodeScalarView(chars[3..<5]))
        let stopped = try await cluster.generate(GenerateRequest(input: prompt, maxTokens: 24, stop: [stop], ignoreEOS: true))
        #expect(stopped.finish == .stopString)
        let cut = plain.text.range(of: stop)!.lowerBound
        #expect(stopped.text == String(plain.text[..<cut]))

        // A client cancel with a stop string set (the test below ends one at the end-of-generation token).
        let long = GenerateRequest(input: prompt, maxTokens: 200, stop: ["\u{1}never\u{2}"], ignoreEOS: true)
        let stream = try cluster.channel.serverStreaming(Method.generate, long, response: GenerateReply.self)
        var got = 0
        for try await reply in stream {
            got += reply.tokens.count
            if got >= 2 { break }
        }
        stream.cancel()

        // The coordinator is alive and serves the same text again.
        let again = try await cluster.generate(GenerateRequest(input: prompt, maxTokens: 24, stop: ["zzq"], ignoreEOS: true))
        #expect(again.ids == plain.ids)
        #expect(cluster.coordinator.process.isRunning)
    }

    /// The real model answers a short chat turn and ends with its end-of-generation token, a stop string set.
    @Test func endOfGenerationWithAStopStringOverTheWire() async throws {
        let cluster = try await LocalCluster.launch(model: try ClusterTestSupport.requireRealModel(), layers: ["0-14", "15-29"])
        defer { cluster.stop() }
        let request = GenerateRequest(input: .chat([ChatMessage(role: "user", content: "What is the capital of France?")]),
                                      sampling: .greedy, maxTokens: 200, stop: ["zzq"])
        let r = try await cluster.generate(request)
        #expect(r.finish == .endOfGeneration, "text: \(r.text.debugDescription)")
        #expect(r.text.contains("Paris"))
        let again = try await cluster.generate(request)
        #expect(again.text == r.text)
    }
}
