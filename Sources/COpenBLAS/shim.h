// OpenBLAS's cblas.h lives in openblas-pthread/ on Debian; pkg-config "openblas" puts it on the include path.
#include <cblas.h>
// LAPACK's Cholesky solve (OpenBLAS exports it; Debian ships no lapack.h beside cblas.h): A·X = B for symmetric
// positive definite A, column-major.
void dposv_(const char *uplo, const int *n, const int *nrhs, double *a, const int *lda, double *b, const int *ldb,
            int *info);
