import Foundation
@testable import RadialModel
import Synchronization
import Testing

/// The decode kernels' thread pool: every task of every region runs exactly once, whether the helpers are
/// polling (back-to-back regions) or asleep (regions further apart than the spin window), and a second caller
/// while a region runs is served too.
@Suite struct ComputePoolTests {
    final class Counter: Sendable { let value = Atomic<Int>(0) }

    /// Runs `regions` regions of `n` tasks; each task adds its index + 1 into its region's slot.
    func check(_ pool: ComputePool, regions: Int, n: Int, pause: Duration? = nil) {
        let sums = (0..<regions).map { _ in Counter() }
        let calls = Counter()
        for r in 0..<regions {
            pool.run(n) { i in
                sums[r].value.add(i + 1, ordering: .relaxed)
                calls.value.add(1, ordering: .relaxed)
            }
            if let pause { Thread.sleep(forTimeInterval: Double(pause.components.attoseconds) / 1e18) }
        }
        #expect(calls.value.load(ordering: .relaxed) == regions * n)
        #expect(sums.allSatisfy { $0.value.load(ordering: .relaxed) == n * (n + 1) / 2 }, "each task ran exactly once, in its own region")
    }

    @Test func manyBackToBackRegions() {
        let pool = ComputePool(threads: 3)
        check(pool, regions: 20_000, n: 2)
        check(pool, regions: 2_000, n: 7)
    }

    /// Region numbers past 2^31 (a worker that has decoded for days): the ticket tag wraps and work goes on.
    @Test(.timeLimit(.minutes(1))) func regionNumbersPastTheTagWidth() {
        let pool = ComputePool(threads: 2)
        pool.skipRegions(to: (1 << 31) - 3)
        check(pool, regions: 10, n: 3)
    }

    @Test func regionsAfterTheHelpersParked() {
        let pool = ComputePool(threads: 2)
        check(pool, regions: 20, n: 4, pause: .milliseconds(2))  // 2 ms > the 200 us spin window
    }

    @Test func concurrentCallersAreBothServed() async {
        let pool = ComputePool(threads: 2)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<4 { group.addTask { self.check(pool, regions: 500, n: 3) } }
        }
    }
}
