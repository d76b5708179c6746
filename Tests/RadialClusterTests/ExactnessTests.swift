import Foundation
import RadialModel
import RadialProtocol
import RadialRPC
import RadialTestSupport
import Testing

/// Coordinator + 3 worker processes on loopback produce exactly the in-process engine's tokens.
@Suite struct ExactnessTests {
    /// Eight concurrent requests (greedy and seeded sampling, prompts of different lengths) and one alone.
    func checkCluster(model: String, prompts: [[Int]], layers: [String], maxTokens: Int, coordinatorArgs: [String] = []) async throws {
        let reference = try Reference(path: model)
        let cluster = try await LocalCluster.launch(model: model, layers: layers, coordinatorArgs: coordinatorArgs)
        let cases = prompts.enumerated().map { (i, p) in (prompt: p, sampling: ClusterTestSupport.sampling(seed: i % 2 == 0 ? nil : UInt64(1000 + i))) }
        var expected: [GenerationResult] = []
        for c in cases { expected.append(try await reference.generate(c.prompt, c.sampling, maxTokens: maxTokens)) }
        #expect(expected.filter { $0.generatedIDs.count >= maxTokens / 2 }.count >= 4, "most references generate real text, so equality means something")

        let alone = try await cluster.generate(GenerateRequest(input: .ids(cases[0].prompt), sampling: cases[0].sampling, maxTokens: maxTokens))
        #expect(alone.ids == expected[0].generatedIDs, "one request alone")
        #expect(alone.text == expected[0].text)
        #expect(alone.hops.allSatisfy { $0 == layers.count }, "every token visits every worker (no routing yet)")

        let together = try await withThrowingTaskGroup(of: (Int, [Int], String).self) { group in
            for (i, c) in cases.enumerated() {
                group.addTask {
                    let r = try await cluster.generate(GenerateRequest(input: .ids(c.prompt), sampling: c.sampling, maxTokens: maxTokens))
                    return (i, r.ids, r.text)
                }
            }
            var out: [(Int, [Int], String)] = []
            for try await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }
        }
        for (i, ids, text) in together {
            #expect(ids == expected[i].generatedIDs, "request \(i) of \(cases.count) concurrent (\(cases[i].sampling.isGreedy ? "greedy" : "seeded"))")
            #expect(text == expected[i].text)
        }
        let status = try await cluster.status()
        #expect(status.workers.allSatisfy { ($0.info?.counters.forwardCalls ?? 0) > 0 })
        #expect(status.routing == nil && status.hopsSavedPerToken == 0, "no router: dense")
        let exits = cluster.stop()
        #expect(exits.allSatisfy { $0 == 0 }, "every process stops gracefully on SIGTERM, got \(exits)")
    }

    @Test func tinyModelAcrossThreeWorkers() async throws {
        let model = try ClusterTestSupport.writeTinyModel(layers: 3)
        let prompts = (0..<8).map { i in (0..<(3 + 5 * i)).map { 3 + ($0 * 7 + i * 13) % 250 } }
        try await checkCluster(model: model, prompts: prompts, layers: ["0-0", "1-1", "2-2"], maxTokens: 24)
    }

    /// The sessions split over one lane (one batch through the pipeline per step) or three (three batches in
    /// flight, each session in its own lane's batch): the tokens are the same either way.
    @Test(arguments: [1, 3]) func tinyModelWithLanes(_ lanes: Int) async throws {
        let model = try ClusterTestSupport.writeTinyModel(layers: 3)
        let prompts = (0..<8).map { i in (0..<(4 + 3 * i)).map { 5 + ($0 * 11 + i * 17) % 250 } }
        try await checkCluster(model: model, prompts: prompts, layers: ["0-0", "1-1", "2-2"], maxTokens: 24,
                               coordinatorArgs: ["--lanes", "\(lanes)"])
    }

    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    func realModelAcrossThreeWorkers() async throws {
        let model = try ClusterTestSupport.requireRealModel()
        let file = try GGUFFile(path: model)
        let tokenizer = try Tokenizer(gguf: file)
        // One prompt longer than a shared step allows (> 64 tokens): it is prefilled in a step of its own.
        let long = String(repeating: "The history of the city goes back many centuries, to a time of kings. ", count: 8)
        let texts = ["The capital of France is", long + "In summary,", "def fibonacci(n):", "The three primary colors are",
                     "Water boils at", "My favourite food is", "In 1969, astronauts", "The quick brown fox"]
        try await checkCluster(model: model, prompts: texts.map { tokenizer.encode($0) }, layers: ["0-9", "10-19", "20-29"], maxTokens: 24)
    }

    /// A tiny qwen2 model (biases, RoPE over halves) across three workers.
    @Test func tinyQwen2AcrossThreeWorkers() async throws {
        var spec = TinyModelSpec()
        spec.architecture = "qwen2"
        spec.tiedOutput = false
        let model = try TestPaths.tempDir() + "/tiny-qwen2.gguf"
        try spec.write(to: model)
        let prompts = (0..<4).map { i in (0..<(4 + 3 * i)).map { 5 + ($0 * 11 + i * 17) % 250 } }
        try await checkCluster(model: model, prompts: prompts, layers: ["0-0", "1-1", "2-2"], maxTokens: 16)
    }

    /// Qwen2.5-Coder-0.5B (qwen2, mixed Q5_0/Q8_0/Q4_K/Q6_K tensors read in place) across three workers.
    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    func qwenAcrossThreeWorkers() async throws {
        let model = try ClusterTestSupport.requireQwenModel()
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: model))
        let texts = ["def fibonacci(n):", "<|im_start|>user\nWrite a haiku about rust.<|im_end|>\n<|im_start|>assistant\n",
                     "The year 2024 had", "// A C function that sums an array\nint sum("]
        try await checkCluster(model: model, prompts: texts.map { tokenizer.encode($0) }, layers: ["0-7", "8-15", "16-23"], maxTokens: 16)
    }

    /// The same under --activations q8, with a prompt past the decode kernels' row limit (its prefill runs the int8
    /// kernels in chunks): the cluster equals `radial run --activations q8` token for token.
    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    func qwenInQ8AcrossThreeWorkers() async throws {
        let model = try ClusterTestSupport.requireQwenModel()
        let tokenizer = try Tokenizer(gguf: try GGUFFile(path: model))
        let long = String(repeating: "def add(a, b):\n    return a + b\n\n", count: 8) + "def mul(a, b):"
        let prompts = [tokenizer.encode(long), tokenizer.encode("The year 2024 had")]
        #expect(prompts[0].count > 64)
        var expected: [[Int]] = []
        for p in prompts {
            let out = try TestPaths.run(TestPaths.binDir + "/radial", [
                "run", "--model", model, "--greedy", "--max-tokens", "12", "--json", "--quiet", "--threads", "1",
                "--activations", "q8", "--prompt-ids", p.map(String.init).joined(separator: ","),
            ])
            let last = try #require(out.split(separator: "\n").last)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
            expected.append(try #require(json["generated_ids"] as? [Int]))
        }
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-7", "8-15", "16-23"], workerArgs: ["--activations", "q8"],
                                       coordinatorArgs: ["--activations", "q8"])
        defer { cluster.stop() }
        for (i, p) in prompts.enumerated() {
            let got = try await cluster.generate(GenerateRequest(input: .ids(p), maxTokens: 12))
            #expect(got.ids == expected[i], "prompt \(i)")
        }
    }

    /// Each worker holds about its layers' bytes: RSS ≤ weights × 1.1 + K/V in use + 64 MiB (no fp32 copies), and
    /// Status reports the weights, the K/V and the coordinator's own memory.
    @Test(.enabled(if: ClusterTestSupport.realModelWanted, "RADIAL_SKIP_REAL_MODEL=1"))
    func qwenWorkersHoldTheirLayersOnce() async throws {
        let model = try ClusterTestSupport.requireQwenModel()
        let cluster = try await LocalCluster.launch(model: model, layers: ["0-7", "8-15", "16-23"])
        defer { cluster.stop() }
        _ = try await cluster.generate(GenerateRequest(input: .ids([750, 75698, 1445, 982]), maxTokens: 8))
        let s = try await cluster.status()
        let file = try GGUFFile(path: model)
        for w in s.workers {
            let i = try #require(w.info)
            let tensors = file.tensors.filter { t in i.layers.indices.contains { t.name.hasPrefix("blk.\($0).") } }
            let fileBytes = tensors.reduce(0) { $0 + $1.byteCount }
            #expect(i.weightBytes > 0 && Double(i.weightBytes) <= Double(fileBytes) * 1.01, "\(w.address): weights \(i.weightBytes) vs file \(fileBytes)")
            let bound = Double(fileBytes) * 1.1 + Double(i.kvUsedBytes) + 64 * 1_048_576
            #expect(Double(i.rssBytes) <= bound, "\(w.address) layers \(i.layers): RSS \(i.rssBytes >> 20) MiB > \(Int(bound) >> 20) MiB")
        }
        #expect(s.weightBytes > 0 && s.rssBytes > 0)
    }
}
