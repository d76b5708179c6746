import ArgumentParser
import Dispatch
import Foundation
import Hummingbird
import RadialCommandLine
import RadialHTTP
import RadialCoordinator
import RadialModel
import RadialProtocol
import RadialRouter
import RadialRPC

@main
struct CoordinatorCommand: AsyncParsableCommand {
    /// Process-wide tuning first (ProcessTuning), then the usual argument parsing and run, with options also
    /// read from RADIAL_* environment variables (EnvironmentOptions).
    static func main() async {
        ProcessTuning.apply()
        await mainWithEnvironment()
    }

    static let configuration = CommandConfiguration(
        commandName: "radial-coordinator",
        abstract: "Serve a model across radial-worker processes: tokenizer, embeddings, LM head, sampler and scheduler.",
        discussion: """
            Loads only the tokenizer, token embedding, final norm and LM head. At start it handshakes with every \
            worker (protocol version, model fingerprint, layer range) and refuses to serve, naming the problem, \
            when layers are missing, ranges overlap or a worker has another model. Then it serves \
            radial.Coordinator (Generate, Status, Tokenize) and batches all running sessions into one Forward per \
            worker per step. Prints 'listening on HOST:PORT' once ready; SIGTERM lets running generations finish \
            (up to --drain-seconds), then exits 0.

            With --router (the same file on every worker) each token visits only the workers whose layers the \
            router selects; --threshold or --skip-rate sets the operating point (see `radial eval`).

            Every option can also be set in the environment: --connect-timeout 300 as RADIAL_CONNECT_TIMEOUT=300, \
            a flag as 1. The command line wins.

            Example:
              radial-coordinator --model models/SmolLM2-135M-Instruct.Q4_1.gguf \\
                --workers 127.0.0.1:7101,127.0.0.1:7102,127.0.0.1:7103 \\
                --listen 127.0.0.1:7100
            """,
        version: RadialRelease.description)

    @OptionGroup var model: ModelOptions
    @Option(name: .long, help: ArgumentHelp("Workers' HOST:PORT, comma-separated, in any order: the layer ranges they report at the handshake decide the pipeline.", discussion: "Several workers with the same range are replicas: new sessions are spread over them, and when one fails the sessions it held are rebuilt on another (or on the same worker once it is back) and continue."))
    var workers: String
    @Option(name: .customLong("failover-wait"), help: "Seconds a stage waits for a worker of its range to answer again when none does, before its generations fail.")
    var failoverWait: Double = 30
    @Option(name: .customLong("history-mb"), help: "Hidden-state history each stage keeps for rebuilding sessions on another worker (MiB); sessions past it can no longer fail over.")
    var historyMB = 1024
    @Option(name: .long, help: "HOST:PORT to listen on for gRPC (port 0 picks a free port).")
    var listen = "127.0.0.1:7100"
    @Option(name: .customLong("http-listen"), help: ArgumentHelp("HOST:PORT for the OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models) and Prometheus /metrics; off unless given.", discussion: "Plain HTTP: on a network, put a TLS proxy in front. It requires the same bearer token as gRPC (Authorization: Bearer TOKEN), except /health and /metrics."))
    var httpListen: String?
    @Option(name: .customLong("max-sessions"), help: "Generations decoding at once; more wait in the queue.")
    var maxSessions = 16
    @Option(name: .customLong("max-queue"), help: "Requests waiting for a slot; beyond this Generate fails with RESOURCE_EXHAUSTED.")
    var maxQueue = 64
    @Option(name: .customLong("max-prompt-tokens"), help: "Longest prompt accepted (default: the model's context length - 1); longer ones are INVALID_ARGUMENT.")
    var maxPromptTokens: Int?
    @Option(name: .customLong("max-batch-tokens"), help: "Rows per step; longer prompts are prefilled in chunks of this size.")
    var maxBatchTokens = 512
    @Option(name: .customLong("lanes"), help: ArgumentHelp("Batches in the pipeline at once: running sessions are split over this many lanes that step independently, so one lane's batch can be on one worker while another's is on the next.", discussion: "1 sends one batch through the whole pipeline per step. The output is the same either way."))
    var lanes = 2
    @Option(name: .customLong("default-max-tokens"), help: "Tokens to generate when a request does not say.")
    var defaultMaxTokens = 128
    @Option(name: .customLong("connect-timeout"), help: "Seconds to wait for every worker to answer its handshake.")
    var connectTimeout: Double = 60
    @Option(name: .customLong("drain-seconds"), help: "On SIGTERM, how long running generations may take to finish before they are cancelled.")
    var drainSeconds: Double = 30
    @OptionGroup(title: "Per-token depth") var routingOptions: RoutingOptions
    @Option(name: .customLong("max-pending-fills"), help: .hidden)
    var maxPendingFills = 32
    @OptionGroup var security: ServerSecurityOptions
    @OptionGroup(title: "Connecting to workers") var workerSecurity: WorkerSecurityOptions
    @OptionGroup(title: "Logging") var logging: LoggingOptions

