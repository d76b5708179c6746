import CRadialProto
import RadialModel
import RadialRPC

// radial.Coordinator's messages as Swift values, with their protobuf-c conversions.

/// What to generate from: exactly one of a prompt, prompt token ids, or chat messages.
public enum PromptInput: Sendable, Equatable {
    case text(String)
    case ids([Int])
    case chat([ChatMessage])
}

public struct GenerateRequest: WireMessage, Equatable {
    public var input: PromptInput
    public var sampling: SamplingParameters
    public var maxTokens: Int
    public var stop: [String]
    public var ignoreEOS = false
    /// Tokens already received by a client resuming a broken stream.
    public var continueAfter: [Int] = []
    /// The session the broken stream ran as (0: none), whose K/V a restarted coordinator may adopt.
    public var resumeSession: UInt64 = 0

    public init(input: PromptInput, sampling: SamplingParameters = .greedy, maxTokens: Int = 128, stop: [String] = [],
                ignoreEOS: Bool = false, continueAfter: [Int] = []) {
        self.continueAfter = continueAfter
        self.input = input
        self.sampling = sampling
        self.maxTokens = maxTokens
        self.stop = stop
        self.ignoreEOS = ignoreEOS
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "GenerateRequest", radial__generate_request__unpack, radial__generate_request__free_unpacked) { m in
            let prompt = text(m.prompt)
            let ids = list(m.n_prompt_ids, m.prompt_ids).map { Int($0) }
            let messages = messageList(m.n_messages, m.messages) { ChatMessage(role: text($0.role), content: text($0.content)) }
            let given = [!prompt.isEmpty, !ids.isEmpty, !messages.isEmpty].filter { $0 }.count
            guard given == 1 else {
                throw invalid("GenerateRequest", given == 0 ? "no prompt, prompt_ids or messages" : "give only one of prompt, prompt_ids and messages")
            }
            let input: PromptInput = !prompt.isEmpty ? .text(prompt) : !ids.isEmpty ? .ids(ids) : .chat(messages)
            var sampling = SamplingParameters()
            if let s = m.sampling?.pointee {
                if s.greedy != 0 {
                    sampling = .greedy
                } else {
                    sampling.temperature = s.temperature
                    sampling.topK = Int(s.top_k)
                    sampling.topP = s.top_p == 0 ? 1 : s.top_p
                    sampling.repetitionPenalty = s.repetition_penalty == 0 ? 1 : s.repetition_penalty
                }
                if s.has_seed != 0 { sampling.seed = s.seed }
            }
            do { try sampling.validate() } catch { throw invalid("GenerateRequest.sampling", "\(error)") }
            var request = GenerateRequest(input: input, sampling: sampling, maxTokens: Int(m.max_tokens),
                                          stop: texts(m.n_stop, m.stop), ignoreEOS: m.ignore_eos != 0,
                                          continueAfter: list(m.n_continue_after, m.continue_after).map { Int($0) })
            request.resumeSession = m.resume_session
            return request
        }
    }

    public func wireBytes() -> [UInt8] {
        let arena = Arena()
        var m = Radial__GenerateRequest()
        radial__generate_request__init(&m)
        switch input {
        case .text(let prompt): m.prompt = arena.string(prompt)
        case .ids(let ids): m.n_prompt_ids = ids.count; m.prompt_ids = arena.array(ids.map { UInt32($0) })
        case .chat(let messages):
            m.n_messages = messages.count
            m.messages = arena.messages(messages.map { message in
                var c = Radial__ChatMessage()
                radial__chat_message__init(&c)
                c.role = arena.string(message.role)
                c.content = arena.string(message.content)
                return c
            })
        }
        var s = Radial__SamplingParams()
        radial__sampling_params__init(&s)
        s.greedy = sampling.isGreedy ? 1 : 0
        s.temperature = sampling.temperature
        s.top_k = UInt32(sampling.topK)
        s.top_p = sampling.topP
        s.repetition_penalty = sampling.repetitionPenalty
        s.seed = sampling.seed
        s.has_seed = 1
        m.sampling = arena.message(s)
        m.max_tokens = UInt32(maxTokens)
        m.n_stop = stop.count
        m.stop = arena.strings(stop)
        m.ignore_eos = ignoreEOS ? 1 : 0
        m.n_continue_after = continueAfter.count
        m.continue_after = arena.array(continueAfter.map { UInt32($0) })
        m.resume_session = resumeSession
        return pack(m)
    }
}

/// What one generated token cost: the layers it ran and the worker visits (network hops) it made.
public struct TokenTrace: Sendable, Equatable {
    public var tokenID: Int
    public var layersRun: [Int]
    public var hops: Int

    public init(tokenID: Int, layersRun: [Int], hops: Int) {
        self.tokenID = tokenID
        self.layersRun = layersRun
        self.hops = hops
    }
}

public struct GenerateReply: WireMessage, Equatable {
    public var text: String = ""
    public var tokens: [TokenTrace] = []
    public var promptIDs: [Int] = []
    public var finishReason: FinishReason?
    public var prefillTokensPerSecond: Double = 0
    public var decodeTokensPerSecond: Double = 0
    /// In the first reply: the session to name in `GenerateRequest.resumeSession` when resuming.
    public var sessionID: UInt64 = 0

