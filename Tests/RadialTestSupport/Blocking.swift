import Dispatch

/// Runs blocking work (seconds of model compute, waiting on a child process) off Swift's cooperative pool. Test
/// bodies run on that pool, which is only as wide as the machine has cores (two here): a few blocking tests at once
/// would leave no thread to resume the async tests' RPC calls, whose deadlines then expire while the replies wait
/// unread. The body stays in the calling task (a task-executor preference, not a new task), so expectations it
/// records are still the test's.
public func blocking<T: Sendable>(_ body: () async throws -> T) async throws -> T {
    try await withTaskExecutorPreference(DispatchTaskExecutor.shared) { try await body() }
}

/// Runs each job on a global dispatch thread: threads there may block without starving the cooperative pool.
final class DispatchTaskExecutor: TaskExecutor, @unchecked Sendable {
    static let shared = DispatchTaskExecutor()

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        let executor = asUnownedTaskExecutor()
        DispatchQueue.global().async { job.runSynchronously(on: executor) }
    }
}
