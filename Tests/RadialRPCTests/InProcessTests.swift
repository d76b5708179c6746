import Foundation
import RadialProtocol
import RadialRPC
import Synchronization
import Testing

/// The transport inside one process: a server and a client channel over real loopback HTTP/2.
@Suite struct InProcessTests {
    @Test func unaryEchoRoundTripsPayloadAndReportsBoundPort() async throws {
        try await RPCTestSupport.withServer { server, channel in
            #expect((server.port ?? 0) > 0)
            let payload = (0..<5000).map { UInt8(truncatingIfNeeded: $0 * 7) }
            let reply = try await channel.unary(Method.echo, EchoRequest(payload: payload), response: EchoReply.self)
            #expect(reply.payload == payload)
            let sized = try await channel.unary(Method.echo, EchoRequest(payload: [1], replyBytes: 300), response: EchoReply.self)
            #expect(sized.payload.count == 300)
            // A reply over the message limit is refused before any memory is spent on it.
            do {
                _ = try await channel.unary(Method.echo, EchoRequest(replyBytes: 1_000_000_000), response: EchoReply.self)
                Issue.record("a 1 GB echo reply was accepted")
            } catch let error as RPCError {
                #expect(error.code == .invalidArgument && error.message.contains("reply_bytes"), "\(error)")
            }
        }
    }

