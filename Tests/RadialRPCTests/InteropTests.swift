import Foundation
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing

/// Interop with a gRPC implementation nobody here wrote: Python grpcio (Tests/interop/grpcio_peer.py).
@Suite(.serialized) struct InteropTests {
    static var peer: String { RPCTestSupport.packageRoot + "/Tests/interop/grpcio_peer.py" }
    static var radial: String { RPCTestSupport.binDir + "/radial" }

    static func python(_ args: [String]) throws -> String {
        try RPCTestSupport.run("python3", [peer] + args).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func grpcioClientCallsSwiftServer() async throws {
        let server = try await ServerProcess.launch(Self.radial, ["serve-echo", "--listen", "127.0.0.1:0", "--auth-token", "abc"])
        defer { server.stop() }
        #expect(try Self.python(["health", server.address]) == "SERVING")
        #expect(try Self.python(["health", server.address, "--service", "radial.Diagnostics"]) == "SERVING")
        #expect(try Self.python(["health", server.address, "--service", "nope"]) == "NOT_FOUND")
        let echo = try JSONSerialization.jsonObject(with: Data(try Self.python(["echo", server.address, "--size", "70000", "--token", "abc"]).utf8)) as! [String: Any]
        #expect(echo["status"] as? String == "OK")
        #expect(echo["bytes"] as? Int == 70000)
        #expect(echo["equal"] as? Bool == true)
        let noToken = try JSONSerialization.jsonObject(with: Data(try Self.python(["echo", server.address]).utf8)) as! [String: Any]
        #expect(noToken["status"] as? String == "UNAUTHENTICATED")
    }

    @Test func grpcioClientMalformedMessageIsInvalidArgument() async throws {
        let server = try await ServerProcess.launch(Self.radial, ["serve-echo", "--listen", "127.0.0.1:0"])
        defer { server.stop() }
        let out = try Self.python(["call-raw", server.address, "/radial.Diagnostics/Echo", "0affffff"])
        #expect(out.hasPrefix("INVALID_ARGUMENT"), "got \(out)")
        let unknown = try Self.python(["call-raw", server.address, "/radial.Worker/Nope", "00"])
        #expect(unknown.hasPrefix("UNIMPLEMENTED"), "got \(unknown)")
    }

    @Test
    func swiftClientCallsGrpcioServer() async throws {
        let server = try await ServerProcess.launch("/usr/bin/env", ["python3", Self.peer, "serve"])
        defer { server.stop() }
        let channel = RPCChannel(ChannelConfig(target: server.address))
        let health = try await channel.unary(Method.healthCheck, HealthCheckRequest(), response: HealthCheckResponse.self,
                                             options: CallOptions(timeout: .seconds(20), waitForReady: true))
        #expect(health.status == .serving)
        let payload = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 * 31) }
        let reply = try await channel.unary(Method.echo, EchoRequest(payload: payload), response: EchoReply.self)
        #expect(reply.payload == payload)
        var indices: [Int] = []
        for try await r in try channel.serverStreaming(Method.echoStream, EchoRequest(payload: [1], streamCount: 20), response: EchoReply.self) {
            indices.append(r.index)
        }
        #expect(indices == Array(0..<20))
        let missing = await RPCTestSupport.rpcError {
            _ = try await channel.unary(Method.workerInfo, InfoRequest(handshake: Handshake(modelFingerprint: "x")), response: WorkerInfo.self)
        }
        #expect(missing?.code == .unimplemented)
    }
}
