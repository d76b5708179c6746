import Foundation
import RadialModel
import RadialProtocol
import RadialRouter
import RadialRPC
import RadialTestSupport
import RadialWorker
import Testing

/// radial.Worker in-process over real loopback gRPC: sessions, KV budget, fills, and the errors a coordinator sees.
@Suite struct WorkerServiceTests {
    struct Setup {
        let server: RPCServer
        let channel: RPCChannel
        let handshake: Handshake
        let model: LlamaModel
        let service: WorkerService
    }

    /// `tokens`: the bearer tokens the worker accepts (the setup's channel sends the first).
    func withWorker(budgetBytes: Int = 64 << 20, path: String? = nil, router: Router? = nil, tokens: [String] = [],
                    _ body: (Setup) async throws -> Void) async throws {
        let path = try path ?? ClusterTestSupport.writeTinyModel()
        let file = try GGUFFile(path: path)
        let model = try LlamaModel(file: file)
        let shard = try LlamaShard(file: file, config: model.config, range: LayerRange(0, model.config.layerCount))
        let service = WorkerService(shard: shard, fingerprint: file.fingerprint,
                                    config: WorkerConfig(workerID: "test", kvBudgetBytes: budgetBytes, maxBatchTokens: 64), router: router)
        var serverConfig = ServerConfig(address: "127.0.0.1:0", bearerToken: tokens.first)
        serverConfig.extraBearerTokens = Array(tokens.dropFirst())
        let server = RPCServer(config: serverConfig)
        service.register(on: server)
        let port = try server.start()
        let channel = RPCChannel(ChannelConfig(target: "127.0.0.1:\(port)", bearerToken: tokens.first))
        do {
            try await body(Setup(server: server, channel: channel, handshake: service.handshake, model: model, service: service))
        } catch {
            channel.close(); await server.shutdown(); throw error
        }
        channel.close()
        await server.shutdown()
    }

    func forward(_ s: Setup, _ tokens: [TokenEntry], _ ids: [Int], fills: [KVFillEntry] = [], fillIDs: [Int] = [],
                 handshake: Handshake? = nil) async throws -> [Float] {
        let dim = s.model.config.dim
        let fillHidden = fillIDs.isEmpty ? nil : WireTensor(try s.model.head.embed(fillIDs), shape: [fillIDs.count, dim])
        let request = ForwardRequest(handshake: handshake ?? s.handshake, tokens: tokens,
                                     hidden: WireTensor(try s.model.head.embed(ids), shape: [ids.count, dim]),
                                     fills: fills, fillHidden: fillHidden)
        return try await s.channel.unary(Method.workerForward, request, response: ForwardReply.self).hidden.floats()
    }

    @Test(arguments: ["llama", "qwen2"])
    func forwardEqualsTheShardInProcess(_ architecture: String) async throws {
        var spec = TinyModelSpec()
        spec.architecture = architecture
        let path = try TestPaths.tempDir() + "/tiny.gguf"
        try spec.write(to: path)
        try await withWorker(path: path) { s in
            let ids = [5, 9, 30, 41]
            let remote = try await forward(s, ids.indices.map { TokenEntry(sessionID: 1, position: $0) }, ids)
            var local = try s.model.head.embed(ids)
            let cache = s.model.makeCache()
            _ = try local.withUnsafeMutableBufferPointer { try s.model.shard.forward($0.baseAddress!, tokens: ids.indices.map { ShardToken(cache: cache, position: $0) }) }
            #expect(remote == local, "same arithmetic, bit for bit")
            // The next position continues the session.
            _ = try await forward(s, [TokenEntry(sessionID: 1, position: 4)], [7])
            let info = try await s.channel.unary(Method.workerInfo, InfoRequest(handshake: s.handshake), response: WorkerInfo.self)
            #expect(info.sessions == 1 && info.kvUsedBytes > 0 && info.counters.tokens == 5)
        }
    }

