import ArgumentParser
import Foundation
import RadialCommandLine
import RadialModel
import RadialProtocol
import RadialRPC

/// Where the coordinator is, and how to reach it.
struct CoordinatorOptions: ParsableArguments {
    @Option(name: .long, help: "Coordinator HOST:PORT (default: 127.0.0.1:7100, or RADIAL_COORDINATOR).")
    var coordinator: String?
    @Option(name: .long, help: "Give up after this many seconds (0: no deadline).")
    var timeout: Double = 0
    @Option(name: .customLong("connect-timeout"), help: "Seconds to wait for the coordinator to be ready (retrying with backoff), and to come back when a stream breaks.")
    var connectTimeout: Double = 10
    @OptionGroup var security: ClientSecurityOptions

    var target: String { coordinator ?? ProcessInfo.processInfo.environment["RADIAL_COORDINATOR"] ?? "127.0.0.1:7100" }

    func channel() throws -> RPCChannel { RPCChannel(try security.channelConfig(target: target)) }

    var callOptions: CallOptions {
        CallOptions(timeout: timeout > 0 ? .milliseconds(Int64(timeout * 1000)) : nil, waitForReady: true)
    }

    /// Waits until the coordinator answers its health check as SERVING, retrying with backoff for up to
    /// --connect-timeout (many clients starting at once, or a coordinator restarting, both take a moment).
    func waitUntilReady(_ channel: RPCChannel) async throws {
        let clock = ContinuousClock(), deadline = clock.now + .milliseconds(Int64(max(connectTimeout, 0) * 1000))
        var backoff = Duration.milliseconds(50)
        while true {
            let left = deadline - clock.now
            do {
                let reply = try await channel.unary(Method.healthCheck, HealthCheckRequest(service: ""), response: HealthCheckResponse.self,
                                                    options: CallOptions(timeout: max(min(left, .seconds(2)), .milliseconds(100)), waitForReady: true))
                if reply.status == .serving { return }
                if clock.now >= deadline { throw RPCError(.unavailable, "the coordinator is \(reply.status), not serving") }
            } catch let error as RPCError where error.code == .unavailable || error.code == .deadlineExceeded {
                if clock.now >= deadline { throw error }
            }
            try await Task.sleep(for: min(backoff, max(deadline - clock.now, .milliseconds(1))))
            backoff = min(backoff * 2, .seconds(1))
        }
    }
}

/// What one streamed generation came to.
struct StreamedGeneration {
    var promptIDs: [Int] = []
    /// The session the coordinator runs this generation as (for resuming).
    var sessionID: UInt64 = 0
    var traces: [TokenTrace] = []
    /// The text each token's reply carried (empty while a piece of text is held back).
    var pieces: [String] = []
    /// When each token arrived, in milliseconds since the request was sent.
    var tokenMilliseconds: [Double] = []
    var text = ""
    var finish: FinishReason?
    var prefillTPS = 0.0, decodeTPS = 0.0
    var seconds = 0.0

    var json: [String: Any] {
        [
            "prompt_ids": promptIDs,
            "generated_ids": traces.map(\.tokenID),
            "text": text,
            "finish_reason": finish?.rawValue ?? "none",
            "tokens": zip(traces, tokenMilliseconds).map {
                ["id": $0.tokenID, "layers_run": $0.layersRun, "hops": $0.hops, "ms": $1] as [String: Any]
            },
            "hops": traces.reduce(0) { $0 + $1.hops },
            "hops_per_token": traces.isEmpty ? 0 : Double(traces.reduce(0) { $0 + $1.hops }) / Double(traces.count),
            "prefill_tokens_per_s": prefillTPS,
            "decode_tokens_per_s": decodeTPS,
            "seconds": seconds,
        ]
    }
}

/// Sends one Generate and streams its text to `onText`. When the stream breaks (the coordinator went away) after
/// `resume` is given, waits for it to come back (`resume`) and asks it to continue after the tokens received, so
/// the text reads as one unbroken stream.
func streamGeneration(_ channel: RPCChannel, _ request: GenerateRequest, options: CallOptions,
                      resume: (() async throws -> Void)? = nil, onText: (String) -> Void) async throws -> StreamedGeneration {
    var out = StreamedGeneration()
    let clock = ContinuousClock(), start = clock.now
    var request = request
    while true {
        do {
            for try await reply in try channel.serverStreaming(Method.generate, request, response: GenerateReply.self, options: options) {
                if !reply.promptIDs.isEmpty { out.promptIDs = reply.promptIDs }
                if reply.sessionID != 0 { out.sessionID = reply.sessionID }
                out.traces += reply.tokens
                out.pieces += reply.tokens.map { _ in reply.text }
                let ms = (clock.now - start).seconds * 1000
                out.tokenMilliseconds += reply.tokens.map { _ in ms }
                if !reply.text.isEmpty {
                    out.text += reply.text
                    onText(reply.text)
                }
                if let f = reply.finishReason {
                    out.finish = f
                    out.prefillTPS = reply.prefillTokensPerSecond
                    out.decodeTPS = reply.decodeTokensPerSecond
                }
            }
            break
        } catch let error as RPCError where error.code == .unavailable && out.finish == nil && resume != nil {
            FileHandle.standardError.write(Data("\n\(Serving.program): the stream broke (\(error.message)); reconnecting\n".utf8))
            try await resume!()
            request.continueAfter = out.traces.map(\.tokenID)
            // A restarted coordinator continues this session from the K/V its workers still hold, if they do.
            request.resumeSession = out.sessionID
        }
    }
    out.seconds = (clock.now - start).seconds
    return out
}

