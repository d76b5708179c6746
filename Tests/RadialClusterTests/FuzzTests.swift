import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
@testable import RadialWorker
import Testing

/// Seeded mutational fuzzing: valid request messages and a valid GGUF file, mutated many ways, fed to the decoders
/// and to the worker's handlers. Every input must be answered with a value or a typed error: no trap, no hang.
/// `RADIAL_FUZZ_ITERATIONS` (default 3000 per target) sets the count; `scripts/fuzz.sh` runs 100,000.
@Suite struct FuzzTests {
    static var iterations: Int { ProcessInfo.processInfo.environment["RADIAL_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 3000 }

    /// Bit flips, random bytes, inserts, deletes, truncations, duplicated ranges, splices with another input, and
    /// varints pushed to their maximum (protobuf lengths and counts).
    struct Mutator {
        var rng: SplitMix64
        mutating func int(_ n: Int) -> Int { n <= 0 ? 0 : Int(rng.next() % UInt64(n)) }

        mutating func mutate(_ input: [UInt8], corpus: [[UInt8]]) -> [UInt8] {
            var b = input
            for _ in 0..<(1 + int(4)) {
                switch int(8) {
                case 0 where !b.isEmpty: b[int(b.count)] ^= UInt8(1 << int(8))
                case 1 where !b.isEmpty: b[int(b.count)] = UInt8(truncatingIfNeeded: rng.next())
                case 2: b.insert(contentsOf: (0..<(1 + int(8))).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: int(b.count + 1))
                case 3 where !b.isEmpty: let i = int(b.count); b.removeSubrange(i..<min(b.count, i + 1 + int(16)))
                case 4: b = Array(b.prefix(int(b.count + 1)))
                case 5 where !b.isEmpty: let i = int(b.count), n = min(b.count - i, 1 + int(32)); b.insert(contentsOf: b[i..<(i + n)], at: int(b.count))
                case 6: let other = corpus[int(corpus.count)]; b = Array(b.prefix(int(b.count + 1))) + other.suffix(int(other.count + 1))
                case 7 where !b.isEmpty: let i = int(b.count); b.replaceSubrange(i..<i, with: [0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
                default: break
                }
            }
            return b
        }
    }

    /// Runs `body` on `iterations` mutants of the corpus.
    func fuzz(_ corpus: [[UInt8]], seed: UInt64, iterations: Int = FuzzTests.iterations, _ body: ([UInt8]) -> Void) {
        var m = Mutator(rng: SplitMix64(seed: seed))
        for c in corpus { body(c) }
        for i in 0..<iterations { body(m.mutate(corpus[i % corpus.count], corpus: corpus)) }
    }

    @Test func requestDecodersNeverTrap() async throws {
        // Child processes / seconds of CPU: off the cooperative pool (see `blocking`).
        try await blocking {
            let h = Handshake(modelFingerprint: "abc")
            let dim = 64
            let hidden = WireTensor([Float](repeating: 0.5, count: 2 * dim), shape: [2, dim])
            let corpus: [[UInt8]] = [
                ForwardRequest(handshake: h, tokens: [TokenEntry(sessionID: 1, position: 0), TokenEntry(sessionID: 1, position: 1, layers: [1, 2], routed: true, layersBefore: 1)],
                               hidden: hidden, fills: [KVFillEntry(sessionID: 2, position: 3)],
                               fillHidden: WireTensor([Float](repeating: 1, count: dim), shape: [1, dim]), policyID: 77,
                               expect: StageIdentity(layers: LayerRange(0, 3), activations: "f32", routerFingerprint: "")).wireBytes(),
                ConfigureRequest(handshake: h, expect: StageIdentity(layers: LayerRange(0, 3), activations: "q8", routerFingerprint: "r"),
                                 policy: StagePolicy(kvPolicy: .mask, routing: WireRouting(routerFingerprint: "r", threshold: 0.5, alwaysRun: [0], minLayers: 1))).wireBytes(),
                GenerateRequest(input: .chat([ChatMessage(role: "user", content: "hi")]), maxTokens: 9, stop: ["x"], continueAfter: [5, 6]).wireBytes(),
                GenerateRequest(input: .ids([1, 2, 3])).wireBytes(),
                RestoreSessionRequest(handshake: h, history: [TokenEntry(sessionID: 4, position: 0), TokenEntry(sessionID: 4, position: 1, layers: [])],
                                      hidden: hidden, kvPolicy: .fill, groupSizes: [1, 1]).wireBytes(),
                CloseSessionRequest(handshake: h, sessionIDs: [1, 2, 3]).wireBytes(),
                InfoRequest(handshake: h).wireBytes(),
                EchoRequest(payload: [1, 2, 3], replyBytes: 10, streamCount: 2, delayMilliseconds: 1).wireBytes(),
                TokenizeRequest(text: "hello", parseSpecial: true).wireBytes(),
            ]
            var decoded = 0
            fuzz(corpus, seed: 1) { bytes in
                if (try? ForwardRequest(wire: bytes)) != nil { decoded += 1 }
                if (try? GenerateRequest(wire: bytes)) != nil { decoded += 1 }
                if (try? RestoreSessionRequest(wire: bytes)) != nil { decoded += 1 }
                if (try? ConfigureRequest(wire: bytes)) != nil { decoded += 1 }
                _ = try? CloseSessionRequest(wire: bytes)
                _ = try? InfoRequest(wire: bytes)
                _ = try? EchoRequest(wire: bytes)
                _ = try? TokenizeRequest(wire: bytes)
                _ = try? StatusRequest(wire: bytes)
                _ = try? HealthCheckRequest(wire: bytes)
            }
            #expect(decoded > Self.iterations / 20, "mutants still reach past the decoders' first checks")
        }
    }

    /// Mutated Forward, Configure and RestoreSession requests through a worker's handlers (tiny model): each is a reply or
    /// an RPCError, and the worker still computes correctly afterwards.
    @Test func workerHandlersAnswerEveryMutant() async throws {
        // Child processes / seconds of CPU: off the cooperative pool (see `blocking`).
        try await blocking {
            let path = try ClusterTestSupport.writeTinyModel()
            let file = try GGUFFile(path: path)
            let model = try LlamaModel(file: file)
            let shard = try LlamaShard(file: file, config: model.config, range: LayerRange(0, model.config.layerCount))
            let service = WorkerService(shard: shard, fingerprint: file.fingerprint,
                                        config: WorkerConfig(workerID: "fuzz", kvBudgetBytes: 8 << 20, maxBatchTokens: 64))
            let dim = model.config.dim, h = service.handshake
            let embedded = try model.head.embed([5, 6, 7])
            let corpus: [[UInt8]] = [
                ForwardRequest(handshake: h, tokens: (0..<3).map { TokenEntry(sessionID: 9, position: $0) },
                               hidden: WireTensor(embedded, shape: [3, dim]), expect: service.identity).wireBytes(),
                ForwardRequest(handshake: h, tokens: [TokenEntry(sessionID: 8, position: 0, layers: [0, 2])],
                               hidden: WireTensor(Array(embedded.prefix(dim)), shape: [1, dim])).wireBytes(),
                RestoreSessionRequest(handshake: h, history: (0..<3).map { TokenEntry(sessionID: 7 + UInt64($0 % 2), position: $0) },
                                      hidden: WireTensor(embedded, shape: [3, dim]), kvPolicy: .fill, groupSizes: [2, 1]).wireBytes(),
                ConfigureRequest(handshake: h, expect: service.identity, policy: StagePolicy(kvPolicy: .mask)).wireBytes(),
            ]
            var answered = 0, refused = 0
            fuzz(corpus, seed: 2) { bytes in
                if let r = try? ForwardRequest(wire: bytes) {
                    do { _ = try service.forward(r); answered += 1 } catch is RPCError { refused += 1 } catch { Issue.record("not an RPCError: \(error)") }
                }
                if let r = try? ConfigureRequest(wire: bytes) {
                    do { _ = try service.configure(r); answered += 1 } catch is RPCError { refused += 1 } catch { Issue.record("not an RPCError: \(error)") }
                }
                if let r = try? RestoreSessionRequest(wire: bytes) {
                    do { _ = try service.restore(r); answered += 1 } catch is RPCError { refused += 1 } catch { Issue.record("not an RPCError: \(error)") }
                }
                if answered + refused > 0 && (answered + refused) % 500 == 0 { _ = service.host.close(Array(0...64)) }  // keep the budget free
            }
            #expect(answered > 0 && refused > 0, "answered \(answered), refused \(refused)")
            // Still exact afterwards (a session id no mutant can have touched).
            let out = try service.forward(ForwardRequest(handshake: h, tokens: (0..<3).map { TokenEntry(sessionID: 1 << 60, position: $0) },
                                                         hidden: WireTensor(embedded, shape: [3, dim])))
            var local = embedded
            let cache = model.makeCache()
            _ = try local.withUnsafeMutableBufferPointer { try model.shard.forward($0.baseAddress!, tokens: (0..<3).map { ShardToken(cache: cache, position: $0) }) }
            #expect(out.hidden.floats() == local)
        }
    }

    /// Mutated GGUF files through the reader, the configuration, the tokenizer and the model loader.
    @Test func ggufReaderNeverTraps() async throws {
        // Child processes / seconds of CPU: off the cooperative pool (see `blocking`).
        try await blocking {
            var spec = TinyModelSpec()
            spec.dim = 32
            spec.ffnDim = 64
            spec.layers = 2
            spec.weightType = .q8_0
            let path = try TestPaths.tempDir() + "/base.gguf"
            try spec.write(to: path)
            let base = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            let dir = try TestPaths.tempDir()
            var opened = 0
            // Mutants stay within the header and tensor table, where the parser lives, most of the time.
            // Each mutant is a file to map: a third of the count keeps the CI pass short.
            fuzz([base, Array(base.prefix(4096))], seed: 3, iterations: max(Self.iterations / 3, 1)) { bytes in
                let p = dir + "/m.gguf"
                FileManager.default.createFile(atPath: p, contents: Data(bytes))
                guard let f = try? GGUFFile(path: p) else { return }
                opened += 1
                _ = try? LlamaConfig(gguf: f)
                _ = try? Tokenizer(gguf: f)
                _ = try? LlamaModel(file: f)
            }
            #expect(opened > 0)
        }
    }
}
