import ArgumentParser
import Foundation
import RadialRPC

/// A bearer token from a flag, a file (`--…-file`, first line, trimmed) or an environment variable, in that order.
/// A file keeps the token out of `ps` and shell history.
public func resolveToken(_ flag: String?, file: String?, env: String, what: String) throws -> String? {
    if let flag { return flag }
    if let file {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw ValidationError("cannot read \(what) file \(file)")
        }
        let token = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard !token.isEmpty else { throw ValidationError("\(what) file \(file) is empty") }
        return token
    }
    let value = ProcessInfo.processInfo.environment[env]
    return value?.isEmpty == false ? value : nil
}

/// Every non-empty line of a token file (the first is the one `resolveToken` reads).
func tokenLines(_ file: String) throws -> [String] {
    guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw ValidationError("cannot read token file \(file)") }
    return text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

/// Whether HOST:PORT names this machine only (127.0.0.0/8, ::1, localhost).
public func isLoopback(_ address: String) -> Bool {
    var host = address
    if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
    host = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    return host == "localhost" || host == "::1" || host.hasPrefix("127.")
}

/// TLS and bearer-token flags for a server process. Both are off unless given; a server on a non-loopback address
/// refuses to start without a token or client-certificate authentication unless `--insecure`.
public struct ServerSecurityOptions: ParsableArguments {
    public init() {}
    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve TLS (needs --tls-key).")
    public var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-cert.")
    public var tlsKey: String?
    @Option(name: .customLong("tls-client-ca"), help: "PEM CA: require client certificates it signed (mutual TLS).")
    public var tlsClientCA: String?
    @Option(name: .customLong("auth-token"), help: "Require 'authorization: Bearer TOKEN' on every call except health checks; prefer --auth-token-file or RADIAL_AUTH_TOKEN, as argv is visible to other users (default: none, or RADIAL_AUTH_TOKEN).")
    public var authToken: String?
    @Option(name: .customLong("auth-token-file"), help: "Read the bearer token from the first line of this file. Further lines are further accepted tokens, one per client: a worker shared by several coordinators, each with its own token, keeps each one's sessions from the others.")
    public var authTokenFile: String?
    @Flag(name: .customLong("insecure"), help: "Allow listening on a non-loopback address without a token or client certificates (anyone who can reach the port can use it).")
    public var insecure = false

    public func validate() throws {
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        if tlsClientCA != nil && tlsCert == nil { throw ValidationError("--tls-client-ca needs --tls-cert and --tls-key") }
        if authToken != nil && authTokenFile != nil { throw ValidationError("give --auth-token or --auth-token-file, not both") }
    }

    /// The server's settings; refuses a non-loopback address with no client authentication unless `--insecure`.
    public func serverConfig(address: String) throws -> ServerConfig {
        var config = ServerConfig(address: address)
        if let tlsCert, let tlsKey {
            config.tls = try ServerTLS(certificateFile: tlsCert, keyFile: tlsKey, clientCAFile: tlsClientCA)
        }
        config.bearerToken = try resolveToken(authToken, file: authTokenFile, env: "RADIAL_AUTH_TOKEN", what: "--auth-token-file")
        if let authTokenFile { config.extraBearerTokens = Array(try tokenLines(authTokenFile).dropFirst()) }
        let authenticated = config.bearerToken != nil || tlsClientCA != nil
        if !isLoopback(address) && !authenticated {
            guard insecure else {
                throw ValidationError("""
                    refusing to listen on \(address) without client authentication: anyone who can reach it could use it. \
                    Set a token (RADIAL_AUTH_TOKEN, --auth-token-file) or require client certificates (--tls-client-ca), \
                    or pass --insecure on a network you trust
                    """)
            }
            Serving.logger.warning("--insecure: listening on \(address) without client authentication")
        }
        return config
    }
}

/// TLS and bearer-token flags for a client.
public struct ClientSecurityOptions: ParsableArguments {
    public init() {}
    @Flag(name: .customLong("tls"), help: "Connect with TLS, verifying the server against the system's CAs (or --tls-ca).")
    public var tls = false
    @Option(name: .customLong("tls-ca"), help: "PEM CA that signed the server's certificate; implies --tls (default: the system's CAs).")
    public var tlsCA: String?
    @Option(name: .customLong("tls-cert"), help: "PEM client certificate for mutual TLS (needs --tls-key).")
    public var tlsCert: String?
    @Option(name: .customLong("tls-key"), help: "PEM private key for --tls-cert.")
    public var tlsKey: String?
    @Option(name: .customLong("auth-token"), help: "Send 'authorization: Bearer TOKEN' (default: none, or RADIAL_AUTH_TOKEN).")
    public var authToken: String?
    @Option(name: .customLong("auth-token-file"), help: "Read the bearer token from the first line of this file.")
    public var authTokenFile: String?

    public func validate() throws {
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
    }

    public func channelConfig(target: String) throws -> ChannelConfig {
        var config = ChannelConfig(target: target)
        if tls || tlsCA != nil || tlsCert != nil {
            config.tls = try ClientTLS(caFile: tlsCA, certificateFile: tlsCert, keyFile: tlsKey)
        }
        config.bearerToken = try resolveToken(authToken, file: authTokenFile, env: "RADIAL_AUTH_TOKEN", what: "--auth-token-file")
        return config
    }
}

/// Prints an RPC failure the way gRPC tools do and exits non-zero.
public func exitWithRPCError(_ error: any Error, _ what: String) -> Never {
    let text = (error as? RPCError).map { "\($0.code): \($0.message)" } ?? String(describing: error)
    FileHandle.standardError.write(Data("\(Serving.program): \(what): \(text)\n".utf8))
    exit(1)
}
