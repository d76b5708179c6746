import Foundation
import RadialModel

/// A trained router as it is saved: the network, the model it was distilled from, and what training measured.
///
/// On disk: "RDRT", format version (u32 LE), header length (u32 LE), a JSON header, then the network's floats
/// (fp32 LE) in the order w1, w1Layer, b1, w2, b2, then each run map's coefficients (`Header.runMaps`, in order).
/// JSON keeps the metadata readable (`head -c 2000 router.rdrt`) and extensible; the weights stay binary.
public struct Router: Sendable {
    public var network: RouterNetwork
    public var header: Header
    /// Per entry of `header.runMaps`, its fitted coefficients ((hidden + 1) × hidden, input-major: `RunMap`).
    public private(set) var mapCoefficients: [[Float]] = []
    /// The same, ready to apply.
    public private(set) var maps: [RunMap] = []

    public struct Header: Codable, Sendable {
        public var modelFingerprint: String
        public var modelLayers: Int
        public var hiddenSize: Int
        public var width: Int
        /// Layers decided together (1: each layer on its own). Absent in files of per-layer routers.
        public var blockSize: Int?
        /// The first layer of each decision unit, when the units are hand-named runs (`train-router --runs`);
        /// absent for single layers and uniform blocks.
        public var unitStarts: [Int]?
        /// Per decision unit (layer or block), the predicted contribution at quantiles 0, 1, ..., 100 % over the training tokens: turns a
        /// target skip rate into a threshold.
        public var calibration: [[Float]]
        /// Per layer, the median measured contribution on the training text (static pruning drops the lowest).
        public var profileMedians: [Float]
        public var training: TrainingSummary
        /// What the router predicts (absent in older files: the residual ratio).
        public var labels: RouterLabels?
        /// Under cost labels, the scale of `TrainingSet.costScale` (nats).
        public var costScale: Float?
        /// Per layer, the mean measured skip cost on the dense training text (nats; absent under ratio labels):
        /// static pruning at its best drops the lowest. Layers not measured (always run) hold `unmeasuredCost`.
        public var skipCostMeans: [Float]?
        public static let unmeasuredCost: Float = 1e9
        /// Perplexity against threshold on held-out text, measured after training: turns a quality budget
        /// (`--max-quality-loss`) into a threshold. Absent in older files.
        public var qualityCurve: QualityCurve?
        /// Runs that a skipping token leaves through a fitted map (`train-router --bypass`); absent: none.
        public var runMaps: [RunMapEntry]?

        public var block: Int { blockSize ?? 1 }
        /// How the layers group into decision units.
        public var layout: UnitLayout {
            unitStarts.flatMap { try? UnitLayout(starts: $0, modelLayers: modelLayers) } ?? .blocks(block, layers: modelLayers)
        }
        /// Decision units: layers, blocks of `block` layers, or runs.
        public var units: Int { layout.count }

        public init(modelFingerprint: String, modelLayers: Int, hiddenSize: Int, width: Int, calibration: [[Float]],
                    profileMedians: [Float], training: TrainingSummary, blockSize: Int = 1) {
            self.blockSize = blockSize
            self.modelFingerprint = modelFingerprint
            self.modelLayers = modelLayers
            self.hiddenSize = hiddenSize
            self.width = width
            self.calibration = calibration
            self.profileMedians = profileMedians
            self.training = training
        }
    }

    /// A run map as the header lists it: its layers (first and last, inclusive) and the rms-norm epsilon of its input.
    public struct RunMapEntry: Codable, Sendable, Equatable {
        public var first: Int
        public var last: Int
        public var eps: Float
        public var layers: LayerRange { LayerRange(first, last + 1) }
    }

    /// Maps come only with their coefficients (`addMap`): any the header lists are dropped here.
    public init(network: RouterNetwork, header: Header) {
        self.network = network
        self.header = header
        self.header.runMaps = nil
    }

    /// Adds a fitted map for the run `layers` (a decision unit of the router's layout).
    public mutating func addMap(layers: LayerRange, eps: Float, coefficients: [Float]) throws {
        guard header.layout.starts.contains(layers.lowerBound), header.layout.layers(of: header.layout.unit(of: layers.lowerBound)) == layers.lowerBound..<layers.upperBound else {
            throw RouterError.badPolicy("a run map must cover one decision unit exactly (\(layers) is not one of \(header.layout))")
        }
        maps.append(try RunMap(layers: layers, dim: header.hiddenSize, eps: eps, coefficients: coefficients))
        mapCoefficients.append(coefficients)
        header.runMaps = (header.runMaps ?? []) + [RunMapEntry(first: layers.lowerBound, last: layers.upperBound - 1, eps: eps)]
    }

    /// A stable identity for handshakes: SHA-256 over the header's model identity and every weight.
    public var fingerprint: String {
        var bytes = Data(header.modelFingerprint.utf8)
        if let starts = header.unitStarts { bytes.append(contentsOf: Array("units \(starts)".utf8)) }
        if let entries = header.runMaps { bytes.append(contentsOf: Array("maps \(entries.map { [$0.first, $0.last] }) \(entries.map(\.eps))".utf8)) }
        for a in [network.w1, network.w1Layer, network.b1, network.w2, [network.b2]] + mapCoefficients {
            a.withUnsafeBytes { bytes.append(contentsOf: $0) }
        }
        return SHA256Digest.hex(bytes)
    }

