import CGRPCShim
import Foundation

/// gRPC core's global state: initialised once per process, never shut down (core owns background threads that
/// live as long as the process).
enum GRPCLibrary {
    private static let initialised: Bool = {
        grpc_init()
        // Core logs every transient connection failure at INFO/ERROR level to stderr; GRPC_VERBOSITY still wins.
        if ProcessInfo.processInfo.environment["GRPC_VERBOSITY"] == nil {
            gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR)
        }
        return true
    }()

    static func ensureInitialised() { _ = initialised }
}

/// The object behind a completion-queue tag: gRPC hands the pointer back when the operation completes, and the
/// queue's thread calls `onComplete` with the event's success flag. Retained (`passRetained`) until then.
final class CompletionTag: @unchecked Sendable {
    // Immutable after init; called exactly once, on the queue's thread.
    let onComplete: @Sendable (Bool) -> Void

    init(_ onComplete: @escaping @Sendable (Bool) -> Void) { self.onComplete = onComplete }

    /// A tag pointer for a C call; the caller must `cancel` it when the C call refuses the operation, since the
    /// queue will then never return it.
    func retainedPointer() -> UnsafeMutableRawPointer { Unmanaged.passRetained(self).toOpaque() }

    static func cancel(_ pointer: UnsafeMutableRawPointer) {
        Unmanaged<CompletionTag>.fromOpaque(pointer).release()
    }
}

/// A completion queue with its own thread blocked in `grpc_completion_queue_next`, dispatching each completed
/// tag. The handle is shared between that thread and the threads that start operations, which gRPC allows:
/// hence `@unchecked Sendable`.
///
/// The queue is also a TaskExecutor. Jobs enqueued from its own thread (a continuation resumed by a completion,
/// a handler Task started for a new call) run on that thread right after the completion, instead of waking a
/// thread of the global pool: on a small VM each such wake-up costs tens of microseconds, about as much as the
/// whole C-core round trip. Jobs enqueued from other threads go to the global pool, so a handler that blocks only
/// ever blocks this thread while it runs here (see `RPCServer.addUnary(offloaded:)`).
final class CompletionQueue: TaskExecutor, @unchecked Sendable {
    let cq: OpaquePointer
    private let finished = DispatchSemaphore(value: 0)
    private let started = DispatchSemaphore(value: 0)
    // Written once by the queue thread before `started` is signalled; read-only afterwards.
    private var thread = pthread_t()
    // Only touched on the queue thread.
    private var localJobs: [UnownedJob] = []
    // The batch being run; swapped with `localJobs` so neither array is reallocated per completion.
    private var runningJobs: [UnownedJob] = []

    /// `name` is the thread's name in ps, top and perf: at most 15 bytes, or Linux refuses it.
    init(name: String) {
        GRPCLibrary.ensureInitialised()
        cq = grpc_completion_queue_create_for_next(nil)
        let thread = Thread { [self] in
            self.thread = pthread_self()
            rgs_name_this_thread(name)  // Foundation's Thread.name did not reach the OS thread
            started.signal()
            while true {
                let event = grpc_completion_queue_next(cq, rgs_inf_future(), nil)
                if event.type == GRPC_QUEUE_SHUTDOWN { break }
                guard event.type == GRPC_OP_COMPLETE, let tag = event.tag else { continue }
                Unmanaged<CompletionTag>.fromOpaque(tag).takeRetainedValue().onComplete(event.success != 0)
                runLocalJobs()
            }
            finished.signal()
        }
        thread.start()
        started.wait()
    }

    var isCurrentThread: Bool { pthread_equal(pthread_self(), thread) != 0 }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        if isCurrentThread {
            localJobs.append(job)
        } else {
            // A TaskExecutor promises no isolation, so running the job on a pool thread is allowed.
            let executor = asUnownedTaskExecutor()
            DispatchQueue.global().async { job.runSynchronously(on: executor) }
        }
    }

    private func runLocalJobs() {
        let executor = asUnownedTaskExecutor()
        while !localJobs.isEmpty {
            // Jobs these jobs enqueue land in `localJobs` (emptied by the swap) and run in the next pass.
            swap(&localJobs, &runningJobs)
            for job in runningJobs { job.runSynchronously(on: executor) }
            runningJobs.removeAll(keepingCapacity: true)
        }
    }

    /// Stops the thread once every outstanding operation has completed, and frees the queue. Call once, after
    /// whatever feeds the queue (server, calls) has stopped.
    func shutdown() {
        grpc_completion_queue_shutdown(cq)
        finished.wait()
        grpc_completion_queue_destroy(cq)
    }
}

/// A reference to a `grpc_call`, released when the last Swift owner goes away. Batches, streams and contexts
/// each hold one, so the call outlives every operation still running on it.
final class CallHandle: @unchecked Sendable {
    // grpc_call is thread-safe for start_batch and cancel; the pointer itself never changes.
    let call: OpaquePointer

    init(_ call: OpaquePointer) { self.call = call }

    func cancel() { grpc_call_cancel(call, nil) }

    deinit { grpc_call_unref(call) }
}
