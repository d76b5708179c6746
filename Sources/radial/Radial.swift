import ArgumentParser
import RadialCommandLine

@main
struct Radial: AsyncParsableCommand {
    /// Process-wide tuning first (ProcessTuning), then the usual argument parsing and run.
    static func main() async {
        ProcessTuning.apply()
        await main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "radial",
        abstract: "Radial: distributed LLM serving with dynamic depth.",
        discussion: """
            Local tools (run, tokenize, engine-bench, profile, train-router, eval) run a GGUF model in this process; \
            no cluster is needed. Cluster tools (generate, chat, status, bench) talk to a radial-coordinator; \
            health, serve-echo and rpc-bench check the network path.

            Example:
              radial run --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\
                --chat "What is the capital of France?"
            """,
        version: RadialRelease.description,
        subcommands: [RunCommand.self, TokenizeCommand.self, EngineBenchCommand.self,
                      ProfileCommand.self, TrainRouterCommand.self, CalibrateRouterCommand.self, EvalCommand.self,
                      GenerateCommand.self, ChatCommand.self, StatusCommand.self, BenchCommand.self,
                      HealthCommand.self, ServeEchoCommand.self, RPCBenchCommand.self])
}
