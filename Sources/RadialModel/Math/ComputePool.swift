import Foundation
import Synchronization

/// The threads the decode kernels split their rows over: the caller takes a share itself, and helpers that stay
/// awake between parallel regions take the rest.
///
/// `DispatchQueue.concurrentPerform` parks its helper threads after every region and wakes them with a futex for
/// the next one; a token runs ~150 such regions (every matmul and attention step of every layer), and on this
/// 2-core VM each park and wake costs tens of microseconds. Here a helper that has finished a region keeps polling
/// for the next one (yielding the CPU to anything else runnable) for `spinWindow`, and only then parks, so the
/// regions of one forward pass reach it with no wake-up, while an idle process (a worker between visits) leaves
/// the CPUs to others after that window.
public final class ComputePool: @unchecked Sendable {
    /// Shared by every model in the process, sized when first used by `configuredThreads`. The thread count is
    /// a resource, not arithmetic: a row's result is the same however rows are split (see `splitRows`).
    nonisolated(unsafe) public static var shared = ComputePool(threads: configuredThreads)
    /// Set once at start-up (`--threads`), before any model computes.
    nonisolated(unsafe) public static var configuredThreads = 2

    /// How long a helper polls for the next region before it parks.
    static let spinWindow: Duration = .microseconds(Int64(ProcessInfo.processInfo.environment["RADIAL_SPIN_US"].flatMap(Int.init) ?? 200))

    /// Row chunks per thread in `splitRows` (RADIAL_CHUNKS_PER_THREAD; 1: one equal share each, the old split).
    static let chunksPerThread = max(1, ProcessInfo.processInfo.environment["RADIAL_CHUNKS_PER_THREAD"].flatMap(Int.init) ?? 4)

    public let threads: Int
    private let busy = Mutex(false)           // one region at a time; a second caller uses Dispatch instead
    private let epoch = Atomic<Int>(0)         // the current region's number
    // The next task to hand out, tagged with its region: (tag << 32) | index, the tag being the region number's
    // low 31 bits (a long-running worker passes 2^31 regions in a couple of days; the tag must wrap, not overflow).
    // A helper that comes late can only take tasks of the region it saw start, never (with a stale body) tasks of
    // a later one.
    private let next = Atomic<Int>(0)
    private let remaining = Atomic<Int>(0)     // tasks of the current region not yet finished
    private let parked = Atomic<Int>(0)        // helpers asleep on `wake`
    private let wake = DispatchSemaphore(value: 0)
    // The region's task count and body: written before `next` is tagged with the new region (release), read only
    // by a thread that took a task of that region (acquire), and unchanged until all its tasks have finished.
    nonisolated(unsafe) private var count = 0
    nonisolated(unsafe) private var body: (@Sendable (Int) -> Void)?

    public init(threads: Int) {
        self.threads = max(1, threads)
        for _ in 1..<self.threads {
            // The helpers hold the pool: a pool lives as long as the process (the shared one does anyway).
            let thread = Thread { [self] in helperLoop() }
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Splits rows [0, count) of a matrix product over up to `threads` threads when `work` (multiply-adds) repays
    /// the hand-off, calling `run(r0, r1)` per chunk. Chunks end on multiples of 8 rows so threads do not share
    /// cache lines of the output.
    ///
    /// `chunksPerThread` chunks per thread, handed out as threads come for them (llama.cpp's matmuls do the same
    /// with 64-row chunks): on this shared 2-core VM a thread is often descheduled in the middle of a region, and
    /// with one chunk per thread the other thread then idles until it returns (perf of a Qwen2.5-1.5B decode on a
    /// busy host: the helper did 31% of the kernel work instead of 50%). A row's result does not depend on the
    /// chunk it falls in, so this changes no bit of the output.
    public func splitRows(_ count: Int, work: Int, threads: Int, _ run: @escaping @Sendable (Int, Int) -> Void) {
        let t = work < 1 << 16 ? 1 : min(threads, count)
        guard t > 1 else { run(0, count); return }
        // at least 2^19 multiply-adds a chunk: each chunk costs a hand-out and prepares its inputs once (the K-quant
        // kernels' transposed copy); with 64-row chunks SmolLM2-135M's 576-wide matrices decoded ~6% slower
        let tasks = max(t, min(t * Self.chunksPerThread, work >> 19))
        let chunk = ((count + tasks - 1) / tasks + 7) & ~7
        self.run((count + chunk - 1) / chunk) { i in
            let r0 = min(i * chunk, count), r1 = min(r0 + chunk, count)
            if r0 < r1 { run(r0, r1) }
        }
    }

    /// Calls `task(i)` for every i in 0..<n, spread over the pool's threads (the caller included); returns once all
    /// have finished. Tasks must not call `run` themselves.
    public func run(_ n: Int, _ task: @escaping @Sendable (Int) -> Void) {
        guard n > 1, threads > 1 else {
            for i in 0..<n { task(i) }
            return
        }
        guard busy.withLock({ b -> Bool in defer { b = true }; return !b }) else {
            DispatchQueue.concurrentPerform(iterations: n, execute: task)
            return
        }
        defer { busy.withLock { $0 = false } }
        let region = epoch.load(ordering: .relaxed) + 1
        count = n
        body = task
        remaining.store(n, ordering: .relaxed)
        next.store(Self.tag(region) << 32, ordering: .releasing)
        // Sequentially consistent with the helper's parked/epoch pair: one of the two always sees the other.
        epoch.store(region, ordering: .sequentiallyConsistent)
        let sleepers = parked.load(ordering: .sequentiallyConsistent)
        for _ in 0..<sleepers { wake.signal() }
        work(region)
        while remaining.load(ordering: .acquiring) > 0 { sched_yield() }
        body = nil
    }

    private static func tag(_ region: Int) -> Int { region & 0x7FFF_FFFF }

    /// For tests: continue numbering regions from `region`, as if that many had run.
    func skipRegions(to region: Int) {
        epoch.store(region, ordering: .sequentiallyConsistent)
    }

    /// Takes and runs tasks of `region` until none is left.
    private func work(_ region: Int) {
        while true {
            let ticket = next.load(ordering: .acquiring)
            guard ticket >> 32 == Self.tag(region), ticket & 0xFFFF_FFFF < count else { return }
            guard next.compareExchange(expected: ticket, desired: ticket + 1, ordering: .acquiringAndReleasing).exchanged else { continue }
            body!(ticket & 0xFFFF_FFFF)
            remaining.subtract(1, ordering: .releasing)
        }
    }

    private func helperLoop() {
        var seen = epoch.load(ordering: .acquiring)
        while true {
            let clock = ContinuousClock()
            let deadline = clock.now + Self.spinWindow
            while epoch.load(ordering: .acquiring) == seen {
                if clock.now < deadline {
                    sched_yield()
                } else {
                    parked.add(1, ordering: .sequentiallyConsistent)
                    // A region that starts after this check signals `wake`; one that started before is seen here.
                    // A signal left over from a region this helper saw anyway only costs one extra loop.
                    if epoch.load(ordering: .sequentiallyConsistent) == seen { wake.wait() }
                    parked.subtract(1, ordering: .releasing)
                }
            }
            seen = epoch.load(ordering: .acquiring)
            work(seen)
        }
    }
}
