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

    static func makeCertificates() throws -> (dir: String, ca: String, serverCert: String, serverKey: String, clientCert: String, clientKey: String) {
        try TestPaths.makeCertificates()
    }
}

typealias RPCTestFailure = TestProcessFailure
