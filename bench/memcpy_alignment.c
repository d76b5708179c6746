// glibc's memcpy at 256 KiB (or argv[1] bytes) for destinations 0..4092 bytes past the source modulo 4 KiB: on
// AMD Zen with glibc < 2.39, `rep movsb` (used from ~2 KiB up) is ~18x slower when that distance is 1-31 bytes
// (glibc bug 30994), which is why every Radial executable sets glibc.cpu.x86_rep_movsb_threshold (ProcessTuning).
//   cc -O2 -o memcpy_alignment bench/memcpy_alignment.c && ./memcpy_alignment
//   GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=1099511627776 ./memcpy_alignment     (what Radial runs with)
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 262144;
  char *src = aligned_alloc(4096, n + 8192), *dst = aligned_alloc(4096, n + 8192);
  memset(src, 1, n + 8192);
  memset(dst, 2, n + 8192);
  const int distances[] = {0, 1, 4, 8, 16, 24, 31, 32, 48, 64, 128, 1024, 2048, 4092};
  for (size_t k = 0; k < sizeof distances / sizeof *distances; k++) {
    double best = 1e9;
    for (int round = 0; round < 3; round++) {  // best of 3: this VM is noisy
      double t = now();
      for (int r = 0; r < 300; r++) {
        memcpy(dst + distances[k], src, n);
        __asm__ volatile("" : : "r"(dst) : "memory");  // keep every copy
      }
      double dt = (now() - t) / 300;
      if (dt < best) best = dt;
    }
    printf("%zu bytes, destination %4d bytes past the source (mod 4096): %7.1f us\n", n, distances[k], best * 1e6);
  }
  return 0;
}
