import Foundation
import Hummingbird
import RadialCoordinator
import RadialModel
import RadialProtocol
import RadialRPC
import Synchronization

/// The OpenAI-compatible HTTP API over a coordinator: `POST /v1/chat/completions`, `POST /v1/completions`
/// (streamed as server-sent events or whole), `GET /v1/models`, plus `GET /health`. Every generation goes
/// through the same `CoordinatorService.run` as gRPC Generate: same limits, same scheduler, same request log.
public struct OpenAIAPI: Sendable {
    let service: CoordinatorService
    /// The model's name in replies and /v1/models (clients may send any `model`: one model is served).
    let modelID: String
    /// The bearer tokens `Authorization` may carry (the gRPC server's, every line of its token file); empty: no
    /// check.
    let tokens: [String]
    /// Largest request body accepted.
    let maxBodyBytes = 4 << 20

    public init(service: CoordinatorService, modelID: String, tokens: [String]) {
        self.service = service
        self.modelID = modelID
        self.tokens = tokens
    }

    /// Adds the API's routes and its middleware (bearer token, OpenAI-shaped errors for every route) to `router`.
    public func register(on router: Router<BasicRequestContext>) {
        router.middlewares.add(OpenAIMiddleware(tokens: tokens))
        router.get("/health") { _, _ in Response(status: .ok, body: .init(byteBuffer: ByteBuffer(string: "ok\n"))) }
        router.get("/v1/models") { _, _ in
            try json(ModelList(data: [.init(id: modelID, created: Int(Date().timeIntervalSince1970))]))
        }
        router.post("/v1/chat/completions") { request, _ in try await complete(request, chat: true) }
        router.post("/v1/completions") { request, _ in try await complete(request, chat: false) }
    }

    func complete(_ request: Request, chat: Bool) async throws -> Response {
        var request = request
        let body: OpenAIRequest
        do {
            let bytes = try await request.collectBody(upTo: maxBodyBytes)
            body = try decoder.decode(OpenAIRequest.self, from: Data(bytes.readableBytesView))
        } catch let error as DecodingError {
            throw OpenAIError(status: .badRequest, message: "the request body is not valid: \(describe(error))")
        } catch {
            throw OpenAIError(status: .contentTooLarge, message: "the request body is over \(maxBodyBytes >> 20) MiB")
        }
        let reply = ReplyShape(id: (chat ? "chatcmpl-" : "cmpl-") + RequestID.make(), chat: chat, model: modelID,
                               created: Int(Date().timeIntervalSince1970), modelLayers: service.modelLayers)
        let generate: GenerateRequest
        do { generate = try body.generateRequest(chat: chat) } catch let error as RPCError {
            // Refused before it reached the coordinator's own checks: counted and logged like any other request.
            service.recordRefused(requestID: reply.requestID, api: "http", error)
            throw OpenAIError(error)
        }
        if body.stream == true {
            return try await stream(generate, reply: reply, includeUsage: body.streamOptions?.includeUsage == true)
        }
        return try await whole(generate, reply: reply)
    }

    /// `stream: false`: the whole reply once the generation ends.
    func whole(_ request: GenerateRequest, reply shape: ReplyShape) async throws -> Response {
        var promptTokens = 0, text = "", tokens: [RadialTokenInfo] = [], finish: FinishReason?
        do {
            try await service.run(request, requestID: shape.requestID, api: "http") { ids, _ in
                promptTokens = ids.count
            } deliver: { event in
                switch event {
                case .token(let trace, let piece):
                    tokens.append(RadialTokenInfo(id: trace.tokenID, layers: trace.layersRun, hops: trace.hops))
                    text += piece
                case .text(let piece): text += piece
                case .finished(let reason, _, _): finish = reason
                case .failed: break
                }
            }
        } catch let error as RPCError { throw OpenAIError(error) }
        var choice = CompletionReply.Choice(finishReason: finish?.openAI)
        if shape.chat { choice.message = ChatReplyMessage(role: "assistant", content: text) } else { choice.text = text }
        var reply = shape.reply(choices: [choice])
        reply.usage = Usage(promptTokens: promptTokens, completionTokens: tokens.count)
        reply.radial = shape.summary(tokens)
        return try json(reply)
    }