extension SamplingOptions {
    func request(_ input: PromptInput) throws -> GenerateRequest {
        GenerateRequest(input: input, sampling: parameters, maxTokens: maxTokens, stop: stop, ignoreEOS: ignoreEOS)
    }
}

/// `radial generate`: one prompt, streamed from the coordinator.
struct GenerateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate text on a Radial cluster, streaming it to stdout.",
        discussion: """
            With --json the last line is one JSON object: prompt_ids, generated_ids, text, finish_reason, and per \
            token the layers it ran, the worker hops it made and when it arrived (ms).

            Example:
              radial generate --greedy --chat "What is the capital of France?"
            """)

    @OptionGroup var target: CoordinatorOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var prompt: PromptOptions
    @Flag(name: .customLong("show-depth"), help: "After the text, show each token's depth: the layers it ran and skipped and the worker hops it made (routing on the cluster: `radial-coordinator --router`).")
    var showDepth = false

    func run() async throws {
        let request = try sampling.request(try prompt.input())
        let channel = try target.channel()
        let out = FileHandle.standardOutput
        do {
            try await target.waitUntilReady(channel)
            let result = try await streamGeneration(channel, request, options: target.callOptions,
                                                    resume: { try await target.waitUntilReady(channel) }) { text in
                if !prompt.quiet { out.write(Data(text.utf8)) }
            }
            if !prompt.quiet { print("") }
            if showDepth {
                let status = try await channel.unary(Method.status, StatusRequest(), response: StatusReply.self, options: target.callOptions)
                print(DepthReport(result, status: status).text)
            }
            if prompt.json { try printJSON(result.json) }
        } catch {
            exitWithRPCError(error, "generate on \(target.target)")
        }
    }
}

/// `radial chat`: an interactive, multi-turn conversation.
struct ChatCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Chat with the model on a Radial cluster (multi-turn, streaming).",
        usage: "radial chat [<options>]",
        discussion: "Reads one message per line from standard input; an empty line or Ctrl-D ends the chat.")

    @OptionGroup var target: CoordinatorOptions
    @OptionGroup var sampling: SamplingOptions
    @Option(name: .long, help: "System prompt (default: the model's own, if its template has one).")
    var system: String?

    func run() async throws {
        let channel = try target.channel()
        var messages = system.map { [ChatMessage(role: "system", content: $0)] } ?? []
        let out = FileHandle.standardOutput
        let interactive = isatty(0) != 0
        while true {
            if interactive { out.write(Data("> ".utf8)) }
            guard let line = readLine(), !line.trimmingCharacters(in: .whitespaces).isEmpty else { break }
            messages.append(ChatMessage(role: "user", content: line))
            do {
                let result = try await streamGeneration(channel, try sampling.request(.chat(messages)), options: target.callOptions) {
                    out.write(Data($0.utf8))
                }
                print("")
                messages.append(ChatMessage(role: "assistant", content: result.text))
            } catch {
                exitWithRPCError(error, "chat on \(target.target)")
            }
        }
    }
}