    public init() {}

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "GenerateReply", radial__generate_reply__unpack, radial__generate_reply__free_unpacked) { m in
            var r = GenerateReply()
            r.text = RadialProtocol.text(m.text)
            r.tokens = messageList(m.n_tokens, m.tokens) {
                TokenTrace(tokenID: Int($0.token_id), layersRun: list($0.n_layers_run, $0.layers_run).map { Int($0) }, hops: Int($0.hops))
            }
            r.promptIDs = list(m.n_prompt_ids, m.prompt_ids).map { Int($0) }
            r.finishReason = finishReasons.first { $0.1 == m.finish_reason }?.0
            r.prefillTokensPerSecond = m.prefill_tokens_per_s
            r.decodeTokensPerSecond = m.decode_tokens_per_s
            r.sessionID = m.session_id
            return r
        }
    }

    public func wireBytes() -> [UInt8] {
        let arena = Arena()
        var m = Radial__GenerateReply()
        radial__generate_reply__init(&m)
        m.text = arena.string(text)
        m.n_tokens = tokens.count
        m.tokens = arena.messages(tokens.map { t in
            var c = Radial__TokenTrace()
            radial__token_trace__init(&c)
            c.token_id = UInt32(t.tokenID)
            c.n_layers_run = t.layersRun.count
            c.layers_run = arena.array(t.layersRun.map { UInt32($0) })
            c.hops = UInt32(t.hops)
            return c
        })
        m.n_prompt_ids = promptIDs.count
        m.prompt_ids = arena.array(promptIDs.map { UInt32($0) })
        m.finish_reason = finishReason.flatMap { reason in finishReasons.first { $0.0 == reason }?.1 } ?? RADIAL__FINISH_REASON__FINISH_NONE
        m.prefill_tokens_per_s = prefillTokensPerSecond
        m.decode_tokens_per_s = decodeTokensPerSecond
        m.session_id = sessionID
        return pack(m)
    }
}

private let finishReasons: [(FinishReason, Radial__FinishReason)] = [
    (.endOfGeneration, RADIAL__FINISH_REASON__FINISH_EOS), (.maxTokens, RADIAL__FINISH_REASON__FINISH_LENGTH),
    (.stopString, RADIAL__FINISH_REASON__FINISH_STOP), (.cancelled, RADIAL__FINISH_REASON__FINISH_CANCELLED),
    (.contextFull, RADIAL__FINISH_REASON__FINISH_CONTEXT),
]

public struct StatusRequest: WireMessage, Equatable {
    public init() {}
    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "StatusRequest", radial__status_request__unpack, radial__status_request__free_unpacked) { _ in StatusRequest() }
    }
    public func wireBytes() -> [UInt8] {
        var m = Radial__StatusRequest()
        radial__status_request__init(&m)
        return pack(m)
    }
}

public struct WorkerStatus: Sendable, Equatable {
    public var address: String
    public var healthy: Bool
    public var info: WorkerInfo?
    public var visits: UInt64 = 0
    public var visitsSkipped: UInt64 = 0
    public var rttP50ms: Double = 0
    public var bytesSent: UInt64 = 0
    public var bytesReceived: UInt64 = 0
    /// Median round trip minus the worker's compute (network, serialisation, thread wake-ups), in ms.
    public var overheadP50ms: Double = 0

    public init(address: String, healthy: Bool, info: WorkerInfo?) {
        self.address = address
        self.healthy = healthy
        self.info = info
    }
}

public struct StatusReply: WireMessage, Equatable {
    public var handshake: Handshake
    public var model: String = ""
    public var modelLayers: Int = 0
    public var workers: [WorkerStatus] = []
    public var sessionsRunning: Int = 0
    public var sessionsQueued: Int = 0
    public var tokensGenerated: UInt64 = 0
    public var tokensPerSecond: Double = 0
    public var layerSkipRate: [Double] = []
    public var hopsPerToken: Double = 0
    public var hopsSavedPerToken: Double = 0
    public var kvPolicy: SkippedLayerKV = .fill
    public var tokensForwarded: UInt64 = 0
    public var forwardBytes: UInt64 = 0
    /// The coordinator's routing policy (nil: dense), and how many layers its router decides together.
    public var routing: WireRouting?
    public var routerBlock: Int = 1
    /// The coordinator's own weights (final norm, LM head) and resident memory.
    public var weightBytes: UInt64 = 0
    public var rssBytes: UInt64 = 0
    /// Worker failures the stages recovered from, and the replay history they keep.
    public var failovers: UInt64 = 0
    public var historyBytes: UInt64 = 0
    public var sessionsAdopted: UInt64 = 0