    /// `stream: true`: one server-sent event per token, the finish reason, optionally the usage, then `[DONE]`.
    /// Errors found before the first token (a bad prompt, a full queue) are HTTP errors; later ones end the stream
    /// with an `error` event.
    func stream(_ request: GenerateRequest, reply shape: ReplyShape, includeUsage: Bool) async throws -> Response {
        let (events, sink) = AsyncStream<SessionEvent>.makeStream()
        let started = OneShot<Result<Int, RPCError>>()
        let generation = Task {
            do {
                try await service.run(request, requestID: shape.requestID, api: "http") { ids, _ in
                    started.fulfil(.success(ids.count))
                } deliver: { event in
                    // The response body ends the stream when the client goes away; stop generating then.
                    if case .terminated = sink.yield(event) { throw CancellationError() }
                }
            } catch let error as RPCError {
                started.fulfil(.failure(error))
                sink.yield(.failed(error))
            } catch {}
            sink.finish()
        }
        let promptTokens: Int
        switch await started.value {
        case .success(let n): promptTokens = n
        case .failure(let error): throw OpenAIError(error)
        }
        let headers: HTTPFields = [.contentType: "text/event-stream", .cacheControl: "no-cache"]
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in
            defer { generation.cancel() }
            var first = CompletionReply.Choice()
            if shape.chat { first.delta = ChatReplyMessage(role: "assistant", content: "") } else { first.text = "" }
            try await writer.write(try event(shape.reply(choices: [first])))
            var tokens: [RadialTokenInfo] = []
            for await e in events {
                var choice = CompletionReply.Choice()
                switch e {
                case .token(let trace, let piece):
                    let info = RadialTokenInfo(id: trace.tokenID, layers: trace.layersRun, hops: trace.hops)
                    tokens.append(info)
                    choice.radial = [info]
                    shape.put(piece, in: &choice)
                case .text(let piece):
                    shape.put(piece, in: &choice)
                case .finished(let reason, _, _):
                    shape.put("", in: &choice)
                    choice.finishReason = reason.openAI
                case .failed(let error):
                    let body = OpenAIErrorBody(error: OpenAIError(error).detail)
                    try await writer.write(ByteBuffer(string: "event: error\ndata: \(String(decoding: try encoder.encode(body), as: UTF8.self))\n\n"))
                    continue
                }
                var chunk = shape.reply(choices: [choice])
                if case .finished = e { chunk.radial = shape.summary(tokens, perToken: false) }
                try await writer.write(try event(chunk))
            }
            if includeUsage {
                var usage = shape.reply(choices: [])
                usage.usage = Usage(promptTokens: promptTokens, completionTokens: tokens.count)
                try await writer.write(try event(usage))
            }
            try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
            try await writer.finish(nil)
        })
    }
}

/// What every reply of one request shares.
struct ReplyShape {
    let id: String
    let chat: Bool
    let model: String
    let created: Int
    let modelLayers: Int
    var requestID: String { String(id.split(separator: "-").last ?? "") }

    func reply(choices: [CompletionReply.Choice]) -> CompletionReply {
        CompletionReply(id: id, object: chat ? "chat.completion" : "text_completion", created: created, model: model, choices: choices)
    }

    func put(_ text: String, in choice: inout CompletionReply.Choice) {
        if chat { choice.delta = ChatReplyMessage(content: text) } else { choice.text = text }
    }

    func summary(_ tokens: [RadialTokenInfo], perToken: Bool = true) -> RadialSummary {
        let n = Double(max(tokens.count, 1))
        return RadialSummary(modelLayers: modelLayers,
                             hopsPerToken: Double(tokens.reduce(0) { $0 + $1.hops }) / n,
                             layersSkippedPerToken: Double(tokens.reduce(0) { $0 + modelLayers - $1.layers.count }) / n,
                             tokens: perToken ? tokens : nil)
    }
}

/// An HTTP error with OpenAI's body.
struct OpenAIError: Error {
    var status: HTTPResponse.Status
    var detail: OpenAIErrorBody.Detail

    init(status: HTTPResponse.Status, message: String, type: String = "invalid_request_error", code: String? = nil) {
        self.status = status
        detail = .init(message: message, type: type, code: code)
    }

