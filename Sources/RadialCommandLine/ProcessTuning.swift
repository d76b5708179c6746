#if canImport(Glibc)
import Glibc
#endif

/// Process-wide settings every Radial executable applies before anything else.
public enum ProcessTuning {
    /// glibc serves each allocation of 128 KiB or more with a fresh mmap and hands it back with munmap when freed,
    /// so every large message buffer or activation array faults its pages in again, each zeroed by the kernel:
    /// a 256 KiB Echo round trip cost ~2.9x raw C core, ~1.3x with this (bench/rpc_bench.sh). Up to 32 MiB,
    /// allocations now come from the heap, and freed memory stays for reuse (trimmed past 256 MiB of slack).
    public static func apply() {
        #if canImport(Glibc)
        // mallopt is declared in <malloc.h>, which the Glibc module does not export; the values are its
        // M_TRIM_THRESHOLD (-1) and M_MMAP_THRESHOLD (-3).
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(nil, "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        _ = mallopt(-3, 32 << 20)
        _ = mallopt(-1, 256 << 20)
        #endif
    }
}