    static let magic: [UInt8] = Array("RDRT".utf8)
    static let formatVersion: UInt32 = 1

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try encoder.encode(header)
        var data = Data(Self.magic)
        appendLE(&data, Self.formatVersion)
        appendLE(&data, UInt32(json.count))
        data.append(json)
        for a in [network.w1, network.w1Layer, network.b1, network.w2, [network.b2]] + mapCoefficients {
            a.withUnsafeBytes { data.append(contentsOf: $0) }
        }
        do { try data.write(to: URL(fileURLWithPath: path), options: .atomic) } catch {
            throw RouterError.io(path, error.localizedDescription)
        }
    }

    public init(path: String) throws {
        guard let data = FileManager.default.contents(atPath: path) else { throw RouterError.io(path, "cannot read the file") }
        try self.init(data: data, path: path)
    }

    public init(data: Data, path: String = "router") throws {
        let bytes = [UInt8](data)
        func bad(_ why: String) -> RouterError { .malformed(path, why) }
        guard bytes.count >= 12, Array(bytes[0..<4]) == Self.magic else { throw bad("not a Radial router file (bad magic)") }
        let version = readLE(bytes, 4), headerLength = Int(readLE(bytes, 8))
        guard version == Self.formatVersion else { throw bad("format version \(version); this build reads \(Self.formatVersion)") }
        guard headerLength <= bytes.count - 12 else { throw bad("truncated header (\(headerLength) bytes declared, \(bytes.count - 12) present)") }
        let header: Header
        do { header = try JSONDecoder().decode(Header.self, from: Data(bytes[12..<(12 + headerLength)])) } catch {
            throw bad("unreadable header: \(error)")
        }
        let (d, L, w) = (header.hiddenSize, header.modelLayers, header.width)
        guard (1...65536).contains(d), (1...4096).contains(L), (1...65536).contains(w), (1...L).contains(header.block) else {
            throw bad("absurd sizes (hidden \(d), layers \(L), width \(w), block \(header.block))")
        }
        if let starts = header.unitStarts, (try? UnitLayout(starts: starts, modelLayers: L)) == nil {
            throw bad("decision units \(starts) do not tile \(L) layers")
        }
        let U = header.units
        guard header.calibration.count == U, header.calibration.allSatisfy({ $0.count == 101 }), header.profileMedians.count == L else {
            throw bad("calibration tables do not match \(U) decision units of \(L) layers")
        }
        let mapEntries = header.runMaps ?? []
        let counts = [w * (d + 1), w * U, w, w, 1] + mapEntries.map { _ in (d + 1) * d }
        let need = counts.reduce(0, +) * 4, start = 12 + headerLength
        guard bytes.count - start == need else { throw bad("weights are \(bytes.count - start) bytes, expected \(need)") }
        var arrays: [[Float]] = [], offset = start
        for c in counts {
            arrays.append(bytes[offset..<(offset + 4 * c)].withUnsafeBytes { raw in
                (0..<c).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self).littleEndian) }
            })
            offset += 4 * c
        }
        guard arrays.allSatisfy({ $0.allSatisfy(\.isFinite) }) else { throw bad("weights hold NaN or infinity") }
        var net = RouterNetwork(dim: d, layers: U, width: w)
        (net.w1, net.w1Layer, net.b1, net.w2, net.b2) = (arrays[0], arrays[1], arrays[2], arrays[3], arrays[4][0])
        self.init(network: net, header: header)
        for (k, entry) in mapEntries.enumerated() {
            guard entry.first <= entry.last, entry.last < L, entry.eps.isFinite, entry.eps > 0 else {
                throw bad("run map \(entry.first)-\(entry.last) (eps \(entry.eps)) is not a run of the model's \(L) layers")
            }
            do { try addMap(layers: entry.layers, eps: entry.eps, coefficients: arrays[5 + k]) } catch { throw bad("\(error)") }
        }
    }

    /// Refuses a router distilled from another model.
    public func check(modelFingerprint: String, layers: Int, hiddenSize: Int) throws {
        guard header.modelFingerprint == modelFingerprint else {
            throw RouterError.wrongModel(router: header.modelFingerprint, model: modelFingerprint)
        }
        guard header.modelLayers == layers, header.hiddenSize == hiddenSize else {
            throw RouterError.wrongModel(router: "\(header.modelLayers) layers × \(header.hiddenSize)", model: "\(layers) layers × \(hiddenSize)")
        }
    }
}

public enum RouterError: Error, CustomStringConvertible, Equatable {
    case io(String, String)
    case malformed(String, String)
    case wrongModel(router: String, model: String)
    case badPolicy(String)

    public var description: String {
        switch self {
        case .io(let p, let why): "router file \(p): \(why)"
        case .malformed(let p, let why): "router file \(p) is malformed: \(why)"
        case .wrongModel(let r, let m): "the router was distilled from another model (router: \(r), this model: \(m))"
        case .badPolicy(let why): "routing policy: \(why)"
        }
    }
}

private func appendLE(_ d: inout Data, _ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
private func readLE(_ b: [UInt8], _ at: Int) -> UInt32 {
    UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
}
