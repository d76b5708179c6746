import COpenBLAS

/// The only place that calls OpenBLAS. Matrices are row-major fp32.
public enum BLAS {
    /// Threads OpenBLAS uses for one call (it keeps its own pool).
    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// y[m] = W[n×k] · x[k] for each of the m rows of X: Y(m×n) = X(m×k) · Wᵀ, where W is stored as n rows of k.
    /// One row uses sgemv (4x faster than sgemm at M=1 here); more rows use sgemm.
    @inline(__always)
    public static func linear(_ x: UnsafePointer<Float>, rows m: Int, inputs k: Int,
                              weight w: UnsafePointer<Float>, outputs n: Int,
                              into y: UnsafeMutablePointer<Float>, ldx: Int? = nil, ldy: Int? = nil, ldw: Int? = nil,
                              accumulate: Bool = false) {
        let beta: Float = accumulate ? 1 : 0
        let lw = Int32(ldw ?? k)
        if m == 1 {
            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(k), 1, w, lw, x, 1, beta, y, 1)
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k), 1,
                        x, Int32(ldx ?? k), w, lw, beta, y, Int32(ldy ?? n))
        }
    }

    /// C(m×n) = alpha · A(m×k) · B(k×n) (+ beta·C), general strides; `transB` reads B as n rows of k.
    @inline(__always)
    public static func gemm(m: Int, n: Int, k: Int, alpha: Float = 1,
                            a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int, transB: Bool,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k),
                    alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
}

extension BLAS {
    /// C(m×n) = Aᵀ · B with A stored as k rows of m and B as k rows of n (a weight gradient from a batch).
    public static func gemmTN(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                              c: UnsafeMutablePointer<Float>, beta: Float = 0) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k), 1,
                    a, Int32(m), b, Int32(n), beta, c, Int32(n))
    }
}

extension BLAS {
    /// Solves A·X = B in place for symmetric positive definite A (n × n) and `rhs` right-hand sides, column-major
    /// (B: `rhs` columns of n), by Cholesky factorisation (LAPACK's dposv). Returns false when A is not positive
    /// definite.
    public static func solveSymmetricPositiveDefinite(_ a: inout [Double], _ b: inout [Double], n: Int, rhs: Int) -> Bool {
        precondition(a.count == n * n && b.count == n * rhs)
        var info: Int32 = 0
        var uplo = Int8(UInt8(ascii: "L")), order = Int32(n), columns = Int32(rhs), lda = Int32(n), ldb = Int32(n)
        dposv_(&uplo, &order, &columns, &a, &lda, &b, &ldb, &info)
        return info == 0
    }
}
