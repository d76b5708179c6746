/// The last few thousand latencies of something (worker batches, round trips), for p50/p99 in status replies
/// without unbounded memory.
public struct LatencyWindow: Sendable {
    private var samples: [Double] = []
    private var next = 0
    private let size: Int

    public init(size: Int = 2048) { self.size = size }

    public mutating func add(_ seconds: Double) {
        if samples.count < size { samples.append(seconds) } else { samples[next] = seconds }
        next = (next + 1) % size
    }

    /// The q-quantile (0...1) of the window; 0 when empty.
    public func quantile(_ q: Double) -> Double {
        guard !samples.isEmpty else { return 0 }
        let sorted = samples.sorted()
        return sorted[min(sorted.count - 1, Int((Double(sorted.count - 1) * q).rounded()))]
    }
}