    @Test func aFillGivesTheSameKVAsRunningWithNoLayers() async throws {
        try await withWorker { s in
            // Session 1: position 0 runs, position 1 skips the worker (a fill), position 2 runs.
            _ = try await forward(s, [TokenEntry(sessionID: 1, position: 0)], [5])
            let viaFill = try await forward(s, [TokenEntry(sessionID: 1, position: 2)], [30], fills: [KVFillEntry(sessionID: 1, position: 1)], fillIDs: [9])
            // Reference: the shard in-process, position 1 running an empty layer set (the fill policy's K/V).
            var h = try s.model.head.embed([5, 9, 30])
            let cache = s.model.makeCache()
            _ = try h.withUnsafeMutableBufferPointer {
                try s.model.shard.forward($0.baseAddress!, tokens: [ShardToken(cache: cache, position: 0), ShardToken(cache: cache, position: 1, layers: LayerSet()),
                                                                     ShardToken(cache: cache, position: 2)])
            }
            let dim = s.model.config.dim
            #expect(TestSupportMath.maxAbsDiff(viaFill, Array(h[(2 * dim)...])) <= 1e-5)
        }
    }

    @Test func errorsHaveTheRightCodes() async throws {
        try await withWorker(budgetBytes: 200_000) { s in
            // Another model's fingerprint.
            let wrong = await ClusterTestSupport.rpcError {
                _ = try await forward(s, [TokenEntry(sessionID: 1, position: 0)], [5], handshake: Handshake(modelFingerprint: "0000"))
            }
            #expect(wrong?.code == .failedPrecondition)
            // A layer this worker does not hold.
            let outside = await ClusterTestSupport.rpcError { _ = try await forward(s, [TokenEntry(sessionID: 1, position: 0, layers: [7])], [5]) }
            #expect(outside?.code == .invalidArgument && outside?.message.contains("layer 7") == true)
            // Hidden rows of the wrong width.
            let badShape = await ClusterTestSupport.rpcError {
                let r = ForwardRequest(handshake: s.handshake, tokens: [TokenEntry(sessionID: 1, position: 0)], hidden: WireTensor([1, 2, 3], shape: [1, 3]))
                _ = try await s.channel.unary(Method.workerForward, r, response: ForwardReply.self)
            }
            #expect(badShape?.code == .invalidArgument)
            // Over the row limit.
            let tooMany = await ClusterTestSupport.rpcError { _ = try await forward(s, (0..<65).map { TokenEntry(sessionID: 2, position: $0) }, Array(repeating: 5, count: 65)) }
            #expect(tooMany?.code == .resourceExhausted)
            // KV budget: 200 kB holds one session of 64 positions (3 layers × 2 × 64 × 32 floats = 49 kB) a few times.
            var exhausted: RPCError?
            for id in 10..<20 where exhausted == nil {
                exhausted = await ClusterTestSupport.rpcError { _ = try await forward(s, [TokenEntry(sessionID: UInt64(id), position: 0)], [5]) }
            }
            #expect(exhausted?.code == .resourceExhausted && exhausted?.message.contains("KV budget") == true)
            // Closing frees it; a closed session is NOT_FOUND afterwards, a rewind is FAILED_PRECONDITION.
            let closed = try await s.channel.unary(Method.workerCloseSession, CloseSessionRequest(handshake: s.handshake, sessionIDs: Array(10..<20)),
                                                   response: CloseSessionReply.self)
            #expect(closed.closed >= 1 && closed.freedBytes > 0)
            let gone = await ClusterTestSupport.rpcError { _ = try await forward(s, [TokenEntry(sessionID: 10, position: 1)], [5]) }
            #expect(gone?.code == .notFound)
            _ = try await forward(s, [TokenEntry(sessionID: 30, position: 0), TokenEntry(sessionID: 30, position: 1)], [5, 6])
            let rewind = await ClusterTestSupport.rpcError { _ = try await forward(s, [TokenEntry(sessionID: 30, position: 0)], [5]) }
            #expect(rewind?.code == .failedPrecondition)
            // What this worker cannot compute (under `fill` every position reaches it): a session it never saw that
            // starts past 0 (say, after it restarted), a gap, a gap inside one batch. Each names the reason a
            // coordinator acts on, and changes nothing: the session goes on from where it stands.
            let unknown = await ClusterTestSupport.rpcError { _ = try await forward(s, [TokenEntry(sessionID: 31, position: 7)], [5]) }
            #expect(unknown?.code == .failedPrecondition && unknown?.message.hasPrefix("session not held here") == true, "\(String(describing: unknown))")
            let gap = await ClusterTestSupport.rpcError { _ = try await forward(s, [TokenEntry(sessionID: 30, position: 3)], [5]) }
            #expect(gap?.code == .failedPrecondition && gap?.message.hasPrefix("session not held here") == true, "\(String(describing: gap))")
            let inside = await ClusterTestSupport.rpcError {
                _ = try await forward(s, [TokenEntry(sessionID: 30, position: 2), TokenEntry(sessionID: 30, position: 4)], [5, 6])
            }
            #expect(inside?.code == .failedPrecondition && inside?.message.contains("gap") == true, "\(String(describing: inside))")
            _ = try await forward(s, [TokenEntry(sessionID: 30, position: 2)], [5])
            // Hidden states that are not finite.
            let nan = await ClusterTestSupport.rpcError {
                var h = try s.model.head.embed([5])
                h[3] = .nan
                let r = ForwardRequest(handshake: s.handshake, tokens: [TokenEntry(sessionID: 40, position: 0)],
                                       hidden: WireTensor(h, shape: [1, s.model.config.dim]))
                _ = try await s.channel.unary(Method.workerForward, r, response: ForwardReply.self)
            }
            #expect(nan?.code == .invalidArgument && nan?.message.contains("finite") == true, "\(String(describing: nan))")
            // Malformed bytes.
            let garbage = await ClusterTestSupport.rpcError { _ = try await s.channel.unary(Method.workerForward, request: [0x0a, 0xff, 0xff]) }
            #expect(garbage?.code == .invalidArgument)
        }
    }
}

