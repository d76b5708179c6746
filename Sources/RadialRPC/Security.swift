import CGRPCShim
import Foundation

/// TLS for a server: its certificate chain and key (PEM), and optionally a CA whose client certificates it
/// requires (mutual TLS).
public struct ServerTLS: Sendable {
    public var certificateChainPEM: String
    public var privateKeyPEM: String
    /// When set, clients must present a certificate signed by this CA.
    public var clientCAPEM: String?

    public init(certificateChainPEM: String, privateKeyPEM: String, clientCAPEM: String? = nil) {
        self.certificateChainPEM = certificateChainPEM
        self.privateKeyPEM = privateKeyPEM
        self.clientCAPEM = clientCAPEM
    }

    /// Reads the PEM files named on a command line.
    public init(certificateFile: String, keyFile: String, clientCAFile: String? = nil) throws {
        self.init(certificateChainPEM: try readPEM(certificateFile, what: "certificate"),
                  privateKeyPEM: try readPEM(keyFile, what: "private key"),
                  clientCAPEM: try clientCAFile.map { try readPEM($0, what: "client CA") })
    }

    func credentials() -> OpaquePointer {
        var pair = grpc_ssl_pem_key_cert_pair()
        return privateKeyPEM.withCString { key in
            certificateChainPEM.withCString { chain in
                pair.private_key = key
                pair.cert_chain = chain
                let request = clientCAPEM == nil
                    ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                    : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                // gRPC copies the strings during the call.
                return withOptionalCString(clientCAPEM) { ca in
                    grpc_ssl_server_credentials_create_ex(ca, &pair, 1, request, nil)
                }
            }
        }
    }
}

/// TLS for a client: the CA that signed the server's certificate (nil: the system's roots), and optionally the
/// client's own certificate and key for mutual TLS.
public struct ClientTLS: Sendable {
    public var rootCAPEM: String?
    public var certificateChainPEM: String?
    public var privateKeyPEM: String?
    /// Verify the server's certificate against this name instead of the target's host.
    public var serverNameOverride: String?

    public init(rootCAPEM: String? = nil, certificateChainPEM: String? = nil, privateKeyPEM: String? = nil,
                serverNameOverride: String? = nil) {
        self.rootCAPEM = rootCAPEM
        self.certificateChainPEM = certificateChainPEM
        self.privateKeyPEM = privateKeyPEM
        self.serverNameOverride = serverNameOverride
    }

    public init(caFile: String?, certificateFile: String? = nil, keyFile: String? = nil) throws {
        if (certificateFile == nil) != (keyFile == nil) {
            throw RPCError(.invalidArgument, "a client certificate needs both a certificate file and a key file")
        }
        self.init(rootCAPEM: try caFile.map { try readPEM($0, what: "CA") },
                  certificateChainPEM: try certificateFile.map { try readPEM($0, what: "certificate") },
                  privateKeyPEM: try keyFile.map { try readPEM($0, what: "private key") })
    }

    func credentials() -> OpaquePointer {
        withOptionalCString(rootCAPEM) { roots in
            guard let key = privateKeyPEM, let chain = certificateChainPEM else {
                return grpc_ssl_credentials_create(roots, nil, nil, nil)
            }
            return key.withCString { key in
                chain.withCString { chain in
                    var pair = grpc_ssl_pem_key_cert_pair(private_key: key, cert_chain: chain)
                    return grpc_ssl_credentials_create(roots, &pair, nil, nil)
                }
            }
        }
    }
}

func readPEM(_ path: String, what: String) throws -> String {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw RPCError(.invalidArgument, "cannot read the \(what) file \(path)")
    }
    let text = String(decoding: data, as: UTF8.self)
    guard text.contains("-----BEGIN") else {
        throw RPCError(.invalidArgument, "the \(what) file \(path) is not PEM (no -----BEGIN line)")
    }
    return text
}

func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}

/// The verified client certificate's subject of a call over mutual TLS ("tls CN=coordinator-a"), or nil (no TLS,
/// or a client that presented no certificate).
func tlsClientIdentity(_ call: OpaquePointer) -> String? {
    guard let context = grpc_call_auth_context(call) else { return nil }
    defer { grpc_auth_context_release(context) }
    guard grpc_auth_context_peer_is_authenticated(context) != 0 else { return nil }
    var properties = grpc_auth_context_find_properties_by_name(context, "x509_subject")
    var values: [String] = []
    while let p = grpc_auth_property_iterator_next(&properties) {
        guard let value = p.pointee.value else { continue }
        values.append(String(decoding: UnsafeRawBufferPointer(start: value, count: p.pointee.value_length), as: UTF8.self))
    }
    return values.isEmpty ? nil : "tls " + values.joined(separator: ", ")
}

/// Checks a bearer token carried in the `authorization` metadata ("Bearer TOKEN") against the tokens a server
/// accepts; which one matched names the caller (`ServerContext.principal`).
struct BearerTokenCheck: Sendable {
    let tokens: [String]

    /// The index of the token the call carries, or nil (missing or unknown).
    func match(_ metadata: Metadata) -> Int? {
        let prefix = "Bearer "
        guard let header = metadata["authorization"], header.hasPrefix(prefix) else { return nil }
        let given = String(header.dropFirst(prefix.count))
        // Compare with every token, each in constant time: no timing oracle for a token or for which one matched.
        var found: Int?
        for (i, token) in tokens.enumerated() where constantTimeEqual(given, token) { found = i }
        return found
    }

    func check(_ metadata: Metadata) -> RPCError? {
        guard metadata["authorization"] != nil else {
            return RPCError(.unauthenticated, "missing bearer token (authorization metadata)")
        }
        return match(metadata) == nil ? RPCError(.unauthenticated, "invalid bearer token") : nil
    }

    /// The caller's name for `ServerContext.principal`: which token it presented ("token 1" is `bearerToken`).
    func principal(_ metadata: Metadata) -> String? { match(metadata).map { "token \($0 + 1)" } }

    /// Equal-length comparison that does not stop at the first difference (no timing oracle for the token).
    private func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }
}

/// Channel arguments as C wants them; freed on deinit.
final class ChannelArguments {
    let pointer: UnsafeMutablePointer<grpc_channel_args>

    enum Value { case int(Int), string(String) }

    init(_ values: [(String, Value)]) {
        pointer = rgs_args_create(values.count)
        for (i, (key, value)) in values.enumerated() {
            switch value {
            case .int(let v): rgs_args_set_int(pointer, i, key, Int32(clamping: v))
            case .string(let s): rgs_args_set_string(pointer, i, key, s)
            }
        }
    }

    deinit { rgs_args_free(pointer) }
}
