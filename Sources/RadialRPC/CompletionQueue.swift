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
final class CompletionQueue: @unchecked Sendable {
    let cq: OpaquePointer
    private let finished = DispatchSemaphore(value: 0)

    init(name: String) {
        GRPCLibrary.ensureInitialised()
        cq = grpc_completion_queue_create_for_next(nil)
        let thread = Thread { [self] in
            while true {
                let event = grpc_completion_queue_next(cq, rgs_inf_future(), nil)
                if event.type == GRPC_QUEUE_SHUTDOWN { break }
                guard event.type == GRPC_OP_COMPLETE, let tag = event.tag else { continue }
                Unmanaged<CompletionTag>.fromOpaque(tag).takeRetainedValue().onComplete(event.success != 0)
            }
            finished.signal()
        }
        thread.name = name
        thread.start()
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