/// `radial status`: the cluster as the coordinator sees it.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the cluster: workers, layer ranges, sessions, KV use, tokens/s.",
        usage: "radial status [<options>]")

    @OptionGroup var target: CoordinatorOptions
    @Flag(name: .long, help: "Print one JSON object instead of a table.")
    var json = false

    func run() async throws {
        let channel = try target.channel()
        let s: StatusReply
        do {
            s = try await channel.unary(Method.status, StatusRequest(), response: StatusReply.self,
                                        options: CallOptions(timeout: .milliseconds(Int64((target.timeout > 0 ? target.timeout : 10) * 1000))))
        } catch { exitWithRPCError(error, "status of \(target.target)") }
        if json {
            try printJSON([
                "model": s.model, "model_layers": s.modelLayers, "sessions_running": s.sessionsRunning,
                "sessions_queued": s.sessionsQueued, "tokens_generated": s.tokensGenerated, "tokens_per_s": s.tokensPerSecond,
                "hops_per_token": s.hopsPerToken, "hops_saved_per_token": s.hopsSavedPerToken, "kv_policy": s.kvPolicy.rawValue,
                "layer_skip_rate": s.layerSkipRate,
                "layers_skipped": s.layerSkipRate.isEmpty ? 0 : s.layerSkipRate.reduce(0, +) / Double(s.layerSkipRate.count),
                "routing": s.routing.map { r -> [String: Any] in
                    ["router_fingerprint": r.routerFingerprint, "threshold": Double(r.threshold), "always_run": r.alwaysRun,
                     "min_layers": r.minLayers, "block": s.routerBlock]
                } ?? NSNull(),
                "tokens_forwarded": s.tokensForwarded, "forward_bytes": s.forwardBytes,
                "coordinator_weight_bytes": s.weightBytes, "coordinator_rss_bytes": s.rssBytes,
                "failovers": s.failovers, "history_bytes": s.historyBytes, "sessions_adopted": s.sessionsAdopted,
                "workers": s.workers.map { w -> [String: Any] in
                    let i = w.info
                    return ["address": w.address, "healthy": w.healthy, "layers": i.map { "\($0.layers)" } ?? "",
                            "activations": i.map { $0.activations.isEmpty ? "f32" : $0.activations } ?? "",
                            "sessions": i?.sessions ?? 0, "kv_used_bytes": i?.kvUsedBytes ?? 0, "kv_budget_bytes": i?.kvBudgetBytes ?? 0,
                            "rss_bytes": i?.rssBytes ?? 0, "weight_bytes": i?.weightBytes ?? 0, "forward_calls": i?.counters.forwardCalls ?? 0,
                            "tokens": i?.counters.tokens ?? 0, "forward_p50_ms": i?.counters.forwardP50ms ?? 0,
                            "forward_p99_ms": i?.counters.forwardP99ms ?? 0, "visits": w.visits, "token_visits_skipped": w.visitsSkipped,
                            "layer_runs": i?.counters.layerRuns ?? 0, "layer_skips": i?.counters.layerSkips ?? 0, "rtt_p50_ms": w.rttP50ms,
                            "bytes_sent": w.bytesSent, "bytes_received": w.bytesReceived, "overhead_p50_ms": w.overheadP50ms]
                },
            ])
            return
        }
        print("model \(s.model), \(s.modelLayers) layers; \(s.sessionsRunning) running, \(s.sessionsQueued) queued; "
              + "\(s.tokensGenerated) tokens generated, \(String(format: "%.1f", s.tokensPerSecond)) tokens/s now; "
              + "\(String(format: "%.2f", s.hopsPerToken)) hops/token (\(String(format: "%.2f", s.hopsSavedPerToken)) saved by routing); "
              + "\(s.tokensForwarded > 0 ? s.forwardBytes / s.tokensForwarded : 0) wire bytes per token row; KV policy \(s.kvPolicy.rawValue)")
        print("coordinator: weights \(s.weightBytes >> 20) MiB (LM head and norms), RSS \(s.rssBytes >> 20) MiB; "
              + "\(s.failovers) failovers, replay history \(String(format: "%.1f", Double(s.historyBytes) / 1_048_576)) MiB, "
              + "\(s.sessionsAdopted) sessions adopted after a restart")
        if let r = s.routing {
            print("routing: router \(r.routerFingerprint.prefix(16)), threshold \(r.threshold), always run \(r.alwaysRun), "
                  + "at least \(r.minLayers) layers" + (s.routerBlock > 1 ? ", blocks of \(s.routerBlock) layers" : ""))
        } else {
            print("routing: off (every token runs every layer)")
        }
        if s.layerSkipRate.contains(where: { $0 > 0 }) {
            let overall = s.layerSkipRate.reduce(0, +) / Double(s.layerSkipRate.count)
            print(String(format: "layers skipped: %.1f%% of all layer runs; ", overall * 100) + "per layer: " + s.layerSkipRate.enumerated().map { "\($0.offset):\(String(format: "%.0f%%", $0.element * 100))" }.joined(separator: " "))
        }
        let header = ["worker", "layers", "arith", "health", "sessions", "KV used/budget MiB", "weights MiB", "RSS MiB", "forwards", "tokens", "skipped",
                      "compute p50 ms", "p99 ms", "rtt p50 ms", "overhead p50 ms"]
        var rows = [header]
        for w in s.workers {
            let i = w.info
            rows.append([
                w.address, i.map { "\($0.layers)" } ?? "?", i.map { $0.activations.isEmpty ? "f32" : $0.activations } ?? "?",
                w.healthy ? "ok" : "DOWN", "\(i?.sessions ?? 0)",
                "\(String(format: "%.1f", Double(i?.kvUsedBytes ?? 0) / 1_048_576))/\((i?.kvBudgetBytes ?? 0) >> 20)",
                "\((i?.weightBytes ?? 0) >> 20)", "\((i?.rssBytes ?? 0) >> 20)", "\(i?.counters.forwardCalls ?? 0)", "\(i?.counters.tokens ?? 0)", "\(w.visitsSkipped)",
                String(format: "%.2f", i?.counters.forwardP50ms ?? 0), String(format: "%.2f", i?.counters.forwardP99ms ?? 0),
                String(format: "%.2f", w.rttP50ms), String(format: "%.2f", w.overheadP50ms),
            ])
        }
        let widths = header.indices.map { c in rows.map { $0[c].count }.max()! }
        for r in rows { print(r.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }.joined(separator: "  ")) }
    }
}