    /// Typed messages are packed straight into gRPC's send buffer (no array in between). Sizes around gRPC's
    /// inline-slice limit (~23 bytes, where a slice keeps its bytes in the struct itself) and past one read
    /// chunk must arrive intact, both ways, unary and streaming.
    @Test func typedMessagesPackedIntoTheSendBufferArriveIntactAtEverySize() async throws {
        // The writer path gives protobuf's own encoding: field 1 (payload), length-delimited.
        #expect(EchoRequest(payload: [7, 8]).wireBytes() == [0x0A, 2, 7, 8])
        #expect(EchoReply(payload: [], index: 3).wireBytes() == [0x10, 3])
        try await RPCTestSupport.withServer { _, channel in
            for size in [0, 1, 5, 20, 22, 23, 24, 25, 100, 2048, 70_000, 300_001] {
                let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ size) }
                let reply = try await channel.unary(Method.echo, EchoRequest(payload: payload), response: EchoReply.self)
                #expect(reply.payload == payload, "unary, \(size) bytes")
                var streamed: [[UInt8]] = []
                for try await r in try channel.serverStreaming(Method.echoStream, EchoRequest(payload: payload, streamCount: 2),
                                                               response: EchoReply.self) {
                    streamed.append(r.payload)
                }
                #expect(streamed == [payload, payload], "streaming, \(size) bytes")
            }
        }
    }

    /// A unary method with a fast path: the inline handler answers what it can (or fails with its status), and
    /// hands the rest (nil) to the async handler, which still sees the call's context.
    @Test func inlineHandlerAnswersOrDefersToTheAsyncOne() async throws {
        let ranAsync = Atomic(0)
        try await RPCTestSupport.withServer(register: { server in
            server.addUnary("/test.Inline/Call", inline: { request, _ in
                if request.first == 9 { throw RPCError(.notFound, "nine is not here") }
                return request.first == 1 ? [1, 1] : nil
            }) { request, context in
                ranAsync.add(1, ordering: .relaxed)
                try await Task.sleep(for: .milliseconds(1))
                return [2] + (context.method == "/test.Inline/Call" ? request : [])
            }
        }) { _, channel in
            let one = try await channel.unary("/test.Inline/Call", request: [1])
            #expect(one == [1, 1])
            #expect(ranAsync.load(ordering: .relaxed) == 0, "answered inline")
            let five = try await channel.unary("/test.Inline/Call", request: [5])
            #expect(five == [2, 5])
            #expect(ranAsync.load(ordering: .relaxed) == 1, "deferred to the async handler")
            var notFound: RPCError?
            do { _ = try await channel.unary("/test.Inline/Call", request: [9]) } catch { notFound = error as? RPCError }
            #expect(notFound?.code == .notFound && notFound?.message == "nine is not here")
        }
    }

    @Test func serverStreamingDeliversEveryReplyInOrder() async throws {
        try await RPCTestSupport.withServer { _, channel in
            let stream = try channel.serverStreaming(Method.echoStream, EchoRequest(payload: [9, 8, 7], streamCount: 250),
                                                     response: EchoReply.self)
            var indices: [Int] = []
            for try await reply in stream {
                #expect(reply.payload == [9, 8, 7])
                indices.append(reply.index)
            }
            #expect(indices == Array(0..<250))
        }
    }

    @Test func twoHundredConcurrentCallsAllSucceed() async throws {
        try await RPCTestSupport.withServer { _, channel in
            let results = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<200 {
                    group.addTask {
                        let payload = [UInt8](repeating: UInt8(i % 251), count: 100 + i)
                        let reply = try await channel.unary(Method.echo, EchoRequest(payload: payload, delayMilliseconds: i % 3),
                                                            response: EchoReply.self)
                        return reply.payload == payload
                    }
                }
                var ok = 0
                for try await r in group where r { ok += 1 }
                return ok
            }
            #expect(results == 200)
        }
    }

    @Test func deadlineExceededReachesClientAndCancelsHandler() async throws {
        let diagnostics = DiagnosticsService()
        var config = ServerConfig(address: "127.0.0.1:0")
        config.pendingCallsPerMethod = 2
        let server = RPCServer(config: config)
        diagnostics.register(on: server)
        let port = try server.start()
        let channel = RPCChannel(ChannelConfig(target: "127.0.0.1:\(port)"))
        let error = await RPCTestSupport.rpcError {
            _ = try await channel.unary(Method.echo, EchoRequest(payload: [1], delayMilliseconds: 20_000), response: EchoReply.self,
                                        options: CallOptions(timeout: .milliseconds(100)))
        }
        #expect(error?.code == .deadlineExceeded)
        // No bound on the elapsed time: other suites' compute can starve this task's thread for many seconds on two
        // cores. DEADLINE_EXCEEDED plus the handler's cancellation below show the deadline ended the call.
        // The handler's sleep was cancelled when core cancelled the call at the deadline.
        for _ in 0..<1000 where diagnostics.cancelledCalls.load(ordering: .relaxed) == 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(diagnostics.cancelledCalls.load(ordering: .relaxed) == 1)
        channel.close()
        await server.shutdown()
    }

    @Test func handlerSeesDeadlineAndClientCancellation() async throws {
        let seen = Mutex<(deadline: Duration?, cancelled: Bool)>((nil, false))
        let started = Mutex(false)
        try await RPCTestSupport.withServer(register: { server in
            server.addUnary("/test.Slow/Wait") { request, context in
                seen.withLock { $0.deadline = context.timeRemaining }
                started.withLock { $0 = true }
                do {
                    try await Task.sleep(for: .seconds(600))
                } catch {
                    seen.withLock { $0.cancelled = context.isCancelled }
                    throw error
                }
                return request
            }
        }) { _, channel in
            let call = Task {
                try await channel.unary("/test.Slow/Wait", request: [1, 2, 3], options: CallOptions(timeout: .seconds(300)))
            }
            // Generous: other suites' compute can starve this process's threads for many seconds in CI (once for
            // over 30 s, which is why the deadline is 300 s: the call must be cancelled, not time out).
            for _ in 0..<6000 where !started.withLock({ $0 }) { try await Task.sleep(for: .milliseconds(10)) }
            call.cancel()
            let error = await RPCTestSupport.rpcError { _ = try await call.value }
            #expect(error?.code == .cancelled)
            for _ in 0..<6000 where !seen.withLock({ $0.cancelled }) { try await Task.sleep(for: .milliseconds(10)) }
            let observed = seen.withLock { $0 }
            #expect(observed.cancelled, "the handler saw the client's cancel")
            let remaining = try #require(observed.deadline)
            // Core sends grpc-timeout rounded up to a coarser unit, so the server may see a little over 30 s.
            #expect(remaining > .seconds(240) && remaining <= .seconds(301), "the handler saw the 300 s deadline, got \(remaining)")
        }
    }

    @Test func sixteenMegabyteMessagesBothWays() async throws {
        try await RPCTestSupport.withServer { _, channel in
            let payload = (0..<(16 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 13) }
            let reply = try await channel.unary(Method.echo, EchoRequest(payload: payload), response: EchoReply.self)
            #expect(reply.payload.count == payload.count)
            #expect(reply.payload == payload)
        }
    }

    @Test func messageLargerThanTheLimitIsResourceExhausted() async throws {
        try await RPCTestSupport.withServer({ $0.maxMessageBytes = 1 << 20 }) { _, channel in
            let error = await RPCTestSupport.rpcError {
                _ = try await channel.unary(Method.echo, EchoRequest(payload: [UInt8](repeating: 1, count: 2 << 20)), response: EchoReply.self)
            }
            #expect(error?.code == .resourceExhausted)
            // The server is still fine.
            let ok = try await channel.unary(Method.echo, EchoRequest(payload: [5]), response: EchoReply.self)
            #expect(ok.payload == [5])
        }
    }

    @Test func malformedPayloadIsInvalidArgumentAndServerKeepsServing() async throws {
        try await RPCTestSupport.withServer(register: { server in
            server.addUnary(Method.workerForward, ForwardRequest.self) { _, _ in
                ForwardReply(hidden: WireTensor([0], shape: [1, 1]), computeSeconds: 0)
            }
        }) { _, channel in
            // Garbage bytes.
            let garbage = await RPCTestSupport.rpcError { _ = try await channel.unary(Method.workerForward, request: [0xFF, 0xFF, 0xFF, 0x0F, 0x01]) }
            #expect(garbage?.code == .invalidArgument)
            #expect(garbage?.message.contains("ForwardRequest") == true)
            // Well-formed protobuf whose shapes disagree: 2 tokens, 1 row of hidden state.
            let handshake = Handshake(modelFingerprint: "abc")
            let bad = ForwardRequest(handshake: handshake, tokens: [TokenEntry(sessionID: 1, position: 0), TokenEntry(sessionID: 1, position: 1)],
                                     hidden: WireTensor([1, 2, 3, 4], shape: [1, 4]))
            let shapes = await RPCTestSupport.rpcError { _ = try await channel.unary(Method.workerForward, request: bad.wireBytes()) }
            #expect(shapes?.code == .invalidArgument)
            #expect(shapes?.message.contains("ForwardRequest.hidden") == true, "names the field: \(shapes?.message ?? "")")
            let echo = try await channel.unary(Method.echo, EchoRequest(payload: [42]), response: EchoReply.self)
            #expect(echo.payload == [42])
        }
    }

    @Test func unknownMethodIsUnimplemented() async throws {
        try await RPCTestSupport.withServer { _, channel in
            let error = await RPCTestSupport.rpcError { _ = try await channel.unary("/radial.Nope/Missing", request: []) }
            #expect(error?.code == .unimplemented)
            // The channel registers the methods it calls with core, up to a bound; past it calls go unregistered.
            for i in 0..<300 {
                let past = await RPCTestSupport.rpcError { _ = try await channel.unary("/radial.Nope/Missing\(i)", request: []) }
                #expect(past?.code == .unimplemented && past?.message.contains("Missing\(i)") == true)
            }
            let echo = try await channel.unary(Method.echo, EchoRequest(payload: [3]), response: EchoReply.self)
            #expect(echo.payload == [3])
        }
    }

    @Test func handlerErrorsMapToStatusCodes() async throws {
        try await RPCTestSupport.withServer(register: { server in
            server.addUnary("/test.Errors/NotFound") { _, _ in throw RPCError.notFound("no session 7") }
            server.addUnary("/test.Errors/Other") { _, _ in throw CocoaError(.fileNoSuchFile) }
        }) { _, channel in
            let notFound = await RPCTestSupport.rpcError { _ = try await channel.unary("/test.Errors/NotFound", request: [1]) }
            #expect(notFound == RPCError(.notFound, "no session 7"))
            let other = await RPCTestSupport.rpcError { _ = try await channel.unary("/test.Errors/Other", request: [1]) }
            #expect(other?.code == .unknown)
        }
    }

    /// A handler that answers who the server thinks is calling (`ServerContext.principal`).
    static func registerWhoAmI(_ server: RPCServer) {
        server.addUnary("/test.Who/AmI") { _, context in Array((context.principal ?? "nobody").utf8) }
    }

    static func whoAmI(_ channel: RPCChannel) async throws -> String {
        String(decoding: try await channel.unary("/test.Who/AmI", request: [1], options: CallOptions(timeout: .seconds(10))), as: UTF8.self)
    }

    @Test func bearerTokenIsRequiredExceptForHealth() async throws {
        try await RPCTestSupport.withServer({ $0.bearerToken = "s3cret"; $0.extraBearerTokens = ["other"] }, register: Self.registerWhoAmI) { server, channel in
            let missing = await RPCTestSupport.rpcError { _ = try await channel.unary(Method.echo, EchoRequest(payload: [1]), response: EchoReply.self) }
            #expect(missing?.code == .unauthenticated)
            let wrong = await RPCTestSupport.rpcError {
                _ = try await channel.unary(Method.echo, EchoRequest(payload: [1]), response: EchoReply.self,
                                            options: CallOptions(metadata: ["authorization": "Bearer s3crex"]))
            }
            #expect(wrong?.code == .unauthenticated)
            let health = try await channel.unary(Method.healthCheck, HealthCheckRequest(), response: HealthCheckResponse.self)
            #expect(health.status == .serving)
            let good = RPCChannel(ChannelConfig(target: "127.0.0.1:\(server.port!)", bearerToken: "s3cret"))
            let reply = try await good.unary(Method.echo, EchoRequest(payload: [1]), response: EchoReply.self)
            #expect(reply.payload == [1])
            // Each accepted token names its client.
            #expect(try await Self.whoAmI(good) == "token 1")
            #expect(try await Self.whoAmI(RPCChannel(ChannelConfig(target: "127.0.0.1:\(server.port!)", bearerToken: "other"))) == "token 2")
        }
    }

    @Test func tlsAndMutualTLSRoundTrip() async throws {
        let certs = try RPCTestSupport.makeCertificates()
        let serverTLS = try ServerTLS(certificateFile: certs.serverCert, keyFile: certs.serverKey, clientCAFile: certs.ca)
        try await RPCTestSupport.withServer({ $0.tls = serverTLS }, channel: {
            $0.tls = try! ClientTLS(caFile: certs.ca, certificateFile: certs.clientCert, keyFile: certs.clientKey)
        }, register: Self.registerWhoAmI) { server, channel in
            let reply = try await channel.unary(Method.echo, EchoRequest(payload: [7, 7]), response: EchoReply.self,
                                                options: CallOptions(timeout: .seconds(10)))
            #expect(reply.payload == [7, 7])
            // The client certificate names the caller.
            let who = try await Self.whoAmI(channel)
            #expect(who.hasPrefix("tls ") && who.contains("CN="), "principal: \(who)")
            // Without a client certificate the handshake fails.
            let anonymous = RPCChannel(ChannelConfig(target: "127.0.0.1:\(server.port!)", tls: try ClientTLS(caFile: certs.ca)))
            let refused = await RPCTestSupport.rpcError {
                _ = try await anonymous.unary(Method.echo, EchoRequest(payload: [1]), response: EchoReply.self,
                                              options: CallOptions(timeout: .seconds(5)))
            }
            #expect(refused?.code == .unavailable)
            // Plaintext against a TLS port fails too.
            let plain = RPCChannel(ChannelConfig(target: "127.0.0.1:\(server.port!)"))
            let plainError = await RPCTestSupport.rpcError {
                _ = try await plain.unary(Method.echo, EchoRequest(payload: [1]), response: EchoReply.self,
                                          options: CallOptions(timeout: .seconds(5)))
            }
            #expect(plainError != nil)
        }
    }

    @Test func clientReconnectsAfterServerRestartsOnSamePort() async throws {
        let first = RPCServer(config: ServerConfig(address: "127.0.0.1:0"))
        DiagnosticsService().register(on: first)
        let port = try first.start()
        let channel = RPCChannel(ChannelConfig(target: "127.0.0.1:\(port)"))
        #expect(try await channel.unary(Method.echo, EchoRequest(payload: [1]), response: EchoReply.self).payload == [1])
        await first.shutdown(grace: .milliseconds(100))
        let down = await RPCTestSupport.rpcError {
            _ = try await channel.unary(Method.echo, EchoRequest(payload: [2]), response: EchoReply.self, options: CallOptions(timeout: .seconds(2)))
        }
        #expect(down?.code == .unavailable || down?.code == .deadlineExceeded)
        let second = RPCServer(config: ServerConfig(address: "127.0.0.1:\(port)"))
        DiagnosticsService().register(on: second)
        try second.start()
        let reply = try await channel.unary(Method.echo, EchoRequest(payload: [3]), response: EchoReply.self,
                                            options: CallOptions(timeout: .seconds(10), waitForReady: true))
        #expect(reply.payload == [3])
        channel.close()
        await second.shutdown()
    }

    @Test func shutdownDrainsInFlightCallsAndRefusesNewOnes() async throws {
        let server = RPCServer(config: ServerConfig(address: "127.0.0.1:0"))
        let diagnostics = DiagnosticsService()
        diagnostics.register(on: server)
        let port = try server.start()
        let channel = RPCChannel(ChannelConfig(target: "127.0.0.1:\(port)"))
        _ = try await channel.unary(Method.echo, EchoRequest(payload: [0]), response: EchoReply.self)
        // The call sleeps 3 s in its handler: long enough that a test starved of the cooperative pool (the whole
        // suite loads both cores) still shuts down while it runs; the drain ends when the call does.
        let slow = Task { try await channel.unary(Method.echo, EchoRequest(payload: [9], delayMilliseconds: 3000), response: EchoReply.self) }
        for _ in 0..<3000 where diagnostics.delayedCalls.load(ordering: .relaxed) == 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(diagnostics.delayedCalls.load(ordering: .relaxed) == 1, "the slow call reached its handler")
        await server.shutdown(grace: .seconds(60))
        #expect(try await slow.value.payload == [9], "the in-flight call finished during the drain")
        #expect(diagnostics.cancelledCalls.load(ordering: .relaxed) == 0, "shutdown let the call finish, not cancelled it")
        let after = await RPCTestSupport.rpcError {
            _ = try await channel.unary(Method.echo, EchoRequest(payload: [1]), response: EchoReply.self, options: CallOptions(timeout: .seconds(1)))
        }
        #expect(after != nil)
    }

    @Test func healthCheckAndWatchFollowStatusChanges() async throws {
        let health = HealthService()
        let server = RPCServer(config: ServerConfig(address: "127.0.0.1:0"))
        health.register(on: server)
        health.set("radial.Worker", .notServing)
        let port = try server.start()
        let channel = RPCChannel(ChannelConfig(target: "127.0.0.1:\(port)"))
        #expect(try await channel.unary(Method.healthCheck, HealthCheckRequest(), response: HealthCheckResponse.self).status == .serving)
        let unknown = await RPCTestSupport.rpcError {
            _ = try await channel.unary(Method.healthCheck, HealthCheckRequest(service: "nope"), response: HealthCheckResponse.self)
        }
        #expect(unknown?.code == .notFound)
        let watch = try channel.serverStreaming(Method.healthWatch, HealthCheckRequest(service: "radial.Worker"), response: HealthCheckResponse.self)
        var iterator = watch.makeAsyncIterator()
        #expect(try await iterator.next()?.status == .notServing)
        health.set("radial.Worker", .serving)
        #expect(try await iterator.next()?.status == .serving)
        watch.cancel()
        channel.close()
        await server.shutdown(grace: .milliseconds(500))
    }
}
