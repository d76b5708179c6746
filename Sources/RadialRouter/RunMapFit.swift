import RadialModel

/// Fits a `RunMap`: ridge regression of the change a run of layers makes to the hidden state (leaving − entering)
/// on the entering state scaled to unit RMS, plus a constant. The normal equations are formed in fp32 by BLAS and
/// solved in fp64 by a Cholesky factorisation (`BLAS.solveSymmetricPositiveDefinite`).
///
/// The ridge term is `ridge` times the mean diagonal of the Gram matrix. On Qwen2.5-1.5B, 0.1 on the normalised
/// state was the best of {0.01, 0.1, 1} × {raw, normalised} for both runs tried (bench/bypass_experiment.py).
public enum RunMapFit {
    public static let defaultRidge = 0.1

    /// `entering` and `leaving`: `tokens` rows of `dim` floats each. Returns (dim + 1) × dim coefficients,
    /// input-major (`RunMap`'s layout).
    public static func fit(entering: [Float], leaving: [Float], tokens n: Int, dim: Int, eps: Float,
                           ridge: Double = defaultRidge) throws -> [Float] {
        precondition(entering.count == n * dim && leaving.count == n * dim)
        let f = dim + 1
        guard n > 0 else { throw RouterError.badPolicy("a run map needs training tokens") }
        // Features (n × f): the normalised state and a 1; targets (n × dim): the run's change.
        var features = [Float](repeating: 0, count: n * f), change = [Float](repeating: 0, count: n * dim)
        entering.withUnsafeBufferPointer { x in
            features.withUnsafeMutableBufferPointer { out in
                for t in 0..<n { Ops.scaleToUnitRMS(x.baseAddress! + t * dim, eps: eps, count: dim, into: out.baseAddress! + t * f) }
            }
        }
        for t in 0..<n {
            for i in 0..<dim { change[t * dim + i] = leaving[t * dim + i] - entering[t * dim + i] }
            features[t * f + dim] = 1
        }
        var gram = [Float](repeating: 0, count: f * f), cross = [Float](repeating: 0, count: f * dim)
        features.withUnsafeBufferPointer { F in
            gram.withUnsafeMutableBufferPointer { BLAS.gemmTN(m: f, n: f, k: n, a: F.baseAddress!, b: F.baseAddress!, c: $0.baseAddress!) }
            change.withUnsafeBufferPointer { D in
                cross.withUnsafeMutableBufferPointer { BLAS.gemmTN(m: f, n: dim, k: n, a: F.baseAddress!, b: D.baseAddress!, c: $0.baseAddress!) }
            }
        }
        // (G + λI) B = R. G is symmetric, so its row-major storage is its column-major one; R is transposed into
        // dposv's column-major right-hand sides (one column per output).
        var a = gram.map(Double.init)
        let trace = (0..<f).reduce(0.0) { $0 + a[$1 * f + $1] }
        let lambda = ridge * trace / Double(f)
        for i in 0..<f { a[i * f + i] += lambda }
        var b = [Double](repeating: 0, count: f * dim)
        for i in 0..<f { for o in 0..<dim { b[o * f + i] = Double(cross[i * dim + o]) } }
        guard BLAS.solveSymmetricPositiveDefinite(&a, &b, n: f, rhs: dim) else {
            throw RouterError.badPolicy("the run map's normal equations are not positive definite")
        }
        var coefficients = [Float](repeating: 0, count: f * dim)
        for i in 0..<f { for o in 0..<dim { coefficients[i * dim + o] = Float(b[o * f + i]) } }
        return coefficients
    }
}
