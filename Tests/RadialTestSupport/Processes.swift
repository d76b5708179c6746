import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A test's own failure with a message that says what to do.
public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// Paths and processes shared by the test targets that start real executables.
public enum TestPaths {
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Where `swift build` put the executables (beside the test bundle), or RADIAL_BIN_DIR.
    public static var binDir: String {
        if let dir = ProcessInfo.processInfo.environment["RADIAL_BIN_DIR"] { return dir }
        let beside = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [beside.path, beside.deletingLastPathComponent().path, packageRoot + "/.build/debug"]
        where FileManager.default.isExecutableFile(atPath: candidate + "/radial") {
            return candidate
        }
        return packageRoot + "/.build/debug"
    }

    public static func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("radial-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    /// Runs a command to completion; stdout as text.
    @discardableResult
    public static func run(_ executable: String, _ args: [String]) throws -> String {
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
            throw TestProcessFailure("\(executable) \(args.joined(separator: " ")) exited \(p.terminationStatus): \(String(decoding: errData, as: UTF8.self))")
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// A finished process: exit status and its output.
public struct ProcessResult: Sendable {
    public let status: Int32
    public let stdout: String
    public let stderr: String
}

extension TestPaths {
    /// Qwen2.5-Coder-0.5B-Instruct (`scripts/setup.sh model qwen0.5b`), or RADIAL_QWEN_MODEL; a failure that says
    /// how to get it when it is missing.
    public static func requireQwenModel() throws -> String {
        let p = ProcessInfo.processInfo.environment["RADIAL_QWEN_MODEL"] ?? packageRoot + "/models/qwen2.5-coder-0.5b-instruct.gguf"
        guard FileManager.default.fileExists(atPath: p) else {
            throw TestFailure("Qwen model missing at \(p): run `scripts/setup.sh model qwen0.5b` (or set RADIAL_QWEN_MODEL)")
        }
        return p
    }

    /// A CA, a server certificate for 127.0.0.1/localhost and a client certificate, made with openssl.
    public static func makeCertificates() throws -> (dir: String, ca: String, serverCert: String, serverKey: String, clientCert: String, clientKey: String) {
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

    /// Runs a command to completion whatever its exit status (output through files, so neither pipe can fill).
    /// posix_spawn and waitpid rather than Foundation's Process, whose wait also waits for children the command
    /// leaves running in the background (a script that starts daemons).
    public static func execute(_ executable: String, _ args: [String]) throws -> ProcessResult {
        let dir = try tempDir()
        let outPath = dir + "/out", errPath = dir + "/err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv: [UnsafeMutablePointer<CChar>?] = ([executable] + args).map { strdup($0) } + [nil]
        defer { for a in argv { free(a) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw TestProcessFailure("cannot start \(executable): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        let exitStatus = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let read = { (path: String) in (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
        return ProcessResult(status: exitStatus, stdout: read(outPath), stderr: read(errPath))
    }
}

/// A server in another process: started, its "listening on HOST:PORT" line read, terminated on `stop`. Its
/// standard error goes to a file (a pipe nobody reads would block a chatty server).
public final class ServerProcess: @unchecked Sendable {
    public let process = Process()
    /// HOST:PORT from its "listening on" line.
    public let address: String
    /// HOST:PORT from an "http listening on" line before it (a coordinator with --http-listen, a worker with
    /// --metrics-listen).
    public private(set) var httpAddress: String?
    public let stderrPath: String
    private let stdout = Pipe()

    /// `environment`: variables added to (or replacing) this process's own.
    public init(_ executable: String, _ args: [String], environment: [String: String] = [:]) throws {
        stderrPath = try TestPaths.tempDir() + "/stderr"
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = args
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        process.standardOutput = stdout
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        try process.run()
        // Read lines up to the gRPC server's (the bound address) byte by byte, so nothing after it is lost.
        let handle = stdout.fileHandleForReading
        var text = ""
        while true {
            var line = [UInt8]()
            while true {
                let byte = handle.readData(ofLength: 1)
                if byte.isEmpty || byte.first == UInt8(ascii: "\n") { break }
                line.append(byte.first!)
            }
            text = String(decoding: line, as: UTF8.self)
            guard text.hasPrefix("http listening on ") else { break }
            httpAddress = String(text.dropFirst("http listening on ".count))
        }
        guard let range = text.range(of: "listening on ") else {
            process.waitUntilExit()
            let err = (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? ""
            throw TestProcessFailure("\(executable) did not start: '\(text)' \(err)")
        }
        address = String(text[range.upperBound...])
    }

    /// Starts it from an async test: waiting for the "listening on" line blocks a thread for as long as the server
    /// takes to start (a model to load), so it happens off the cooperative pool, which the other tests' RPC calls
    /// need meanwhile (on two cores, two blocked starts starve them into DEADLINE_EXCEEDED).
    public static func launch(_ executable: String, _ args: [String], environment: [String: String] = [:]) async throws -> ServerProcess {
        try await blocking { try ServerProcess(executable, args, environment: environment) }
    }

    /// What it wrote to standard error so far.
    public var stderrText: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// SIGTERM, then the exit status. A child that does not exit within 20 s gets SIGKILL, so a test never hangs.
    @discardableResult
    public func stop() -> Int32 {
        if process.isRunning { process.terminate() }
        for _ in 0..<400 where process.isRunning { usleep(50_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    deinit { if process.isRunning { process.terminate() } }
}

public struct TestProcessFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}
