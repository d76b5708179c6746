import RadialProtocol

/// `radial generate --show-depth`: what routing did to each generated token, as a table, and what it saved.
struct DepthReport {
    let generation: StreamedGeneration
    /// From the coordinator's Status: the model's depth and the pipeline's stages (one hop each when dense).
    let modelLayers: Int
    let stages: Int

    init(_ generation: StreamedGeneration, status: StatusReply) {
        self.generation = generation
        modelLayers = status.modelLayers
        stages = Set(status.workers.compactMap { $0.info.map { "\($0.layers)" } }).count
    }

    var text: String {
        let traces = generation.traces
        guard !traces.isEmpty else { return "depth: no tokens generated" }
        let denseHops = stages
        var lines = ["", "depth per generated token (layers run of \(modelLayers); hops: workers visited, of \(stages)):"]
        lines.append(pad("token", 16) + pad("layers", 8) + pad("hops", 6) + "skipped layers")
        for (trace, piece) in zip(traces, generation.pieces) {
            let run = Set(trace.layersRun)
            let skipped = (0..<modelLayers).filter { !run.contains($0) }
            lines.append(pad(show(piece), 16) + pad("\(trace.layersRun.count)", 8) + pad("\(trace.hops)", 6) + ranges(skipped))
        }
        let layersRun = traces.reduce(0) { $0 + $1.layersRun.count }, hops = traces.reduce(0) { $0 + $1.hops }
        let skipRate = 1 - Double(layersRun) / Double(max(modelLayers * traces.count, 1))
        lines.append(String(format: "%d tokens: %.1f%% of layers skipped, %.2f hops per token of %d (%.2f saved)", traces.count,
                            skipRate * 100, Double(hops) / Double(traces.count), denseHops,
                            Double(denseHops) - Double(hops) / Double(traces.count)))
        return lines.joined(separator: "\n")
    }

    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }

    /// The token's text, quoted, with control characters escaped and long pieces cut.
    private func show(_ piece: String) -> String {
        let escaped = piece.unicodeScalars.map { $0.value < 32 ? $0.escaped(asASCII: true) : String($0) }.joined()
        return "\"" + (escaped.count > 12 ? String(escaped.prefix(11)) + "…" : escaped) + "\""
    }

    /// 3,4,5,9 -> "3-5, 9"; empty -> "-".
    private func ranges(_ layers: [Int]) -> String {
        guard var start = layers.first else { return "-" }
        var out: [String] = [], last = start
        for l in layers.dropFirst() {
            if l == last + 1 { last = l; continue }
            out.append(start == last ? "\(start)" : "\(start)-\(last)")
            (start, last) = (l, l)
        }
        out.append(start == last ? "\(start)" : "\(start)-\(last)")
        return out.joined(separator: ", ")
    }
}
