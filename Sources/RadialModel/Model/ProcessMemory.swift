#if canImport(Glibc)
import Glibc
#endif

/// The process's resident memory, for reporting what a shard really costs.
public enum ProcessMemory {
    /// Resident set size in bytes (from /proc/self/statm; 0 where that is unavailable).
    public static var residentBytes: UInt64 {
        guard let f = fopen("/proc/self/statm", "r") else { return 0 }
        defer { fclose(f) }
        var line = [CChar](repeating: 0, count: 128)
        guard fgets(&line, 128, f) != nil else { return 0 }
        let fields = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self).split(separator: " ")
        guard fields.count >= 2, let pages = UInt64(fields[1]) else { return 0 }
        return pages * UInt64(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Peak resident set size in bytes (getrusage's ru_maxrss).
    public static var peakResidentBytes: UInt64 {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return UInt64(usage.ru_maxrss) * 1024
    }
}
