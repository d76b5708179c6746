import Foundation
import RadialModel

/// Paths and helpers the model and router tests share: the real model, the numpy reference, tiny models.
public enum TestSupport {
    public static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The real model; the README's test command fetches it first (`make model`).
    public static var realModelPath: String {
        ProcessInfo.processInfo.environment["RADIAL_MODEL"] ?? packageRoot + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"
    }

    public static func requireQwenModel() throws -> String { try TestPaths.requireQwenModel() }

    public static func requireRealModel() throws -> String {
        let p = realModelPath
        guard FileManager.default.fileExists(atPath: p) else {
            throw TestFailure("real model missing at \(p): run `make model` (or set RADIAL_MODEL)")
        }
        return p
    }

    public static func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("radial-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir.path
    }

    /// Runs python3 with a script under Tests/reference; returns stdout.
    @discardableResult
    public static func python(_ args: [String]) throws -> Data {
        Data(try TestPaths.run("python3", args).utf8)
    }

    /// Logits per position from the independent numpy implementation.
    public static func referenceLogits(model: String, ids: [Int], skip: [(pos: Int, layer: Int)] = [],
                                policy: SkippedLayerKV = .fill) throws -> [[Float]] {
        var args = [packageRoot + "/Tests/reference/llama_ref.py", model, "--ids", ids.map(String.init).joined(separator: ","),
                    "--no-hidden", "--kv-policy", policy.rawValue]
        if !skip.isEmpty { args += ["--skip", skip.map { "\($0.pos):\($0.layer)" }.joined(separator: ",")] }
        let json = try JSONSerialization.jsonObject(with: try python(args)) as! [String: Any]
        return (json["logits"] as! [[NSNumber]]).map { $0.map(\.floatValue) }
    }

    public static func writeTinyModel(_ configure: (inout TinyModelSpec) -> Void = { _ in }) throws -> String {
        var spec = TinyModelSpec()
        configure(&spec)
        let path = try tempDir() + "/tiny.gguf"
        try spec.write(to: path)
        return path
    }

    public static func maxAbsDiff(_ a: [Float], _ b: [Float]) -> Float {
        precondition(a.count == b.count, "length mismatch \(a.count) vs \(b.count)")
        return zip(a, b).reduce(0) { max($0, abs($1.0 - $1.1)) }
    }
}

