import Foundation
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing

/// The transport between two processes: `radial serve-echo` in a child process, this process as the client.
@Suite(.serialized) struct CrossProcessTests {
    static var radial: String { RPCTestSupport.binDir + "/radial" }

    #if arch(x86_64)
    /// Every executable executes itself again once with glibc's tunable against `rep movsb` copies
    /// (ProcessTuning): same pid and arguments, the tunable in its environment; a GLIBC_TUNABLES that already
    /// names it (the user's choice) is kept as it is.
    @Test func executablesRunWithTheCopyTunableSamePidAndArguments() async throws {
        func procFile(_ server: ServerProcess, _ name: String) throws -> [String] {
            let data = try Data(contentsOf: URL(fileURLWithPath: "/proc/\(server.process.processIdentifier)/\(name)"))
            return data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        }
        let server = try await ServerProcess.launch(Self.radial, ["serve-echo", "--listen", "127.0.0.1:0"])
        defer { server.stop() }
        #expect(try procFile(server, "environ").contains { $0.hasPrefix("GLIBC_TUNABLES=") && $0.contains("x86_rep_movsb_threshold=1099511627776") })
        #expect(try procFile(server, "cmdline") == [Self.radial, "serve-echo", "--listen", "127.0.0.1:0"])
        let channel = RPCChannel(ChannelConfig(target: server.address))
        defer { channel.close() }
        let reply = try await channel.unary(Method.echo, EchoRequest(payload: [5]), response: EchoReply.self)
        #expect(reply.payload == [5], "the re-executed process serves")

        let own = "glibc.cpu.x86_rep_movsb_threshold=4096"
        let mine = try await ServerProcess.launch(Self.radial, ["serve-echo", "--listen", "127.0.0.1:0"], environment: ["GLIBC_TUNABLES": own])
        defer { mine.stop() }
        #expect(try procFile(mine, "environ").contains("GLIBC_TUNABLES=" + own))
    }
    #endif

