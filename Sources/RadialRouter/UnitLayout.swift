import RadialModel

/// How a router groups the model's layers into decision units. A unit runs or skips as a whole, decided from the
/// state entering its first layer: single layers; uniform blocks (a worker's range, so a token skips a hop); or
/// contiguous runs named by hand (the cheap middle layers a model can lose together), every other layer alone.
public struct UnitLayout: Sendable, Equatable, CustomStringConvertible {
    public let modelLayers: Int
    /// First layer of each unit, ascending, from 0.
    public let starts: [Int]
    /// Per layer, its unit.
    private let unitOfLayer: [Int]

    public init(starts: [Int], modelLayers: Int) throws {
        guard modelLayers > 0, starts.first == 0, zip(starts, starts.dropFirst()).allSatisfy({ $0 < $1 }),
              starts.last! < modelLayers else {
            throw RouterError.badPolicy("decision units must start at 0 and at increasing layers below \(modelLayers) (got \(starts))")
        }
        self.modelLayers = modelLayers
        self.starts = starts
        var map = [Int](repeating: 0, count: modelLayers)
        for (u, s) in starts.enumerated() { for l in s..<modelLayers { map[l] = u } }
        unitOfLayer = map
    }

    /// Blocks of `size` consecutive layers (the last may be shorter); 1: every layer on its own.
    public static func blocks(_ size: Int, layers: Int) -> UnitLayout {
        try! UnitLayout(starts: Array(stride(from: 0, to: layers, by: max(size, 1))), modelLayers: layers)
    }

    /// `runs` each decided as one unit, every other layer alone.
    public static func runs(_ runs: [LayerRange], layers: Int) throws -> UnitLayout {
        let sorted = runs.sorted { $0.lowerBound < $1.lowerBound }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.upperBound > b.lowerBound {
            throw RouterError.badPolicy("runs \(a) and \(b) overlap")
        }
        if let r = sorted.first(where: { $0.count < 1 || $0.upperBound > layers }) {
            throw RouterError.badPolicy("run \(r) is not inside the model's \(layers) layers")
        }
        var starts: [Int] = [], l = 0
        for r in sorted {
            while l < r.lowerBound { starts.append(l); l += 1 }
            starts.append(r.lowerBound)
            l = r.upperBound
        }
        while l < layers { starts.append(l); l += 1 }
        return try UnitLayout(starts: starts, modelLayers: layers)
    }

    public var count: Int { starts.count }

    @inline(__always) public func unit(of layer: Int) -> Int { unitOfLayer[layer] }

    @inline(__always) public func layers(of unit: Int) -> Range<Int> {
        starts[unit]..<(unit + 1 < starts.count ? starts[unit + 1] : modelLayers)
    }

    /// The block size when every unit but the last has it (1 for single layers); nil for hand-named runs.
    public var uniformBlock: Int? {
        let size = layers(of: 0).count
        return (0..<count - 1).allSatisfy({ layers(of: $0).count == size }) && layers(of: count - 1).count <= size ? size : nil
    }

    public var description: String {
        if let b = uniformBlock { return b == 1 ? "single layers" : "blocks of \(b) layers" }
        return "runs " + (0..<count).map(layers(of:)).filter { $0.count > 1 }.map { "\($0.lowerBound)-\($0.upperBound - 1)" }.joined(separator: ",")
            + ", other layers alone"
    }
}
