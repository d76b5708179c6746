import RadialModel
import RadialProtocol
import RadialRPC
import Testing

/// Radial's messages through their protobuf-c encoding and back: every field survives, and what validation
/// refuses names the field.
@Suite struct MessageTests {
    let handshake = Handshake(modelFingerprint: "abc123")

    @Test func generateRequestAndReplyRoundTrip() throws {
        var sampling = SamplingParameters()
        sampling.temperature = 0.7
        sampling.topK = 20
        sampling.topP = 0.9
        sampling.seed = 99
        var request = GenerateRequest(input: .chat([ChatMessage(role: "user", content: "Hi"), ChatMessage(role: "assistant", content: "Yo")]),
                                      sampling: sampling, maxTokens: 33, stop: ["\n\n", "END"], ignoreEOS: true, continueAfter: [5, 6, 7])
        request.resumeSession = 0xDEAD_BEEF_1234
        #expect(try GenerateRequest(wire: request.wireBytes()) == request)

        var reply = GenerateReply()
        reply.text = "Paris"
        reply.tokens = [TokenTrace(tokenID: 42, layersRun: [0, 1, 5], hops: 2)]
        reply.promptIDs = [1, 2, 3]
        reply.finishReason = .stopString
        reply.sessionID = UInt64.max - 3
        #expect(try GenerateReply(wire: reply.wireBytes()) == reply)
    }

    @Test func generateRequestRefusesAmbiguousPrompts() throws {
        let both = GenerateRequest(input: .text("x"))
        var bytes = both.wireBytes()
        #expect(try GenerateRequest(wire: bytes).input == .text("x"))
        bytes = GenerateRequest(input: .ids([])).wireBytes()
        #expect(throws: (any Error).self) { try GenerateRequest(wire: bytes) }
    }

    @Test func adoptSessionRoundTrip() throws {
        let request = AdoptSessionRequest(handshake: handshake, sessionID: 77, positions: 1234)
        #expect(try AdoptSessionRequest(wire: request.wireBytes()) == request)
        #expect(try AdoptSessionReply(wire: AdoptSessionReply(positions: 99).wireBytes()) == AdoptSessionReply(positions: 99))
        // A message of another type does not decode as this one's handshake.
        #expect(throws: (any Error).self) { try AdoptSessionRequest(wire: [0xFF, 0xFF, 0xFF]) }
    }

    @Test func statusCarriesAdoptionsAndFailovers() throws {
        var status = StatusReply(handshake: handshake)
        status.model = "m"
        status.modelLayers = 30
        status.failovers = 2
        status.historyBytes = 4096
        status.sessionsAdopted = 5
        let back = try StatusReply(wire: status.wireBytes())
        #expect(back.sessionsAdopted == 5 && back.failovers == 2 && back.historyBytes == 4096 && back.modelLayers == 30)
    }

    @Test func forwardRequestKeepsRowsAndIdentity() throws {
        let tokens = [TokenEntry(sessionID: 1, position: 0), TokenEntry(sessionID: 1, position: 1, layers: [2, 3], routed: true, layersBefore: 2)]
        let request = ForwardRequest(handshake: handshake, tokens: tokens, hidden: WireTensor([1, 2, 3, 4, 5, 6], shape: [2, 3]),
                                     policyID: 0xfeed_beef_0000_0001,
                                     expect: StageIdentity(layers: LayerRange(0, 4), activations: "q8", routerFingerprint: "r"))
        let back = try ForwardRequest(wire: request.wireBytes())
        #expect(back.tokens == tokens)
        #expect(back.hidden.floats() == [1, 2, 3, 4, 5, 6])
        #expect(back.expect == request.expect)
        #expect(back.policyID == request.policyID)
        // A routed row under the default policy (which routes nothing) is refused, naming the field.
        let unrouted = ForwardRequest(handshake: handshake, tokens: tokens, hidden: WireTensor([1, 2, 3, 4, 5, 6], shape: [2, 3]))
        do {
            _ = try ForwardRequest(wire: unrouted.wireBytes())
            Issue.record("a routed token under the default policy decoded")
        } catch let error as RPCError {
            #expect(error.code == .invalidArgument && error.message.contains("ForwardRequest.policy_id"))
        }
    }

    @Test func configureCarriesThePolicy() throws {
        let routing = WireRouting(routerFingerprint: "r", threshold: 0.25, alwaysRun: [0], minLayers: 1)
        let request = ConfigureRequest(handshake: handshake, expect: StageIdentity(layers: LayerRange(2, 5), activations: "f32", routerFingerprint: "r"),
                                       policy: StagePolicy(kvPolicy: .mask, routing: routing))
        #expect(try ConfigureRequest(wire: request.wireBytes()) == request)
        let plain = ConfigureRequest(handshake: handshake, expect: request.expect, policy: StagePolicy())
        #expect(try ConfigureRequest(wire: plain.wireBytes()).policy.routing == nil)
        #expect(try ConfigureReply(wire: ConfigureReply(policyID: 42).wireBytes()).policyID == 42)
    }

    @Test func restoreNamesEachRowsSession() throws {
        let history = [TokenEntry(sessionID: 7, position: 0), TokenEntry(sessionID: 9, position: 0, layers: []),
                       TokenEntry(sessionID: 7, position: 1, layers: [1])]
        let request = RestoreSessionRequest(handshake: handshake, history: history, hidden: WireTensor([1, 2, 3, 4, 5, 6], shape: [3, 2]),
                                            kvPolicy: .fill, groupSizes: [2, 1])
        let back = try RestoreSessionRequest(wire: request.wireBytes())
        #expect(back == request)
        #expect(back.history.map(\.sessionID) == [7, 9, 7])
    }
}
