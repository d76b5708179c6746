/// An affine stand-in for a run of layers that a token skips. Instead of keeping the state it entered with, the
/// token leaves the run with x + B·[x / rms(x); 1]: a map fitted (`train-router --bypass`, ridge regression) from
/// the state entering the run to the change the run makes. On Qwen2.5-1.5B it halves what skipping layers 14-16
/// costs (docs/ROUTING.md), for ~1.7% of the run's multiply-adds.
///
/// The matrix is kept as Q8_0 and multiplied by the decode kernels, so a row's result does not depend on its batch
/// and a coordinator applying the map for a token that skips a worker gets the bits the worker would have.
public final class RunMap: Sendable {
    /// The layers it stands in for.
    public let layers: LayerRange
    public let dim: Int
    /// The rms-norm epsilon of the normalised input (the model's).
    public let eps: Float
    /// dim rows (outputs) × dim columns (normalised input).
    let weights: QuantizedMatrix
    let bias: [Float]

    /// `coefficients`: (dim + 1) rows of dim, input-major as fitted (row i: input feature i's weights for every
    /// output; the last row: the constant term).
    public init(layers: LayerRange, dim: Int, eps: Float, coefficients: [Float]) throws {
        guard coefficients.count == (dim + 1) * dim else {
            throw ModelError.badBatch("a run map for \(dim) dims needs \((dim + 1) * dim) coefficients, got \(coefficients.count)")
        }
        guard dim % 32 == 0 else { throw ModelError.badBatch("run maps need a hidden size that is a multiple of 32 (got \(dim))") }
        self.layers = layers
        self.dim = dim
        self.eps = eps
        // The kernels read weights output-major: transpose the fitted input-major rows.
        var outputMajor = [Float](repeating: 0, count: dim * dim)
        for i in 0..<dim { for o in 0..<dim { outputMajor[o * dim + i] = coefficients[i * dim + o] } }
        weights = outputMajor.withUnsafeBufferPointer { QuantizedMatrix(quantizing: $0.baseAddress!, rows: dim, columns: dim) }
        bias = Array(coefficients[(dim * dim)...])
    }

    /// Bytes the map reads per call.
    public var bytes: Int { weights.bytes + 4 * dim }

    /// Advances `rows` contiguous rows of `x` past the run, in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, rows n: Int, activations: QuantizedMatrix.Activations) {
        guard n > 0 else { return }
        let normed = UnsafeMutablePointer<Float>.allocate(capacity: n * dim)
        defer { normed.deallocate() }
        for r in 0..<n { Ops.scaleToUnitRMS(x + r * dim, eps: eps, count: dim, into: normed + r * dim) }
        weights.multiply(normed, inputs: n, into: x, accumulate: true, activations: activations)
        bias.withUnsafeBufferPointer { b in for r in 0..<n { Ops.add(x + r * dim, b.baseAddress!, count: dim) } }
    }

    /// The map among `maps` that ends at `layer`, if any.
    public static func ending(at layer: Int, in maps: [RunMap]) -> RunMap? {
        maps.first { $0.layers.upperBound - 1 == layer }
    }

    /// Applies the map ending at `layer` (if any) to the rows of `x` in `skipped` that ran none of its layers
    /// (`ran`): gathered, advanced together, scattered back.
    public static func bridge(after layer: Int, maps: [RunMap], x: UnsafeMutablePointer<Float>, rows skipped: [Int], ran: [LayerSet],
                       dim: Int, activations: QuantizedMatrix.Activations) {
        guard let map = ending(at: layer, in: maps) else { return }
        let rows = skipped.filter { i in !map.layers.indices.contains { ran[i].contains($0) } }
        guard !rows.isEmpty else { return }
        let gathered = UnsafeMutablePointer<Float>.allocate(capacity: rows.count * dim)
        defer { gathered.deallocate() }
        for (j, i) in rows.enumerated() { (gathered + j * dim).update(from: x + i * dim, count: dim) }
        map.apply(gathered, rows: rows.count, activations: activations)
        for (j, i) in rows.enumerated() { (x + i * dim).update(from: gathered + j * dim, count: dim) }
    }
}
