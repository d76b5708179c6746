import Foundation
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing

enum RPCTestSupport {
    static var packageRoot: String { TestPaths.packageRoot }
    static var binDir: String { TestPaths.binDir }
    static func tempDir() throws -> String { try TestPaths.tempDir() }

    /// A server on a free loopback port with Health, Diagnostics and whatever `register` adds; a channel to it.
    static func withServer<R>(_ configure: (inout ServerConfig) -> Void = { _ in },
                              channel channelConfigure: (inout ChannelConfig) -> Void = { _ in },
                              register: (RPCServer) -> Void = { _ in },
                              _ body: (RPCServer, RPCChannel) async throws -> R) async throws -> R {
        var config = ServerConfig(address: "127.0.0.1:0")
        configure(&config)
        let server = RPCServer(config: config)
        HealthService().register(on: server)
        DiagnosticsService().register(on: server)
        register(server)
        let port = try server.start()
        var channelConfig = ChannelConfig(target: "127.0.0.1:\(port)")
        channelConfigure(&channelConfig)
        let channel = RPCChannel(channelConfig)
        do {
            let result = try await body(server, channel)
            channel.close()
            await server.shutdown(grace: .seconds(1))
            return result
        } catch {
            channel.close()
            await server.shutdown(grace: .seconds(1))
            throw error
        }
    }

    /// Runs `body` expecting an RPCError; returns it.
    static func rpcError(_ body: () async throws -> Void) async -> RPCError? {
        do {
            try await body()
            return nil
        } catch let error as RPCError {
            return error
        } catch {
            return RPCError(.unknown, "not an RPCError: \(error)")
        }
    }

    @discardableResult
    static func run(_ executable: String, _ args: [String]) throws -> String { try TestPaths.run(executable, args) }

    /// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with openssl.
    static func makeCertificates() throws -> (dir: String, ca: String, serverCert: String, serverKey: String, clientCert: String, clientKey: String) {
        let d = try tempDir()
        func ssl(_ args: String) throws { try run("openssl", args.split(separator: " ").map(String.init)) }
        try ssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=radial-test-ca -keyout \(d)/ca.key -out \(d)/ca.pem")
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\n".write(toFile: "\(d)/san.ext", atomically: true, encoding: .utf8)
        for name in ["server", "client"] {
            try ssl("req -newkey rsa:2048 -nodes -subj /CN=\(name) -keyout \(d)/\(name).key -out \(d)/\(name).csr")
            try ssl("x509 -req -in \(d)/\(name).csr -CA \(d)/ca.pem -CAkey \(d)/ca.key -CAcreateserial -days 2 -extfile \(d)/san.ext -out \(d)/\(name).pem")
        }
        return (d, "\(d)/ca.pem", "\(d)/server.pem", "\(d)/server.key", "\(d)/client.pem", "\(d)/client.key")
    }
}

typealias RPCTestFailure = TestProcessFailure
