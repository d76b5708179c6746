import Dispatch
import Foundation

/// Waiting for SIGTERM / SIGINT, for servers that shut down gracefully: the default action (die at once) is
/// replaced by a dispatch source, so in-flight calls can drain.
public enum TerminationSignal {
    /// Returns the signal number once SIGTERM or SIGINT arrives.
    public static func wait() async -> Int32 {
        await withCheckedContinuation { (continuation: CheckedContinuation<Int32, Never>) in
            SignalWaiter(continuation).arm()
        }
    }
}

/// Holds the dispatch sources (they stop when released) and resumes the waiter once.
private final class SignalWaiter: @unchecked Sendable {
    // Mutable state guarded by `lock`; the sources are only touched under it.
    private let lock = NSLock()
    private var continuation: CheckedContinuation<Int32, Never>?
    private var sources: [any DispatchSourceSignal] = []

    init(_ continuation: CheckedContinuation<Int32, Never>) { self.continuation = continuation }

    func arm() {
        for number in [SIGTERM, SIGINT] {
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { self.fire(number) }  // the source keeps the waiter alive, and vice versa
            lock.withLock { sources.append(source) }
            source.resume()
        }
    }

    private func fire(_ number: Int32) {
        let c = lock.withLock { () -> CheckedContinuation<Int32, Never>? in
            defer { continuation = nil }
            return continuation
        }
        c?.resume(returning: number)
    }
}