    /// The HTTP status and OpenAI error type for a gRPC status.
    init(_ error: RPCError) {
        switch error.code {
        case .invalidArgument, .failedPrecondition, .outOfRange:
            self.init(status: .badRequest, message: error.message)
        case .unauthenticated, .permissionDenied:
            self.init(status: .unauthorized, message: error.message, code: "invalid_api_key")
        case .notFound:
            self.init(status: .notFound, message: error.message)
        case .resourceExhausted:
            self.init(status: .tooManyRequests, message: error.message, type: "rate_limit_error", code: "rate_limit_exceeded")
        case .unavailable:
            self.init(status: .serviceUnavailable, message: error.message, type: "server_error", code: "unavailable")
        case .deadlineExceeded:
            self.init(status: .gatewayTimeout, message: error.message, type: "server_error", code: "timeout")
        default:
            self.init(status: .internalServerError, message: error.message, type: "server_error")
        }
    }

    var response: Response {
        let body = (try? encoder.encode(OpenAIErrorBody(error: detail))) ?? Data()
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Checks `Authorization: Bearer TOKEN` (except on /health and /metrics, which probes and scrapers read without
/// one) and turns every error, unknown routes included, into OpenAI's error body.
struct OpenAIMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let tokens: [String]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let open = request.uri.path == "/health" || request.uri.path == "/metrics"
        if !tokens.isEmpty, !open {
            let given = request.headers[.authorization] ?? ""
            // Every token is compared, each in constant time: the time taken tells nothing about any of them.
            guard tokens.map({ constantTimeEqual(given, "Bearer " + $0) }).contains(true) else {
                let message = given.isEmpty ? "missing 'Authorization: Bearer TOKEN' header" : "incorrect API key"
                return OpenAIError(status: .unauthorized, message: message, code: "invalid_api_key").response
            }
        }
        do {
            return try await next(request, context)
        } catch let error as OpenAIError {
            return error.response
        } catch let error as HTTPError {
            let message = error.status == .notFound ? "no route \(request.method) \(request.uri.path)" : error.body ?? "\(error.status)"
            return OpenAIError(status: error.status, message: message).response
        } catch {
            return OpenAIError(status: .internalServerError, message: "\(error)", type: "server_error").response
        }
    }

    /// Compares without an early exit, so the time taken does not tell how much of a guessed token was right.
    private func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8), y = Array(b.utf8)
        var diff = UInt8(x.count == y.count ? 0 : 1)
        for i in 0..<max(x.count, y.count) { diff |= (i < x.count ? x[i] : 0) ^ (i < y.count ? y[i] : 0) }
        return diff == 0
    }
}

/// A value set once by one task and awaited by another.
final class OneShot<Value: Sendable>: Sendable {
    private let state = Mutex<(value: Value?, waiters: [CheckedContinuation<Value, Never>])>((nil, []))

    func fulfil(_ value: Value) {
        let waiters = state.withLock { s -> [CheckedContinuation<Value, Never>] in
            guard s.value == nil else { return [] }
            s.value = value
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume(returning: value) }
    }

    var value: Value {
        get async {
            await withCheckedContinuation { c in
                let now = state.withLock { s -> Value? in
                    if s.value == nil { s.waiters.append(c) }
                    return s.value
                }
                if let now { c.resume(returning: now) }
            }
        }
    }
}

private let encoder: JSONEncoder = {
    let e = JSONEncoder()
    e.keyEncodingStrategy = .convertToSnakeCase
    e.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
    return e
}()

private let decoder: JSONDecoder = {
    let d = JSONDecoder()
    d.keyDecodingStrategy = .convertFromSnakeCase
    return d
}()

private func json(_ value: some Encodable) throws -> Response {
    Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}

private func event(_ value: some Encodable) throws -> ByteBuffer {
    var buffer = ByteBuffer(string: "data: ")
    buffer.writeBytes(try encoder.encode(value))
    buffer.writeString("\n\n")
    return buffer
}

/// A decoding error as one line that names the field.
private func describe(_ error: DecodingError) -> String {
    func path(_ c: DecodingError.Context) -> String {
        let p = c.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        return p.isEmpty ? c.debugDescription : "'\(p)': \(c.debugDescription)"
    }
    switch error {
    case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): return path(c)
    case .keyNotFound(let key, _): return "'\(key.stringValue)' is required"
    @unknown default: return "\(error)"
    }
}
