import ArgumentParser
import Foundation
import Hummingbird
import RadialCommandLine
import RadialHTTP
import RadialModel
import RadialProtocol
import RadialRouter
import RadialRPC
import RadialWorker

@main
struct WorkerCommand: AsyncParsableCommand {
    /// Process-wide tuning first (ProcessTuning), then the usual argument parsing and run, with options also
    /// read from RADIAL_* environment variables (EnvironmentOptions).
    static func main() async {
        ProcessTuning.apply()
        await mainWithEnvironment()
    }

    static let configuration = CommandConfiguration(
        commandName: "radial-worker",
        abstract: "Serve a range of a model's layers (a shard) to a radial-coordinator.",
        discussion: """
            Loads only the tensors of its layers, keeps a KV cache per session within --kv-budget-mb, and runs the \
            coordinator's Forward batches. Prints 'listening on HOST:PORT' once ready; SIGTERM finishes the batches \
            in flight and exits 0.

            Every option can also be set in the environment: --kv-budget-mb 1024 as RADIAL_KV_BUDGET_MB=1024, a flag \
            as 1. The command line wins.

            Example:
              radial-worker --model models/SmolLM2-135M-Instruct.Q4_1.gguf --layers 0-9 \\
                --listen 127.0.0.1:7101
            """,
        version: RadialRelease.description)