    public init(handshake: Handshake) { self.handshake = handshake }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "StatusReply", radial__status_reply__unpack, radial__status_reply__free_unpacked) { m in
            var r = StatusReply(handshake: try Handshake.from(m.handshake, field: "StatusReply.handshake"))
            r.model = text(m.model)
            r.modelLayers = Int(m.model_layers)
            r.workers = try messageList(m.n_workers, m.workers) { w in
                var s = WorkerStatus(address: text(w.address), healthy: w.healthy != 0, info: try w.info.map { try WorkerInfo($0.pointee) })
                s.visits = w.visits
                s.visitsSkipped = w.visits_skipped
                s.rttP50ms = w.rtt_p50_ms
                s.bytesSent = w.bytes_sent
                s.bytesReceived = w.bytes_received
                s.overheadP50ms = w.overhead_p50_ms
                return s
            }
            r.sessionsRunning = Int(m.sessions_running)
            r.sessionsQueued = Int(m.sessions_queued)
            r.tokensGenerated = m.tokens_generated
            r.tokensPerSecond = m.tokens_per_s
            r.layerSkipRate = list(m.n_layer_skip_rate, m.layer_skip_rate)
            r.hopsPerToken = m.hops_per_token
            r.hopsSavedPerToken = m.hops_saved_per_token
            r.kvPolicy = try kvPolicyFrom(m.kv_policy, field: "StatusReply.kv_policy")
            r.tokensForwarded = m.tokens_forwarded
            r.forwardBytes = m.wire_bytes
            r.routing = m.routing.map { WireRouting($0.pointee) }
            r.routerBlock = max(Int(m.router_block), 1)
            r.weightBytes = m.weight_bytes
            r.rssBytes = m.rss_bytes
            r.failovers = m.failovers
            r.historyBytes = m.history_bytes
            r.sessionsAdopted = m.sessions_adopted
            return r
        }
    }

    public func wireBytes() -> [UInt8] {
        let arena = Arena()
        var m = Radial__StatusReply()
        radial__status_reply__init(&m)
        m.handshake = handshake.c(arena)
        m.model = arena.string(model)
        m.model_layers = UInt32(modelLayers)
        m.n_workers = workers.count
        m.workers = arena.messages(workers.map { w in
            var c = Radial__WorkerStatus()
            radial__worker_status__init(&c)
            c.address = arena.string(w.address)
            c.healthy = w.healthy ? 1 : 0
            c.info = w.info?.c(arena)
            c.visits = w.visits
            c.visits_skipped = w.visitsSkipped
            c.rtt_p50_ms = w.rttP50ms
            c.bytes_sent = w.bytesSent
            c.bytes_received = w.bytesReceived
            c.overhead_p50_ms = w.overheadP50ms
            return c
        })
        m.sessions_running = UInt32(sessionsRunning)
        m.sessions_queued = UInt32(sessionsQueued)
        m.tokens_generated = tokensGenerated
        m.tokens_per_s = tokensPerSecond
        m.n_layer_skip_rate = layerSkipRate.count
        m.layer_skip_rate = arena.array(layerSkipRate)
        m.hops_per_token = hopsPerToken
        m.hops_saved_per_token = hopsSavedPerToken
        m.kv_policy = kvPolicy == .fill ? RADIAL__KVPOLICY__KV_FILL : RADIAL__KVPOLICY__KV_MASK
        m.tokens_forwarded = tokensForwarded
        m.wire_bytes = forwardBytes
        if let routing { m.routing = routing.c(arena) }
        m.router_block = UInt32(routerBlock)
        m.weight_bytes = weightBytes
        m.rss_bytes = rssBytes
        m.failovers = failovers
        m.history_bytes = historyBytes
        m.sessions_adopted = sessionsAdopted
        return pack(m)
    }
}

public struct TokenizeRequest: WireMessage, Equatable {
    public var text: String
    public var parseSpecial: Bool

    public init(text: String, parseSpecial: Bool = true) {
        self.text = text
        self.parseSpecial = parseSpecial
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "TokenizeRequest", radial__tokenize_request__unpack, radial__tokenize_request__free_unpacked) { m in
            TokenizeRequest(text: RadialProtocol.text(m.text), parseSpecial: m.parse_special != 0)
        }
    }

    public func wireBytes() -> [UInt8] {
        let arena = Arena()
        var m = Radial__TokenizeRequest()
        radial__tokenize_request__init(&m)
        m.text = arena.string(text)
        m.parse_special = parseSpecial ? 1 : 0
        return pack(m)
    }
}

public struct TokenizeReply: WireMessage, Equatable {
    public var ids: [Int]
    public var pieces: [String]

    public init(ids: [Int], pieces: [String]) {
        self.ids = ids
        self.pieces = pieces
    }

    public init(wire: [UInt8]) throws {
        self = try unpack(wire, "TokenizeReply", radial__tokenize_reply__unpack, radial__tokenize_reply__free_unpacked) { m in
            TokenizeReply(ids: list(m.n_ids, m.ids).map { Int($0) }, pieces: texts(m.n_pieces, m.pieces))
        }
    }

    public func wireBytes() -> [UInt8] {
        let arena = Arena()
        var m = Radial__TokenizeReply()
        radial__tokenize_reply__init(&m)
        m.n_ids = ids.count
        m.ids = arena.array(ids.map { UInt32($0) })
        m.n_pieces = pieces.count
        m.pieces = arena.strings(pieces)
        return pack(m)
    }
}