extension WorkerServiceTests {
    /// A worker shared by two coordinators, each with its own token: neither can write to, rebuild, adopt or close
    /// the other's session, and the owner's session is untouched by the attempts.
    @Test func sessionsBelongToTheClientThatMadeThem() async throws {
        try await withWorker(tokens: ["alpha", "beta"]) { s in
            let dim = s.model.config.dim
            let other = RPCChannel(ChannelConfig(target: "127.0.0.1:\(s.server.port!)", bearerToken: "beta"))
            defer { other.close() }
            let ids = [5, 9, 30]
            let mine = try await forward(s, (0..<2).map { TokenEntry(sessionID: 7, position: $0) }, Array(ids.prefix(2)))
            func refused(_ body: () async throws -> Void) async -> Bool {
                let e = await ClusterTestSupport.rpcError(body)
                return e?.code == .permissionDenied && e?.message.contains("another client") == true
            }
            let next = ForwardRequest(handshake: s.handshake, tokens: [TokenEntry(sessionID: 7, position: 2)],
                                      hidden: WireTensor(try s.model.head.embed([ids[2]]), shape: [1, dim]))
            #expect(await refused { _ = try await other.unary(Method.workerForward, next, response: ForwardReply.self) }, "write")
            let restore = RestoreSessionRequest(handshake: s.handshake, history: [TokenEntry(sessionID: 7, position: 0)],
                                                hidden: WireTensor(try s.model.head.embed([1]), shape: [1, dim]), kvPolicy: .fill)
            #expect(await refused { _ = try await other.unary(Method.workerRestoreSession, restore, response: RestoreSessionReply.self) }, "rebuild")
            #expect(await refused {
                _ = try await other.unary(Method.workerAdoptSession, AdoptSessionRequest(handshake: s.handshake, sessionID: 7, positions: 1),
                                          response: AdoptSessionReply.self)
            }, "adopt")
            let close = try await other.unary(Method.workerCloseSession, CloseSessionRequest(handshake: s.handshake, sessionIDs: [7]),
                                              response: CloseSessionReply.self)
            #expect(close.closed == 0, "another client's close leaves it")
            // The owner's session went on untouched: its next token equals one batch of all three.
            let third = try await s.channel.unary(Method.workerForward, next, response: ForwardReply.self).hidden.floats()
            var local = try s.model.head.embed(ids)
            let cache = s.model.makeCache()
            _ = try local.withUnsafeMutableBufferPointer {
                try s.model.shard.forward($0.baseAddress!, tokens: (0..<3).map { ShardToken(cache: cache, position: $0) })
            }
            #expect(mine + third == local)
            // Each client has sessions of its own.
            _ = try await other.unary(Method.workerForward, ForwardRequest(handshake: s.handshake, tokens: [TokenEntry(sessionID: 8, position: 0)],
                                                                           hidden: WireTensor(try s.model.head.embed([5]), shape: [1, dim])),
                                      response: ForwardReply.self)
            let closedMine = try await s.channel.unary(Method.workerCloseSession, CloseSessionRequest(handshake: s.handshake, sessionIDs: [7, 8]),
                                                       response: CloseSessionReply.self)
            #expect(closedMine.closed == 1)
        }
    }

    /// One RestoreSession rebuilds several sessions at once, their rows packed into shared batches (batch-invariant
    /// kernels): each session's next token then comes out bit for bit as if it had never been lost.
    @Test func oneRestoreRebuildsSeveralSessionsExactly() async throws {
        try await withWorker { s in
            let dim = s.model.config.dim
            let first = [5, 9, 30, 41, 7], second = [12, 3, 200]
            let e1 = try s.model.head.embed(first), e2 = try s.model.head.embed(second)
            func rows(_ e: [Float], _ r: Range<Int>) -> [Float] { Array(e[(r.lowerBound * dim)..<(r.upperBound * dim)]) }
            // Two batches, each mixing both sessions; each session's positions in order.
            let history = (0..<3).map { TokenEntry(sessionID: 1, position: $0) } + (0..<2).map { TokenEntry(sessionID: 2, position: $0) }
                + (3..<5).map { TokenEntry(sessionID: 1, position: $0) } + [TokenEntry(sessionID: 2, position: 2)]
            let hidden = rows(e1, 0..<3) + rows(e2, 0..<2) + rows(e1, 3..<5) + rows(e2, 2..<3)
            let reply = try await s.channel.unary(Method.workerRestoreSession,
                                                  RestoreSessionRequest(handshake: s.handshake, history: history,
                                                                        hidden: WireTensor(hidden, shape: [8, dim]), kvPolicy: .fill, groupSizes: [5, 3]),
                                                  response: RestoreSessionReply.self)
            #expect(reply.sessions == 2 && reply.positions == 8)
            for (session, ids, next) in [(UInt64(1), first, 77), (2, second, 78)] {
                let got = try await forward(s, [TokenEntry(sessionID: session, position: ids.count)], [next])
                var local = try s.model.head.embed(ids + [next])
                let cache = s.model.makeCache()
                _ = try local.withUnsafeMutableBufferPointer {
                    try s.model.shard.forward($0.baseAddress!, tokens: (0...ids.count).map { ShardToken(cache: cache, position: $0) })
                }
                #expect(got == Array(local.suffix(dim)), "session \(session)")
            }
            // A session's positions out of order are refused by name.
            let backwards = RestoreSessionRequest(handshake: s.handshake, history: [TokenEntry(sessionID: 3, position: 1), TokenEntry(sessionID: 3, position: 0)],
                                                  hidden: WireTensor(rows(e1, 0..<2), shape: [2, dim]), kvPolicy: .fill)
            let error = await ClusterTestSupport.rpcError { _ = try await s.channel.unary(Method.workerRestoreSession, backwards, response: RestoreSessionReply.self) }
            #expect(error?.code == .invalidArgument && error?.message.contains("session 3") == true)
        }
    }

    /// Routed tokens: the worker's own router decides, exactly as the in-process engine with the same router; the
    /// reply says which layers ran; and every way of getting routing wrong has its code.
    @Test func routedForwardEqualsTheEngineAndRejectsBadRouting() async throws {
        let path = try ClusterTestSupport.writeTinyModel(layers: 4)
        let (_, router) = try await blocking { try TinyRouter.distil(modelPath: path) }
        let policy = RoutingPolicy(threshold: try router.threshold(forSkipRate: 0.4, alwaysRun: LayerSet()), alwaysRun: LayerSet(), modelLayers: 4)
        let wire = WireRouting(routerFingerprint: router.fingerprint, threshold: policy.threshold, alwaysRun: [], minLayers: 0)
        let ids = [5, 9, 30, 41, 77, 12, 3, 200]
        try await withWorker(path: path, router: router) { s in
            let dim = s.model.config.dim
            let identity = StageIdentity(layers: LayerRange(0, 4), activations: "f32", routerFingerprint: router.fingerprint)
            func settle(_ routing: WireRouting?) async throws -> UInt64 {
                try await s.channel.unary(Method.workerConfigure, ConfigureRequest(handshake: s.handshake, expect: identity,
                                                                                   policy: StagePolicy(routing: routing)),
                                          response: ConfigureReply.self).policyID
            }
            func request(_ tokens: [TokenEntry], policy: UInt64) throws -> ForwardRequest {
                ForwardRequest(handshake: s.handshake, tokens: tokens, hidden: WireTensor(try s.model.head.embed(ids.prefix(tokens.count).map { $0 }), shape: [tokens.count, dim]),
                               policyID: policy, expect: identity)
            }
            let routedPolicy = try await settle(wire)
            #expect(try await settle(wire) == routedPolicy, "one policy, one id")
            let entries = ids.indices.map { TokenEntry(sessionID: 1, position: $0, routed: true) }
            let reply = try await s.channel.unary(Method.workerForward, try request(entries, policy: routedPolicy), response: ForwardReply.self)
            var local = try s.model.head.embed(ids)
            let cache = s.model.makeCache()
            let ran = try local.withUnsafeMutableBufferPointer {
                try s.model.shard.forward($0.baseAddress!, tokens: ids.indices.map { ShardToken(cache: cache, position: $0) },
                                          chooser: RouterChooser(router: router, policy: policy))
            }
            #expect(reply.hidden.floats() == local, "bit for bit")
            #expect(reply.layersRun == ran.map { (0..<4).filter($0.contains) })
            #expect(reply.layersRun.contains { $0.count < 4 }, "the router skipped something: \(reply.layersRun)")
            let info = try await s.channel.unary(Method.workerInfo, InfoRequest(handshake: s.handshake), response: WorkerInfo.self)
            #expect(info.routerFingerprint == router.fingerprint && info.counters.layerSkips > 0)

            // Every way of getting the policy wrong is refused when it is settled, with its code.
            var other = wire
            other.routerFingerprint = "feed"
            let wrongRouter = await ClusterTestSupport.rpcError { _ = try await settle(other) }
            #expect(wrongRouter?.code == .failedPrecondition && wrongRouter?.message.contains("router") == true)
            var badLayer = wire
            badLayer.alwaysRun = [4_000_000_000]
            let outside = await ClusterTestSupport.rpcError { _ = try await settle(badLayer) }
            #expect(outside?.code == .invalidArgument)
            var nan = wire
            nan.threshold = .nan
            let notANumber = await ClusterTestSupport.rpcError { _ = try await settle(nan) }
            #expect(notANumber?.code == .invalidArgument)
            var elsewhere = identity
            elsewhere.layers = LayerRange(0, 2)
            let wrongRange = await ClusterTestSupport.rpcError {
                _ = try await s.channel.unary(Method.workerConfigure, ConfigureRequest(handshake: s.handshake, expect: elsewhere, policy: StagePolicy()),
                                              response: ConfigureReply.self)
            }
            #expect(wrongRange?.code == .failedPrecondition && wrongRange?.message.contains("this worker serves") == true)

            // And when a Forward names a policy that cannot route its tokens, or none this worker settled.
            let one = [TokenEntry(sessionID: 2, position: 0, routed: true)]
            let noPolicy = await ClusterTestSupport.rpcError { _ = try await s.channel.unary(Method.workerForward, try request(one, policy: 0), response: ForwardReply.self) }
            #expect(noPolicy?.code == .invalidArgument && noPolicy?.message.contains("policy_id") == true)
            let plainPolicy = try await settle(nil)
            let unrouted = await ClusterTestSupport.rpcError { _ = try await s.channel.unary(Method.workerForward, try request(one, policy: plainPolicy), response: ForwardReply.self) }
            #expect(unrouted?.code == .invalidArgument && unrouted?.message.contains("routes nothing") == true)
            let unknown = await ClusterTestSupport.rpcError { _ = try await s.channel.unary(Method.workerForward, try request(one, policy: plainPolicy ^ 1), response: ForwardReply.self) }
            #expect(unknown?.code == .failedPrecondition && unknown?.message.contains("not settled here") == true)
            let twice = await ClusterTestSupport.rpcError {
                _ = try await s.channel.unary(Method.workerForward, try request([TokenEntry(sessionID: 3, position: 0), TokenEntry(sessionID: 3, position: 0)], policy: 0),
                                              response: ForwardReply.self)
            }
            #expect(twice?.code == .failedPrecondition && twice?.message.contains("twice") == true)
        }
        // A worker without a router refuses a routing policy by name.
        try await withWorker(path: path) { s in
            let request = ConfigureRequest(handshake: s.handshake, expect: StageIdentity(layers: LayerRange(0, 4), activations: "f32", routerFingerprint: ""),
                                           policy: StagePolicy(routing: wire))
            let none = await ClusterTestSupport.rpcError { _ = try await s.channel.unary(Method.workerConfigure, request, response: ConfigureReply.self) }
            #expect(none?.code == .failedPrecondition && none?.message.contains("no router") == true)
        }
    }
}

enum TestSupportMath {
    static func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count)
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }
}
