#if canImport(Glibc)
import Glibc
#endif

/// Process-wide settings every Radial executable applies before anything else.
public enum ProcessTuning {
    public static func apply() {
        #if canImport(Glibc)
        preferVectorCopies()
        keepLargeAllocationsOnTheHeap()
        #endif
    }

    #if canImport(Glibc)
    /// glibc serves each allocation of 128 KiB or more with a fresh mmap and hands it back with munmap when freed,
    /// so every large message buffer or activation array faults its pages in again, each zeroed by the kernel:
    /// a 256 KiB Echo round trip cost ~2.9x raw C core, ~1.3x with this (bench/rpc_bench.sh). Up to 32 MiB,
    /// allocations now come from the heap, and freed memory stays for reuse (trimmed past 256 MiB of slack).
    private static func keepLargeAllocationsOnTheHeap() {
        // mallopt is declared in <malloc.h>, which the Glibc module does not export; the values are its
        // M_TRIM_THRESHOLD (-1) and M_MMAP_THRESHOLD (-3).
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let symbol = dlsym(nil, "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        _ = mallopt(-3, 32 << 20)
        _ = mallopt(-1, 256 << 20)
    }

    /// The tunable that makes glibc's memcpy/memmove copy with vector loops instead of `rep movsb`.
    static let repMovsbTunable = "glibc.cpu.x86_rep_movsb_threshold"

    /// glibc before 2.39 copies every block from ~2 KiB up with `rep movsb`, which AMD Zen CPUs run ~18x slower
    /// when the destination lies 1-31 bytes past the source modulo 4 KiB (glibc bug 30994): measured on this
    /// project's machines, a 256 KiB copy took 147 us instead of 8. Which copies land there depends on where
    /// malloc put the buffers; in the 256 KiB Echo it was protobuf-c's unpack copy, a fifth of the server's time.
    /// glibc reads its tunables only at start-up, so the process sets GLIBC_TUNABLES and executes itself again
    /// (same pid, same arguments) once; a GLIBC_TUNABLES that already names the tunable (the user's, or ours after
    /// the exec) is left alone, so setting it yourself opts out.
    private static func preferVectorCopies() {
        #if arch(x86_64)
        // Set just before the exec and removed at once after it (children start clean): whatever glibc does with
        // GLIBC_TUNABLES (a secure-mode process drops it), the process never executes itself twice.
        let marker = "RADIAL_REEXECUTED"
        if getenv(marker) != nil { unsetenv(marker); return }
        let current = getenv("GLIBC_TUNABLES").map { String(cString: $0) }
        if let current, current.contains(repMovsbTunable) { return }
        // 1 TiB: above the size any copy has, so `rep movsb` is never chosen (non-temporal stores still are, for
        // copies past glibc's non-temporal threshold).
        let value = (current.map { $0 + ":" } ?? "") + "\(repMovsbTunable)=1099511627776"
        guard setenv("GLIBC_TUNABLES", value, 1) == 0, setenv(marker, "1", 1) == 0 else { return }
        execv("/proc/self/exe", CommandLine.unsafeArgv)
        // Only reached when the exec failed (no /proc): carry on with glibc's defaults.
        unsetenv(marker)
        unsetenv("GLIBC_TUNABLES")
        if let current { setenv("GLIBC_TUNABLES", current, 1) }
        #endif
    }
    #endif
}
