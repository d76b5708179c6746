import RadialModel
import RadialProtocol
import RadialRPC

/// radial.Coordinator: Generate (streaming), Status, Tokenize. Turns requests into token ids, checks them against
/// the limits, and hands them to the scheduler.
public final class CoordinatorService: Sendable {
    public let scheduler: Scheduler
    let tokenizer: Tokenizer
    let template: ChatTemplate?
    let config: LlamaConfig
    let modelName: String
    public let defaultMaxTokens: Int
    /// Longest prompt accepted; longer is INVALID_ARGUMENT (the context limit applies regardless).
    public let maxPromptTokens: Int

    public init(scheduler: Scheduler, tokenizer: Tokenizer, config: LlamaConfig, modelName: String,
                defaultMaxTokens: Int = 128, maxPromptTokens: Int? = nil) {
        self.maxPromptTokens = min(maxPromptTokens ?? config.contextLength - 1, config.contextLength - 1)
        self.scheduler = scheduler
        self.tokenizer = tokenizer
        self.template = ChatTemplate(tokenizer: tokenizer)
        self.config = config
        self.modelName = modelName
        self.defaultMaxTokens = defaultMaxTokens
    }

    public func register(on server: RPCServer) {
        server.addServerStreaming(Method.generate, GenerateRequest.self, response: GenerateReply.self) { [self] request, context, writer in
            try await generate(request, context: context, writer: writer)
        }
        server.addUnary(Method.status, StatusRequest.self) { [self] _, _ in await status() }
        server.addUnary(Method.tokenize, TokenizeRequest.self) { [self] request, _ in
            let ids = tokenizer.encode(request.text, parseSpecial: request.parseSpecial)
            return TokenizeReply(ids: ids, pieces: ids.map { String(decoding: tokenizer.bytes(of: $0, special: true), as: UTF8.self) })
        }
    }

    /// The prompt as token ids: INVALID_ARGUMENT for ids outside the vocabulary or chat without a template.
    func promptIDs(_ input: PromptInput) throws -> [Int] {
        switch input {
        case .text(let text):
            return tokenizer.encode(text)
        case .ids(let ids):
            if let bad = ids.first(where: { $0 < 0 || $0 >= config.vocabSize }) {
                throw RPCError.invalidArgument("GenerateRequest.prompt_ids: token id \(bad) is outside the vocabulary of \(config.vocabSize)")
            }
            return ids
        case .chat(let messages):
            guard let template else {
                throw RPCError(.failedPrecondition, "this model has no chat template tokens (<|im_start|>, <|im_end|>); send a plain prompt")
            }
            if let bad = messages.first(where: { !["system", "user", "assistant"].contains($0.role) }) {
                throw RPCError.invalidArgument("GenerateRequest.messages: unknown role '\(bad.role)' (system, user or assistant)")
            }
            return template.encode(messages, tokenizer: tokenizer)
        }
    }

    /// One generation, as every front end (gRPC Generate, the HTTP API) runs it: checks the request, queues it,
    /// hands `started` the prompt's token ids and the session id, and `deliver` each event until the generation ends, and records it
    /// (metrics and one log line). A failed generation throws its RPCError; an error thrown by `deliver` (the
    /// client went away) cancels the generation and is rethrown.
    public func run(_ request: GenerateRequest, requestID: String, api: String,
                    started: (_ promptIDs: [Int], _ session: UInt64) async throws -> Void,
                    deliver: (SessionEvent) async throws -> Void) async throws {
        var telemetry = RequestTelemetry(id: requestID, api: api, modelLayers: config.layerCount)
        var outcome = "cancelled"
        do {
            let state = try prepare(request)
            telemetry.prompt(state.promptIDs.count)
            let adopted = await scheduler.adopt(session: request.resumeSession, state: state)
            let (id, events) = try scheduler.submit(state, adopted: adopted ? request.resumeSession : nil)
            defer { scheduler.cancel(id) }  // a no-op once finished; frees the session when the client went away
            try await started(state.promptIDs, id)
            for await event in events {
                switch event {
                case .token(let trace, _): telemetry.token(trace)
                case .finished(let reason, _, _): outcome = reason.rawValue
                case .failed(let error): throw error
                case .text: break
                }
                try await deliver(event)
            }
        } catch let error as RPCError {
            telemetry.finish(outcome: error.code.description.lowercased(), error: error.message)
            throw error
        } catch {
            telemetry.finish(outcome: "cancelled", error: "\(error)")
            throw error
        }
        telemetry.finish(outcome: outcome)
    }

    /// The model's depth (for per-token accounts of layers skipped).
    public var modelLayers: Int { config.layerCount }

    /// Counts and logs a request a front end refused before `run` (a body that does not translate).
    public func recordRefused(requestID: String, api: String, _ error: RPCError) {
        RequestTelemetry(id: requestID, api: api, modelLayers: config.layerCount)
            .finish(outcome: error.code.description.lowercased(), error: error.message)
    }

