import ArgumentParser
import Foundation
import RadialCommandLine
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing

/// Options from RADIAL_* environment variables (what the systemd units and Kubernetes manifests set), first as a
/// mapping, then on the built radial-worker.
@Suite struct EnvironmentOptionsTests {
    struct Group: ParsableArguments {
        @Flag(name: .customLong("worker-tls")) var workerTLS = false
        @Option(name: .customLong("auth-token")) var authToken: String?
    }

    struct Command: ParsableCommand {
        @Option var listen = "127.0.0.1:7101"
        @Option(name: .customLong("kv-budget-mb")) var kvBudgetMB = 2048
        @Option var threads: Int?
        @Flag var insecure = false
        @OptionGroup var group: Group
    }

    func parse(_ commandLine: [String], _ environment: [String: String]) throws -> (Command, EnvironmentOptions) {
        let settings = EnvironmentOptions(for: Command.self, arguments: commandLine, environment: environment)
        return (try Command.parse(settings.arguments(before: commandLine)), settings)
    }

    @Test func variablesBecomeOptions() throws {
        let (c, settings) = try parse([], ["RADIAL_LISTEN": "0.0.0.0:7101", "RADIAL_KV_BUDGET_MB": "1024",
                                           "RADIAL_INSECURE": "yes", "RADIAL_WORKER_TLS": "1"])
        #expect(c.listen == "0.0.0.0:7101" && c.kvBudgetMB == 1024 && c.insecure && c.group.workerTLS)
        #expect(settings.settings.map(\.variable) == ["RADIAL_LISTEN", "RADIAL_KV_BUDGET_MB", "RADIAL_INSECURE", "RADIAL_WORKER_TLS"])
        #expect(EnvironmentOptions.variable(for: "max-batch-tokens") == "RADIAL_MAX_BATCH_TOKENS")
    }

    @Test func commandLineWins() throws {
        let env = ["RADIAL_LISTEN": "0.0.0.0:7101", "RADIAL_KV_BUDGET_MB": "1024"]
        #expect(try parse(["--listen", "127.0.0.1:9"], env).0.listen == "127.0.0.1:9")
        #expect(try parse(["--listen=127.0.0.1:9"], env).0.listen == "127.0.0.1:9")
        let (c, _) = try parse(["--kv-budget-mb", "7"], env)
        #expect(c.kvBudgetMB == 7 && c.listen == "0.0.0.0:7101")
    }

    @Test func flagsTakeYesAndNo() throws {
        for off in ["0", "false", "no", "NO", ""] {
            #expect(try !parse([], ["RADIAL_INSECURE": off]).0.insecure, "\(off)")
        }
        for on in ["1", "true", "yes", "True"] {
            #expect(try parse([], ["RADIAL_INSECURE": on]).0.insecure, "\(on)")
        }
        let settings = EnvironmentOptions(for: Command.self, arguments: [], environment: ["RADIAL_INSECURE": "maybe"])
        #expect(settings.problems.count == 1 && settings.problems[0].contains("RADIAL_INSECURE=maybe"))
    }

    /// Variables the code reads itself and the project's other settings are not options.
    @Test func otherVariablesAreLeftAlone() throws {
        let env = ["RADIAL_THREADS": "lots", "RADIAL_AUTH_TOKEN": "secret", "RADIAL_COORDINATOR": "x:1",
                   "RADIAL_SPIN_US": "bad", "RADIAL_LISTN": "typo"]
        let (c, settings) = try parse([], env)
        #expect(settings.settings.isEmpty && settings.problems.isEmpty)
        #expect(c.threads == nil && c.group.authToken == nil && c.listen == "127.0.0.1:7101")
    }

    @Test func badValueNamesItsVariable() throws {
        let commandLine: [String] = []
        let settings = EnvironmentOptions(for: Command.self, arguments: commandLine, environment: ["RADIAL_KV_BUDGET_MB": "lots"])
        do {
            _ = try Command.parse(settings.arguments(before: commandLine))
            Issue.record("a non-number for --kv-budget-mb parsed")
        } catch {
            let note = settings.note(forError: Command.fullMessage(for: error))
            #expect(note?.contains("RADIAL_KV_BUDGET_MB=lots") == true, "\(Command.fullMessage(for: error))")
        }
        #expect(settings.note(forError: "Error: --kv-budget-mbx is wrong") == nil)
    }

    /// The real option groups are seen through ArgumentParser's description of them.
    @Test func realOptionGroups() {
        let settings = EnvironmentOptions(for: ServerSecurityOptions.self, arguments: [],
                                          environment: ["RADIAL_TLS_CERT": "/c.pem", "RADIAL_INSECURE": "1"])
        #expect(settings.settings.map(\.option) == ["--tls-cert", "--insecure"])
    }

    /// The built worker: everything from the environment, port 0 from RADIAL_LISTEN.
    @Test func workerReadsItsSettingsFromTheEnvironment() async throws {
        let model = try ClusterTestSupport.writeTinyModel()
        let worker = try await ServerProcess.launch(TestPaths.binDir + "/radial-worker", [], environment: [
            "RADIAL_MODEL": model, "RADIAL_SHARD": "0/1", "RADIAL_LISTEN": "127.0.0.1:0", "RADIAL_KV_BUDGET_MB": "64",
            "RADIAL_THREADS": "1", "RADIAL_INSECURE": "0",
        ])
        let port = Int(worker.address.split(separator: ":").last ?? "") ?? 0
        #expect(worker.address.hasPrefix("127.0.0.1:") && port > 0, "\(worker.address)")
        // Serving (and, by the time it answers, handling SIGTERM: it prints its address just before).
        let channel = RPCChannel(ChannelConfig(target: worker.address))
        let health = try await channel.unary(Method.healthCheck, HealthCheckRequest(), response: HealthCheckResponse.self,
                                             options: CallOptions(timeout: .seconds(10)))
        channel.close()
        #expect(health.status == .serving)
        #expect(worker.stop() == 0, "\(worker.stderrText)")

        let bad = try await blocking {
            try TestPaths.execute("/usr/bin/env", ["RADIAL_KV_BUDGET_MB=0", TestPaths.binDir + "/radial-worker",
                                                   "--model", model, "--layers", "0-0", "--listen", "127.0.0.1:0"])
        }
        #expect(bad.status != 0 && bad.stderr.contains("RADIAL_KV_BUDGET_MB=0"), "\(bad.stderr)")
        let help = try TestPaths.execute(TestPaths.binDir + "/radial-worker", ["--help"])
        #expect(help.stdout.contains("RADIAL_KV_BUDGET_MB"))
    }
}