    @OptionGroup var model: ModelOptions
    @Option(name: .long, help: "Layers to serve, inclusive: 0-9 (see also --shard).")
    var layers: String?
    @Option(name: .long, help: "Serve the INDEX-th of COUNT even slices of the layers, 0-based: 1/3 (instead of --layers).")
    var shard: String?
    @Option(name: .long, help: "HOST:PORT to listen on (port 0 picks a free port).")
    var listen = "127.0.0.1:7101"
    @Option(name: .customLong("metrics-listen"), help: "HOST:PORT for Prometheus GET /metrics over HTTP (and GET /health); off unless given.")
    var metricsListen: String?
    @Option(name: .customLong("kv-budget-mb"), help: "Memory for all sessions' KV caches, in MiB; a batch that would exceed it is refused with RESOURCE_EXHAUSTED.")
    var kvBudgetMB = 2048
    @Option(name: .customLong("max-session-kv-mb"), help: "K/V one session may hold on this worker, in MiB (default: a quarter of --kv-budget-mb); a session that would grow past it is refused with RESOURCE_EXHAUSTED.")
    var maxSessionKVMB: Int?
    @Option(name: .customLong("session-ttl"), help: "Seconds after which an idle session's KV cache is freed.")
    var sessionTTL: Double = 600
    @Option(name: .customLong("max-batch-tokens"), help: "Most rows one Forward batch may carry.")
    var maxBatchTokens = 4096
    @Option(name: .long, help: "A router from `radial train-router`: lets the coordinator route tokens through this worker's layers (it must load the same file).")
    var router: String?
    @Option(name: .customLong("worker-id"), help: "Name in status output (default: the listen address).")
    var workerID: String?
    @Option(name: .customLong("protocol-version"), help: .hidden)
    var protocolVersion: UInt32 = ProtocolVersion.current
    @OptionGroup var security: ServerSecurityOptions
    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if (layers == nil) == (shard == nil) { throw ValidationError("give exactly one of --layers A-B or --shard INDEX/COUNT") }
        if let layers, LayerRange(parsing: layers) == nil { throw ValidationError("--layers must look like 0-9 (inclusive), got '\(layers)'") }
        if let shard, Self.parseShard(shard) == nil { throw ValidationError("--shard must look like 1/3 (index below count), got '\(shard)'") }
        guard kvBudgetMB >= 1 else { throw ValidationError("--kv-budget-mb must be at least 1") }
        if let m = maxSessionKVMB, m < 1 || m > kvBudgetMB { throw ValidationError("--max-session-kv-mb must be between 1 and --kv-budget-mb") }
        guard sessionTTL > 0 else { throw ValidationError("--session-ttl must be positive") }
        guard maxBatchTokens >= 1 else { throw ValidationError("--max-batch-tokens must be at least 1") }
    }

    static func parseShard(_ s: String) -> (index: Int, count: Int)? {
        let parts = s.split(separator: "/").compactMap { Int($0) }
        guard parts.count == 2, parts[1] >= 1, parts[0] >= 0, parts[0] < parts[1] else { return nil }
        return (parts[0], parts[1])
    }

    func run() async throws {
        logging.bootstrap()
        ProcessMetrics.bootstrap()
        // Refuse an unsafe listen address before spending seconds on the model.
        do { _ = try security.serverConfig(address: listen) } catch { Serving.fail("\(error)") }
        model.applyThreads()
        let file: GGUFFile, config: LlamaConfig
        do {
            file = try model.openFile()
            config = try LlamaConfig(gguf: file)
        } catch { Serving.fail("\(error)") }
        let range: LayerRange
        if let layers {
            range = LayerRange(parsing: layers)!
        } else {
            let (i, n) = Self.parseShard(shard!)!
            guard n <= config.layerCount else { Serving.fail("--shard \(shard!): the model has only \(config.layerCount) layers") }
            range = LayerRange.evenSlice(i, of: n, layers: config.layerCount)
        }
        guard range.upperBound <= config.layerCount, range.count > 0 else {
            Serving.fail("--layers \(range) is outside the model's \(config.layerCount) layers (0-\(config.layerCount - 1))")
        }
        var loadedRouter: RadialRouter.Router?
        if let router {
            do {
                let r = try RadialRouter.Router(path: router)
                try r.check(modelFingerprint: file.fingerprint, layers: config.layerCount, hiddenSize: config.dim)
                // A unit (block or run) is decided at its first layer: a range starting inside one could not decide it.
                let layout = r.header.layout
                guard layout.starts.contains(range.lowerBound) else {
                    Serving.fail("the router decides \(layout); layers \(range) start inside one of its units (start where a unit starts: \(layout.starts.map(String.init).joined(separator: ",")))")
                }
                loadedRouter = r
            } catch { Serving.fail("\(error)") }
        }
        let rssBefore = ProcessMemory.residentBytes
        let show = isatty(2) != 0
        let loaded: LlamaShard
        do {
            loaded = try LlamaShard(file: file, config: config, range: range, activations: model.arithmetic, progress: { done, total in
                if show { Progress.report("loading layers \(range)", done, total) }
            })
        } catch { Serving.fail("\(error)") }
        if show { Progress.finish() }

        let server: RPCServer
        do { server = RPCServer(config: try security.serverConfig(address: listen)) } catch { Serving.fail("\(error)") }
        let service = WorkerService(shard: loaded, fingerprint: file.fingerprint, config: {
            var c = WorkerConfig(workerID: workerID ?? listen, kvBudgetBytes: kvBudgetMB << 20,
                                 sessionTTL: .milliseconds(Int64(sessionTTL * 1000)), maxBatchTokens: maxBatchTokens)
            c.protocolVersion = protocolVersion
            c.maxSessionBytes = maxSessionKVMB.map { $0 << 20 }
            return c
        }(), router: loadedRouter)
        service.register(on: server)
        // Pages of other workers' tensors this process mapped while loading (the fingerprint's sampled blocks; with
        // the page cache's large folios each sample can map megabytes around it: measured 29 MiB of the LM head in
        // a worker of Qwen2.5-0.5B's first 8 layers) are not this worker's memory: drop them.
        for t in file.tensors where !range.indices.contains(where: { t.name.hasPrefix("blk.\($0).") }) { file.releasePages(of: t) }
        var metrics: HTTPEndpoint?
        if let metricsListen {
            // Read-only figures, no token: like any Prometheus target (bind it where only the scraper reaches).
            let router = Hummingbird.Router()
            router.get("/health") { _, _ in "ok\n" }
            ProcessMetrics.addRoute(to: router) { service.refreshGauges() }
            do { metrics = try await HTTPEndpoint(router: router, listen: metricsListen) } catch { Serving.fail("\(error)") }
            Serving.announce(listen: metricsListen, port: metrics!.port, what: "http")
        }
        let eviction = Task { await service.evictIdleSessions() }
        let rss = ProcessMemory.residentBytes
        Serving.log("layers \(range) of \(config.layerCount), weights \(loaded.weightBytes >> 20) MiB, RSS \(rss >> 20) MiB (+\((rss - min(rssBefore, rss)) >> 20) MiB for the shard)")
        if let loadedRouter { Serving.log("router \(router!) (\(loadedRouter.fingerprint.prefix(16)))") }
        await Serving.serveUntilSignal(server, listen: listen, service: "radial.Worker", stopping: "finishing batches in flight")
        eviction.cancel()
        await server.shutdown(grace: .seconds(10))
        await metrics?.shutdown()
        Serving.log("stopped")
    }
}
