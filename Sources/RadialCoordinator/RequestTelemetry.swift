import Logging
import Metrics
import RadialModel
import RadialProtocol

/// What one request did, as a log line and as metrics, whichever front end (gRPC or HTTP) served it: prompt and
/// generated tokens, time to first token, per-token latency, hops, layers skipped, and how it ended.
struct RequestTelemetry {
    static let logger = Logger(label: "radial.requests")
    static let generatedTokens = Counter(label: "radial_generated_tokens_total")
    static let promptTokens = Counter(label: "radial_prompt_tokens_total")
    static let tokenHops = Counter(label: "radial_token_hops_total")
    static let layersSkipped = Counter(label: "radial_layers_skipped_total")
    static let layersRun = Counter(label: "radial_layers_run_total")
    static let hopsPerToken = Recorder(label: "radial_hops_per_token")
    static let timeToFirstToken = Timer(label: "radial_time_to_first_token_seconds")
    static let interTokenLatency = Timer(label: "radial_inter_token_latency_seconds")
    static let duration = Timer(label: "radial_request_duration_seconds")

    let id: String
    let api: String
    let modelLayers: Int
    let start = ContinuousClock.now
    var promptTokenCount = 0
    var generated = 0
    var hops = 0
    var skipped = 0
    var firstToken: Duration?
    var lastToken: ContinuousClock.Instant?

    init(id: String, api: String, modelLayers: Int) {
        self.id = id
        self.api = api
        self.modelLayers = modelLayers
    }

    mutating func prompt(_ tokens: Int) {
        promptTokenCount = tokens
        Self.promptTokens.increment(by: Int64(tokens))
    }

    mutating func token(_ trace: TokenTrace) {
        let now = ContinuousClock.now
        if let lastToken {
            Self.interTokenLatency.record(now - lastToken)
        } else {
            firstToken = now - start
            Self.timeToFirstToken.record(now - start)
        }
        lastToken = now
        generated += 1
        hops += trace.hops
        let skip = max(modelLayers - trace.layersRun.count, 0)
        skipped += skip
        Self.generatedTokens.increment()
        Self.tokenHops.increment(by: Int64(trace.hops))
        Self.hopsPerToken.record(trace.hops)
        Self.layersSkipped.increment(by: Int64(skip))
        Self.layersRun.increment(by: Int64(trace.layersRun.count))
    }

    /// Counts the request under `outcome` (a finish reason, "cancelled", or an error's status code) and writes
    /// the request's log line.
    func finish(outcome: String, error: String? = nil) {
        let total = ContinuousClock.now - start
        Self.duration.record(total)
        Counter(label: "radial_requests_total", dimensions: [("api", api), ("outcome", outcome)]).increment()
        var fields: Logger.Metadata = [
            "request": "\(id)", "api": "\(api)", "outcome": "\(outcome)",
            "prompt_tokens": "\(promptTokenCount)", "generated_tokens": "\(generated)",
            "total_ms": "\(Int((total.seconds * 1000).rounded()))", "hops": "\(hops)", "layers_skipped": "\(skipped)",
        ]
        if let firstToken { fields["ttft_ms"] = "\(Int((firstToken.seconds * 1000).rounded()))" }
        if let error { fields["error"] = "\(error)" }
        Self.logger.log(level: error == nil ? .info : .warning, "request", metadata: fields)
    }
}

extension Timer {
    func record(_ duration: Duration) {
        let (s, attos) = duration.components
        recordNanoseconds(s * 1_000_000_000 + attos / 1_000_000_000)
    }
}