    @Test func unaryStreamingConcurrencyLargeMessagesAcrossProcesses() async throws {
        let server = try await ServerProcess.launch(Self.radial, ["serve-echo", "--listen", "127.0.0.1:0"])
        defer { server.stop() }
        let channel = RPCChannel(ChannelConfig(target: server.address))
        let reply = try await channel.unary(Method.echo, EchoRequest(payload: [1, 2, 3]), response: EchoReply.self,
                                            options: CallOptions(timeout: .seconds(10), waitForReady: true))
        #expect(reply.payload == [1, 2, 3])

        var count = 0
        for try await r in try channel.serverStreaming(Method.echoStream, EchoRequest(payload: [4], streamCount: 100), response: EchoReply.self) {
            #expect(r.index == count)
            count += 1
        }
        #expect(count == 100)

        let ok = try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let payload = [UInt8](repeating: UInt8(i & 0xFF), count: 64 + i)
                    return try await channel.unary(Method.echo, EchoRequest(payload: payload), response: EchoReply.self).payload == payload
                }
            }
            return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
        }
        #expect(ok == 200)

        let big = [UInt8](repeating: 0xA5, count: 16 << 20)
        let bigReply = try await channel.unary(Method.echo, EchoRequest(payload: big), response: EchoReply.self)
        #expect(bigReply.payload == big)

        let late = await RPCTestSupport.rpcError {
            _ = try await channel.unary(Method.echo, EchoRequest(payload: [1], delayMilliseconds: 2000), response: EchoReply.self,
                                        options: CallOptions(timeout: .milliseconds(100)))
        }
        #expect(late?.code == .deadlineExceeded)

        let garbage = await RPCTestSupport.rpcError { _ = try await channel.unary(Method.echo, request: [0x0A, 0xFF, 0xFF, 0xFF]) }
        #expect(garbage?.code == .invalidArgument)

        // Still serving after all that; then SIGTERM exits cleanly.
        #expect(try await channel.unary(Method.healthCheck, HealthCheckRequest(), response: HealthCheckResponse.self).status == .serving)
        #expect(server.stop() == 0)
    }

    @Test func sigtermDrainsTheCallInFlight() async throws {
        let server = try await ServerProcess.launch(Self.radial, ["serve-echo", "--listen", "127.0.0.1:0"])
        let channel = RPCChannel(ChannelConfig(target: server.address))
        _ = try await channel.unary(Method.echo, EchoRequest(payload: [0]), response: EchoReply.self,
                                    options: CallOptions(timeout: .seconds(10), waitForReady: true))
        // A stream whose handler pauses before each reply: the first reply proves the call is inside its handler
        // in the other process (a fixed sleep is not enough when the whole suite loads both cores), so SIGTERM
        // comes while it runs, and a drain must let the rest arrive.
        let stream = try channel.serverStreaming(Method.echoStream, EchoRequest(payload: [8], streamCount: 3, delayMilliseconds: 700),
                                                 response: EchoReply.self)
        var replies = stream.makeAsyncIterator()
        #expect(try await replies.next()?.index == 0)
        server.process.terminate()
        var rest: [Int] = []
        while let reply = try await replies.next() { rest.append(reply.index) }
        #expect(rest == [1, 2], "the stream in flight finished during the drain")
        #expect(server.stop() == 0)
    }

    @Test func tokenAndTLSAcrossProcesses() async throws {
        let certs = try RPCTestSupport.makeCertificates()
        let server = try await ServerProcess.launch(Self.radial, ["serve-echo", "--listen", "127.0.0.1:0", "--auth-token", "tok",
                                                     "--tls-cert", certs.serverCert, "--tls-key", certs.serverKey])
        defer { server.stop() }
        let tls = try ClientTLS(caFile: certs.ca)
        let noToken = RPCChannel(ChannelConfig(target: server.address, tls: tls))
        let error = await RPCTestSupport.rpcError {
            _ = try await noToken.unary(Method.echo, EchoRequest(payload: [1]), response: EchoReply.self,
                                        options: CallOptions(timeout: .seconds(10), waitForReady: true))
        }
        #expect(error?.code == .unauthenticated)
        let wrong = RPCChannel(ChannelConfig(target: server.address, tls: tls, bearerToken: "tok2"))
        let wrongError = await RPCTestSupport.rpcError { _ = try await wrong.unary(Method.echo, EchoRequest(payload: [1]), response: EchoReply.self) }
        #expect(wrongError?.code == .unauthenticated)
        let good = RPCChannel(ChannelConfig(target: server.address, tls: tls, bearerToken: "tok"))
        #expect(try await good.unary(Method.echo, EchoRequest(payload: [6]), response: EchoReply.self).payload == [6])
        // The CLI's health probe works against it too (health needs no token).
        let out = try RPCTestSupport.run(Self.radial, ["health", server.address, "--tls-ca", certs.ca])
        #expect(out.trimmingCharacters(in: .whitespacesAndNewlines) == "serving")
    }

    @Test func badFlagsAndBusyPortGiveClearErrors() async throws {
        let server = try await ServerProcess.launch(Self.radial, ["serve-echo", "--listen", "127.0.0.1:0"])
        defer { server.stop() }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: Self.radial)
        p.arguments = ["serve-echo", "--listen", server.address]
        let err = Pipe()
        p.standardError = err
        p.standardOutput = Pipe()
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(p.terminationStatus != 0)
        #expect(text.contains("cannot listen on"), "got: \(text)")
        let q = Process()
        q.executableURL = URL(fileURLWithPath: Self.radial)
        q.arguments = ["serve-echo", "--tls-cert", "/nonexistent.pem"]
        q.standardError = Pipe()
        q.standardOutput = Pipe()
        try q.run()
        q.waitUntilExit()
        #expect(q.terminationStatus != 0)
    }
}
