import ArgumentParser
import Foundation
import RadialRPC

/// TLS and bearer-token flags for a server process. Both are off unless given.
public struct ServerSecurityOptions: ParsableArguments {
    public init() {}
    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve TLS (needs --tls-key).")
    public var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-cert.")
    public var tlsKey: String?
    @Option(name: .customLong("tls-client-ca"), help: "PEM CA: require client certificates it signed (mutual TLS).")
    public var tlsClientCA: String?
    @Option(name: .customLong("auth-token"), help: "Require 'authorization: Bearer TOKEN' on every call except health checks (or set RADIAL_AUTH_TOKEN).")
    public var authToken: String?

    public func validate() throws {
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if tlsClientCA != nil && tlsCert == nil { throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key") }
    }

    public func serverConfig(address: String) throws -> ServerConfig {
        var config = ServerConfig(address: address)
        if let tlsCert, let tlsKey {
            config.tls = try ServerTLS(certificateFile: tlsCert, keyFile: tlsKey, clientCAFile: tlsClientCA)
        }
        config.bearerToken = authToken ?? ProcessInfo.processInfo.environment["RADIAL_AUTH_TOKEN"]
        return config
    }
}

/// TLS and bearer-token flags for a client.
public struct ClientSecurityOptions: ParsableArguments {
    public init() {}
    @Flag(name: .customLong("tls"), help: "Connect with TLS, verifying the server against the system's CAs (or --tls-ca).")
    public var tls = false
    @Option(name: .customLong("tls-ca"), help: "PEM CA that signed the server's certificate (implies --tls).")
    public var tlsCA: String?
    @Option(name: .customLong("tls-cert"), help: "PEM client certificate for mutual TLS (needs --tls-key).")
    public var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-cert.")
    public var tlsKey: String?
    @Option(name: .customLong("auth-token"), help: "Send 'authorization: Bearer TOKEN' (or set RADIAL_AUTH_TOKEN).")
    public var authToken: String?

    public func validate() throws {
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    public func channelConfig(target: String) throws -> ChannelConfig {
        var config = ChannelConfig(target: target)
        if tls || tlsCA != nil || tlsCert != nil {
            config.tls = try ClientTLS(caFile: tlsCA, certificateFile: tlsCert, keyFile: tlsKey)
        }
        config.bearerToken = authToken ?? ProcessInfo.processInfo.environment["RADIAL_AUTH_TOKEN"]
        return config
    }
}

/// Prints an RPC failure the way gRPC tools do and exits non-zero.
public func exitWithRPCError(_ error: any Error, _ what: String) -> Never {
    let text = (error as? RPCError).map { "\($0.code): \($0.message)" } ?? String(describing: error)
    FileHandle.standardError.write(Data("\(Serving.program): \(what): \(text)\n".utf8))
    exit(1)
}
