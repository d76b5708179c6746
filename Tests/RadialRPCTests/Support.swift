import Foundation
import RadialProtocol
import RadialRPC
import Testing

enum RPCTestSupport {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Where `swift build` put the executables (beside the test bundle).
    static var binDir: String {
        if let dir = ProcessInfo.processInfo.environment["RADIAL_BIN_DIR"] { return dir }
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [beside.path, beside.deletingLastPathComponent().path, packageRoot + "/.build/debug"]
        where FileManager.default.isExecutableFile(atPath: candidate + "/radial") {
            return candidate
        }
        return packageRoot + "/.build/debug"
    }

    static func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("radial-rpc-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

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

    /// Runs a command to completion; stdout as text.
    @discardableResult
    static func run(_ executable: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = [executable] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw RPCTestFailure("\(executable) \(args.joined(separator: " ")) exited \(p.terminationStatus): \(String(decoding: errData, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }

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

/// A server in another process: started, its "listening on HOST:PORT" line read, terminated on `stop`.
final class ServerProcess: @unchecked Sendable {
    let process = Process()
    let address: String
    private let stdout = Pipe()
    private let stderr = Pipe()

    init(_ executable: String, _ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        // Read the first line (the bound address) byte by byte, so nothing after it is lost.
        var line = [UInt8]()
        let handle = stdout.fileHandleForReading
        while true {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty || byte.first == UInt8(ascii: "\n") { break }
            line.append(byte.first!)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard let range = text.range(of: "listening on ") else {
            let err = String(decoding: stderr.fileHandleForReading.availableData, as: UTF8.self)
            process.terminate()
            throw RPCTestFailure("\(executable) did not start: '\(text)' \(err)")
        }
        address = String(text[range.upperBound...])
    }

    /// SIGTERM, then the exit status.
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning { process.terminate() }
        // A child that does not die on SIGTERM within 20 s gets SIGKILL, so a test never hangs on it.
        for _ in 0..<400 where process.isRunning { usleep(50_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { process.terminate() } }
}

struct RPCTestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