    func validate() throws {
        if workerList.isEmpty { throw ValidationError("--workers needs at least one HOST:PORT") }
        guard maxSessions >= 1, maxQueue >= 0, maxBatchTokens >= 1, defaultMaxTokens >= 1, lanes >= 1 else {
            throw ValidationError("--max-sessions, --max-batch-tokens, --default-max-tokens and --lanes must be at least 1, --max-queue at least 0")
        }
        if let m = maxPromptTokens, m < 1 { throw ValidationError("--max-prompt-tokens must be at least 1") }
    }

    var workerList: [String] { workers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

    func run() async throws {
        logging.bootstrap()
        ProcessMetrics.bootstrap()
        // Refuse an unsafe listen address before spending seconds on the model.
        do {
            _ = try security.serverConfig(address: listen)
            if let httpListen {
                // Client certificates protect the gRPC port only: the HTTP port needs the token.
                let token = try security.serverConfig(address: httpListen).bearerToken
                if token == nil && !isLoopback(httpListen) && !security.insecure {
                    throw ValidationError("refusing to serve HTTP on \(httpListen) without a bearer token (client certificates do not cover the HTTP port): set RADIAL_AUTH_TOKEN or --auth-token-file, or pass --insecure on a network you trust")
                }
            }
        } catch { Serving.fail("\(error)") }
        model.applyThreads()
        let file: GGUFFile, config: LlamaConfig, head: LlamaHead, tokenizer: Tokenizer
        do {
            file = try model.openFile()
            config = try LlamaConfig(gguf: file)
            head = try LlamaHead(file: file, config: config, activations: model.arithmetic)
            tokenizer = try Tokenizer(gguf: file)
        } catch { Serving.fail("\(error)") }
        let handshake = Handshake(modelFingerprint: file.fingerprint)
        let routing: RoutingSetup?
        do {
            routing = try routingOptions.load(modelFingerprint: file.fingerprint, config: config).map { router, policy in
                Serving.log("routing with \(routingOptions.router!) (\(router.fingerprint.prefix(16))): \(policy), kv \(routingOptions.kvPolicy)"
                            + (routingOptions.operatingPointNote(router, policy: policy).map { "; \($0)" } ?? ""))
                return RoutingSetup(router: router, policy: policy)
            }
        } catch { Serving.fail("\(error)") }
        Serving.log("model \(config.layerCount) layers × \(config.dim); head \(head.weightBytes >> 20) MiB; connecting to \(workerList.count) workers")
        let cluster: Cluster
        do {
            cluster = try await Cluster.connect(addresses: workerList, handshake: handshake, config: config,
                                                channel: { try workerSecurity.channelConfig(target: $0) },
                                                timeout: .milliseconds(Int64(connectTimeout * 1000)),
                                                routerFingerprint: routing?.wire.routerFingerprint,
                                                activations: head.activations.rawValue, log: Serving.log)
        } catch { Serving.fail("refusing to serve: \(error)") }
        if let routing, !routing.chooser.aligned(with: cluster.stages.map(\.layers)) {
            let layout = routing.chooser.layout
            let bad = cluster.stages.first { !layout.starts.contains($0.layers.lowerBound) }!
            Serving.fail("refusing to serve: the router decides \(layout), but worker \(bad.address) starts at layer \(bad.layers.lowerBound), inside one of them (give every worker a range starting where a unit starts: \(layout.starts.map(String.init).joined(separator: ",")))")
        }
        Serving.log("pipeline: " + cluster.stages.map { "\($0.address) [\($0.layers)]" }.joined(separator: " -> ")
                    + (cluster.replicas.isEmpty ? "" : "; replicas: " + cluster.replicas.map(\.address).joined(separator: ", ")))

        var limits = SchedulerLimits()
        limits.maxSessions = maxSessions
        limits.maxQueued = maxQueue
        limits.maxBatchTokens = maxBatchTokens
        limits.maxPendingFills = max(maxPendingFills, 1)
        limits.lanes = lanes
        var failover = FailoverPolicy()
        failover.wait = .milliseconds(Int64(max(failoverWait, 0) * 1000))
        failover.maxHistoryBytes = max(historyMB, 0) << 20
        failover.log = { Serving.log($0) }
        let scheduler = Scheduler(head: head, tokenizer: tokenizer, cluster: cluster, handshake: handshake, limits: limits,
                                  routing: routing, kvPolicy: routingOptions.kvPolicy, failover: failover)
        do { try await scheduler.pipeline.settle() } catch {
            Serving.fail("refusing to serve: a worker refused this coordinator's K/V and routing policy: \(error)")
        }
        let name = (try? file.string("general.name")) ?? URL(fileURLWithPath: model.model).lastPathComponent
        let service = CoordinatorService(scheduler: scheduler, tokenizer: tokenizer, config: config, modelName: name,
                                         defaultMaxTokens: defaultMaxTokens, maxPromptTokens: maxPromptTokens)
        let server: RPCServer, serverConfig: ServerConfig
        do { serverConfig = try security.serverConfig(address: listen) } catch { Serving.fail("\(error)") }
        server = RPCServer(config: serverConfig)
        service.register(on: server)
        var http: HTTPEndpoint?
        if let httpListen {
            let router = Hummingbird.Router()
            let modelID = URL(fileURLWithPath: model.model).deletingPathExtension().lastPathComponent
            let tokens = serverConfig.bearerToken.map { [$0] + serverConfig.extraBearerTokens } ?? []
            OpenAIAPI(service: service, modelID: modelID, tokens: tokens).register(on: router)
            ProcessMetrics.addRoute(to: router) { service.refreshGauges() }
            do { http = try await HTTPEndpoint(router: router, listen: httpListen) } catch { Serving.fail("\(error)") }
            Serving.announce(listen: httpListen, port: http!.port, what: "http")
        }
        // The batching loop runs on the thread that receives the workers' replies: each reply resumes it with no
        // thread wake-up (one per hop). Its own compute (embedding, LM head, sampling) happens while no worker call
        // is in flight, so it delays no other call's I/O.
        let loop = Task(executorPreference: RPCClientExecutor.shared) { await scheduler.run() }
        await Serving.serveUntilSignal(server, listen: listen, service: "radial.Coordinator",
                                           stopping: "refusing new requests, letting running generations finish (up to \(drainSeconds) s)")
        scheduler.stopAccepting()
        // A plain dispatch timer, not a sleeping task: it fires even when the cooperative pool is busy.
        DispatchQueue.global().asyncAfter(deadline: .now() + drainSeconds) {
            Serving.log("drain time over: cancelling generations still running")
            scheduler.cancelAll()
        }
        await loop.value
        await http?.shutdown()
        await server.shutdown(grace: .seconds(5))
        Serving.log("stopped")
    }
}

/// How the coordinator reaches its workers: TLS (mutual, with a client certificate, when the workers require
/// one) and token, like any client.
struct WorkerSecurityOptions: ParsableArguments {
    @Flag(name: .customLong("worker-tls"), help: "Connect to workers with TLS.")
    var tls = false
    @Option(name: .customLong("worker-tls-ca"), help: "PEM CA that signed the workers' certificates; implies --worker-tls (default: the system's CAs).")
    var tlsCA: String?
    @Option(name: .customLong("worker-tls-cert"), help: "PEM client certificate to present to workers that require one (mutual TLS; needs --worker-tls-key, implies --worker-tls).")
    var tlsCert: String?
    @Option(name: .customLong("worker-tls-key"), help: "PEM private key for --worker-tls-cert.")
    var tlsKey: String?
    @Option(name: .customLong("worker-auth-token"), help: "Bearer token the workers require; prefer --worker-auth-token-file or RADIAL_WORKER_AUTH_TOKEN (default: none, or RADIAL_WORKER_AUTH_TOKEN).")
    var authToken: String?
    @Option(name: .customLong("worker-auth-token-file"), help: "Read the workers' bearer token from the first line of this file.")
    var authTokenFile: String?

    func validate() throws {
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--worker-tls-cert and --worker-tls-key go together") }
    }

    func channelConfig(target: String) throws -> ChannelConfig {
        var config = ChannelConfig(target: target)
        if tls || tlsCA != nil || tlsCert != nil {
            config.tls = try ClientTLS(caFile: tlsCA, certificateFile: tlsCert, keyFile: tlsKey)
        }
        config.bearerToken = try resolveToken(authToken, file: authTokenFile, env: "RADIAL_WORKER_AUTH_TOKEN", what: "--worker-auth-token-file")
        return config
    }
}
