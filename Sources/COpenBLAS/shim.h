// OpenBLAS's cblas.h lives in openblas-pthread/ on Debian; pkg-config "openblas" puts it on the include path.
#include <cblas.h>
