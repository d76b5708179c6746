import Dispatch
import Foundation

/// Waiting for SIGTERM / SIGINT, for servers that shut down gracefully: the default action (die at once) is
/// replaced by a dispatch source, so in-flight calls can drain. Arm it before telling anyone the server is up: a
/// signal that arrives between arming and `wait()` is kept, not lost (and does not kill the process).
public final class TerminationSignal: @unchecked Sendable {
    // Mutable state guarded by `lock`; the sources are only touched under it.
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Int32, Never>?
    private var received: Int32?
    private var sources: [any DispatchSourceSignal] = []

    /// Catches SIGTERM and SIGINT from now on.
    public static func arm() -> TerminationSignal {
        let waiter = TerminationSignal()
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { waiter.fire(number) }  // the source keeps the waiter alive, and vice versa
            waiter.lock.withLock { waiter.sources.append(source) }
            source.resume()
        }
        return waiter
    }

    /// Arms, then returns the signal number once SIGTERM or SIGINT arrives.
    public static func wait() async -> Int32 { await arm().wait() }

    /// The first signal caught since `arm()` (at once if one already came).
    public func wait() async -> Int32 {
        await withCheckedContinuation { (c: CheckedContinuation<Int32, Never>) in
            let now = lock.withLock { () -> Int32? in
                if received == nil { continuation = c }
                return received
            }
            if let now { c.resume(returning: now) }
        }
    }

    private func fire(_ number: Int32) {
        let c = lock.withLock { () -> CheckedContinuation<Int32, Never>? in
            if received == nil { received = number }
            defer { continuation = nil }
            return continuation
        }
        c?.resume(returning: number)
    }
}
