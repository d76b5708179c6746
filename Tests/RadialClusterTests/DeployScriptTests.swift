import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing

/// The deploy scripts as a user runs them: bring a cluster up, generate through it, bring it down.
@Suite(.serialized) struct DeployScriptTests {
    static let script = TestPaths.packageRoot + "/deploy/"

    /// Whether this machine lets us make network namespaces (root with CAP_NET_ADMIN).
    static let canMakeNamespaces: Bool = {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip") || FileManager.default.isExecutableFile(atPath: "/sbin/ip") else { return false }
        let add = try? TestPaths.execute("/usr/bin/env", ["ip", "netns", "add", "radial-probe"])
        _ = try? TestPaths.execute("/usr/bin/env", ["ip", "netns", "del", "radial-probe"])
        return add?.status == 0
    }()

    /// The call runs off the cooperative pool (`blocking`): in the full suite, synchronous tests computing real
    /// models hold that pool's two threads for minutes, and this stream's reply once sat unread there until its
    /// deadline ran out (the coordinator had answered in 0.6 s).
    func generate(_ coordinator: String, _ ids: [Int], token: String? = nil) async throws -> [Int] {
        try await blocking { try await streamGenerate(coordinator, ids, token: token) }
    }

    private func streamGenerate(_ coordinator: String, _ ids: [Int], token: String?) async throws -> [Int] {
        var config = ChannelConfig(target: coordinator)
        config.bearerToken = token
        let channel = RPCChannel(config)
        defer { channel.close() }
        var out: [Int] = []
        for try await r in try channel.serverStreaming(Method.generate, GenerateRequest(input: .ids(ids), maxTokens: 12),
                                                       response: GenerateReply.self, options: CallOptions(timeout: .seconds(60))) {
            out += r.tokens.map(\.tokenID)
        }
        return out
    }

    @Test func localClusterScript() async throws {
        let model = try ClusterTestSupport.writeTinyModel()
        let runDir = try TestPaths.tempDir()
        let env = ["/usr/bin/env", "RADIAL_RUN_DIR=\(runDir)"]
        let up = try await blocking { try TestPaths.execute(env[0], Array(env[1...]) + [Self.script + "local-cluster.sh", "up", "--model", model, "--bin", TestPaths.binDir, "--port", "7640", "--threads", "1"]) }
        #expect(up.status == 0, "up failed: \(up.stderr)")
        defer { _ = try? TestPaths.execute(env[0], Array(env[1...]) + [Self.script + "local-cluster.sh", "down"]) }
        let got = try await generate("127.0.0.1:7640", [5, 6, 7])
        let expected = try await Reference(path: model).generate([5, 6, 7], .greedy, maxTokens: 12)
        #expect(got == expected.generatedIDs)
        let down = try await blocking { try TestPaths.execute(env[0], Array(env[1...]) + [Self.script + "local-cluster.sh", "down"]) }
        #expect(down.status == 0 && down.stdout.contains("stopped") && !down.stderr.contains("killed"), "graceful: \(down.stderr)")
    }

    @Test(.enabled(if: DeployScriptTests.canMakeNamespaces, "needs root and network namespaces"))
    func networkNamespaceClusterWithDelay() async throws {
        let model = try ClusterTestSupport.writeTinyModel()
        let runDir = try TestPaths.tempDir()
        let env = ["/usr/bin/env", "RADIAL_RUN_DIR=\(runDir)"]
        let up = try await blocking { try TestPaths.execute(env[0], Array(env[1...]) + [Self.script + "netns-cluster.sh", "up", "--model", model, "--bin", TestPaths.binDir,
                                                                  "--delay-ms", "1", "--rate-mbit", "1000", "--threads", "1"]) }
        defer { _ = try? TestPaths.execute(env[0], Array(env[1...]) + [Self.script + "netns-cluster.sh", "down"]) }
        #expect(up.status == 0, "up failed: \(up.stderr)")
        // Not loopback: the cluster requires the token the script made.
        let token = try String(contentsOfFile: runDir + "/token", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let refused = await ClusterTestSupport.rpcError { _ = try await generate("10.77.250.2:7100", [5, 6, 7]) }
        #expect(refused?.code == .unauthenticated, "\(String(describing: refused))")
        let got = try await generate("10.77.250.2:7100", [5, 6, 7], token: token)
        let expected = try await Reference(path: model).generate([5, 6, 7], .greedy, maxTokens: 12)
        #expect(got == expected.generatedIDs)
        var config = ChannelConfig(target: "10.77.250.2:7100")
        config.bearerToken = token
        let channel = RPCChannel(config)
        let status = try await channel.unary(Method.status, StatusRequest(), response: StatusReply.self, options: CallOptions(timeout: .seconds(10)))
        channel.close()
        // Every visit crossed a delayed link: round trip minus compute is at least the 2 ms the proxies add.
        #expect(status.workers.count == 3 && status.workers.allSatisfy { $0.overheadP50ms >= 2.0 }, "\(status.workers.map(\.overheadP50ms))")
    }
}