    /// The request as a generation ready to queue: INVALID_ARGUMENT for a bad prompt, sampling or stop setting.
    func prepare(_ request: GenerateRequest) throws -> GenerationState {
        let ids = try promptIDs(request.input)
        guard ids.count <= maxPromptTokens else {
            throw RPCError.invalidArgument("the prompt has \(ids.count) tokens; this coordinator accepts at most \(maxPromptTokens)")
        }
        let maxTokens = request.maxTokens == 0 ? defaultMaxTokens : request.maxTokens
        do {
            var stop = StopConditions(maxTokens: maxTokens, stopStrings: request.stop)
            stop.stopAtEndOfGeneration = !request.ignoreEOS
            var state = try GenerationState(promptIDs: ids, sampling: request.sampling, stop: stop, contextLength: config.contextLength)
            if !request.continueAfter.isEmpty { try state.resume(after: request.continueAfter, tokenizer: tokenizer) }
            return state
        } catch ModelError.contextOverflow(let n, let limit) {
            throw RPCError.invalidArgument("the prompt has \(n) tokens; this model's context holds \(limit), and at least one must be left to generate")
        } catch {
            throw RPCError.invalidArgument("\(error)")
        }
    }

    func generate(_ request: GenerateRequest, context: ServerContext, writer: TypedResponseWriter<GenerateReply>) async throws {
        try await run(request, requestID: RequestID.make(), api: "grpc") { ids, session in
            var first = GenerateReply()
            first.promptIDs = ids
            first.sessionID = session
            try await writer.send(first)
        } deliver: { event in
            var reply = GenerateReply()
            switch event {
            case .token(let trace, let text):
                reply.tokens = [trace]
                reply.text = text
            case .text(let text):
                reply.text = text
            case .finished(let reason, let prefill, let decode):
                reply.finishReason = reason
                reply.prefillTokensPerSecond = prefill
                reply.decodeTokensPerSecond = decode
            case .failed:
                return
            }
            try await writer.send(reply)
        }
        if context.isCancelled { throw RPCError(.cancelled, "the client cancelled") }
    }

    func status() async -> StatusReply {
        var reply = StatusReply(handshake: scheduler.handshake)
        reply.model = modelName
        reply.modelLayers = config.layerCount
        let metrics = scheduler.currentMetrics
        reply.sessionsRunning = metrics.running
        reply.sessionsQueued = metrics.queued
        reply.tokensGenerated = metrics.tokensGenerated
        reply.tokensPerSecond = metrics.tokensPerSecond
        let rows = Double(max(metrics.tokensForwarded, 1))
        reply.layerSkipRate = metrics.layerRuns.map { metrics.tokensForwarded > 0 ? 1 - Double($0) / rows : 0 }
        reply.hopsPerToken = metrics.tokensGenerated > 0 ? Double(metrics.tokenHops) / Double(metrics.tokensGenerated) : 0
        // Over every row sent (prompt and generated): what routing saved against visiting every stage.
        reply.hopsSavedPerToken = metrics.tokensForwarded > 0 ? Double(metrics.rowHopsDense - metrics.rowHops) / rows : 0
        reply.tokensForwarded = metrics.tokensForwarded
        reply.kvPolicy = scheduler.kvPolicy
        reply.routing = scheduler.routing?.wire
        reply.routerBlock = scheduler.routing?.chooser.layout.uniformBlock ?? 1  // runs: 1 (their layers decide together)
        reply.weightBytes = UInt64(scheduler.head.weightBytes)
        reply.rssBytes = ProcessMemory.residentBytes
        let remote = scheduler.pipeline.stages.compactMap { $0 as? RemoteStage }
        reply.failovers = UInt64(remote.reduce(0) { $0 + $1.failoverCount })
        reply.historyBytes = UInt64(remote.reduce(0) { $0 + $1.historyBytes })
        reply.sessionsAdopted = metrics.sessionsAdopted
        let workers = (scheduler.cluster?.stages ?? []) + (scheduler.cluster?.replicas ?? [])
        let handshake = scheduler.handshake
        reply.workers = await withTaskGroup(of: (Int, WorkerStatus).self) { group in
            for (i, w) in workers.enumerated() {
                group.addTask {
                    let info = await w.currentInfo(handshake: handshake, timeout: .seconds(2))
                    var status = WorkerStatus(address: w.address, healthy: info != nil, info: info ?? w.info)
                    let s = w.snapshot()
                    status.visits = s.visits
                    status.visitsSkipped = s.tokenVisitsSkipped
                    status.rttP50ms = s.latency.quantile(0.5) * 1000
                    status.bytesSent = s.bytesSent
                    status.bytesReceived = s.bytesReceived
                    status.overheadP50ms = s.overhead.quantile(0.5) * 1000
                    return (i, status)
                }
            }
            var out: [(Int, WorkerStatus)] = []
            for await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }.map(\.1)
        }
        reply.forwardBytes = reply.workers.reduce(0) { $0 + $1.bytesSent + $1.bytesReceived }
        return reply
    }
}

/// Short random ids for requests, in log lines and HTTP replies.
public enum RequestID {
    public static func make() -> String {
        String(UInt64.random(in: 0...UInt64.max), radix: 16).leftPadded(to: 16)
    }
}

extension String {
    fileprivate func leftPadded(to n: Int) -> String { count >= n ? self : String(repeating: "0", count: n - count) + self }
}
