#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The small elementwise kernels of a Llama block. Hot, but O(dim) per token: BLAS does the O(dim²) work.
public enum Ops {
    /// out = x / sqrt(mean(x²) + eps) * weight, one row of `n`.
    @inline(__always)
    public static func rmsNorm(_ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float,
                               count n: Int, into out: UnsafeMutablePointer<Float>) {
        var ss: Float = 0
        for i in 0..<n { ss += x[i] * x[i] }
        let scale = 1 / (ss / Float(n) + eps).squareRoot()
        for i in 0..<n { out[i] = x[i] * scale * weight[i] }
    }

    /// out = x / rms(x) with rms = sqrt(mean(x²) + eps), no weight; returns rms. The router's features and the
    /// input of run maps.
    @inline(__always) @discardableResult
    public static func scaleToUnitRMS(_ x: UnsafePointer<Float>, eps: Float, count n: Int, into out: UnsafeMutablePointer<Float>) -> Float {
        var ss: Float = 0
        for i in 0..<n { ss += x[i] * x[i] }
        let rms = (ss / Float(n) + eps).squareRoot(), s = 1 / rms
        for i in 0..<n { out[i] = x[i] * s }
        return rms
    }

    /// Softmax in place over `n` values; entries equal to -infinity get probability 0.
    @inline(__always)
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        var mx = -Float.infinity
        for i in 0..<n where x[i] > mx { mx = x[i] }
        var sum: Float = 0
        for i in 0..<n {
            let e = expf(x[i] - mx)
            x[i] = e
            sum += e
        }
        let inv = 1 / sum
        for i in 0..<n { x[i] *= inv }
    }

    /// SwiGLU: out[i] = silu(gate[i]) * up[i].
    @inline(__always)
    public static func swiglu(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, count n: Int,
                              into out: UnsafeMutablePointer<Float>) {
        for i in 0..<n {
            let g = gate[i]
            out[i] = g / (1 + expf(-g)) * up[i]
        }
    }

    /// x += y
    @inline(__always)
    public static func add(_ x: UnsafeMutablePointer<Float>, _ y: UnsafePointer<Float>, count n: Int) {
        for i in 0..<n { x[i] += y[i] }
    }
}

/// Rotary position embedding: pair i of each head rotates by pos · base^(-2i/ropeDim). GGUF's `llama` pairs
/// ADJACENT elements (x[2i], x[2i+1]) (its converter permuted the Q/K rows so this equals the HF layout); `qwen2`
/// pairs the halves (x[i], x[i + ropeDim/2]), llama.cpp's NEOX type.
public struct Rope: Sendable {
    public let headDim: Int
    public let ropeDim: Int
    public let style: RopeStyle
    let invFreq: [Double]

    public init(headDim: Int, ropeDim: Int, base: Double, style: RopeStyle = .adjacentPairs) {
        self.headDim = headDim
        self.ropeDim = ropeDim
        self.style = style
        invFreq = (0..<ropeDim / 2).map { pow(base, -2 * Double($0) / Double(ropeDim)) }
    }

    /// Rotates `heads` consecutive heads of `headDim` values at `position`.
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        let half = ropeDim / 2
        // cos/sin once per pair index, shared by all heads of this token.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * half) { cs in
            for i in 0..<half {
                let a = Double(position) * invFreq[i]
                cs[2 * i] = Float(cos(a))
                cs[2 * i + 1] = Float(sin(a))
            }
            // Element i of a pair and its partner: adjacent (2i, 2i+1), or halves (i, i + half).
            let (stride, step) = style == .adjacentPairs ? (2, 1) : (1, half)
            for h in 0..<heads {
                let p = x + h * headDim
                for i in 0..<half {
                    let c = cs[2 * i], s = cs[2 * i + 1]
                    let j = stride * i
                    let a = p[j], b = p[j + step]
                    p[j] = a * c - b * s
                    p[j + step] = a * s + b * c
                }
            }
        }
    }
}
