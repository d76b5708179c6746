import CGRPCShim

/// What a finished batch produced; only the fields for the ops the batch held are meaningful.
struct BatchResult: Sendable {
    var success: Bool
    /// A received message, or nil at the end of the stream (or when the batch failed).
    var message: [UInt8]?
    /// The received message could not be read (bad compression): a protocol error, not end of stream.
    var messageUnreadable = false
    var initialMetadata = Metadata()
    var status: RPCError?            // .ok with a message for a successful call
    var trailingMetadata = Metadata()
    var cancelled = false
}

/// A received message's bytes (decompressed by core), or nil when core cannot read it (bad compression). The
/// array is filled by the one copy, not zeroed first: messages reach 64 MB.
func readByteBuffer(_ buffer: UnsafeMutablePointer<grpc_byte_buffer>) -> [UInt8]? {
    let length = rgs_byte_buffer_length(buffer)
    var ok = false
    let bytes = [UInt8](unsafeUninitializedCapacity: length) { out, count in
        ok = rgs_byte_buffer_copy(buffer, out.baseAddress, length) == length
        count = ok ? length : 0
    }
    return ok ? bytes : nil
}

/// A message's wire bytes in a gRPC byte buffer, ready to send. A typed message is encoded straight into gRPC's
/// memory (`init(_:)`: protobuf-c packs into the buffer gRPC sends from), so sending copies nothing; raw bytes are
/// copied in once. The batch that sends it takes the buffer; one never sent is freed here.
final class OutgoingMessage: @unchecked Sendable {
    // Touched by one thread at a time: built, then handed to one batch.
    private var buffer: UnsafeMutablePointer<grpc_byte_buffer>?
    /// The message's wire size in bytes.
    let size: Int

    init(bytes: [UInt8]) {
        buffer = bytes.withUnsafeBytes { rgs_byte_buffer_create($0.baseAddress, $0.count)! }
        size = bytes.count
    }

    init<Message: WireMessage>(_ message: Message) {
        (buffer, size) = message.withWireWriter { size, write in
            var data: UnsafeMutablePointer<UInt8>?
            let buffer = rgs_byte_buffer_allocate(size, &data)!
            if size > 0, let data { write(UnsafeMutableRawPointer(data)) }
            return (buffer, size)
        }
    }

    /// The buffer, now owned by the caller (who destroys it once gRPC is done with it). Once only.
    func take() -> UnsafeMutablePointer<grpc_byte_buffer> {
        guard let taken = buffer else { preconditionFailure("an outgoing message was sent twice") }
        buffer = nil
        return taken
    }

    deinit { if let buffer { grpc_byte_buffer_destroy(buffer) } }
}

/// One `grpc_call_start_batch`: the ops and every buffer they point into. gRPC writes the out-parameters after
/// `start_batch` returns, so they live on the heap, owned by this object, until the completion tag fires (the
/// tag's closure keeps the batch alive).
final class Batch: @unchecked Sendable {
    // Built on one thread, then only read by the completion queue's thread after gRPC is done with it.
    private var ops: [grpc_op]
    private var sendBuffers: [OpaquePointer] = []
    private var sendMetadata: [CMetadata] = []
    private var sendDetails: UnsafeMutablePointer<grpc_slice>?
    private var recvInitial: UnsafeMutablePointer<grpc_metadata_array>?
    private var recvMessage: UnsafeMutablePointer<OpaquePointer?>?
    private var recvCode: UnsafeMutablePointer<grpc_status_code>?
    private var recvDetails: UnsafeMutablePointer<grpc_slice>?
    private var recvTrailing: UnsafeMutablePointer<grpc_metadata_array>?
    private var recvCancelled: UnsafeMutablePointer<Int32>?

    init() {
        ops = []
        ops.reserveCapacity(6)  // a unary call's six ops, without regrowing
    }

    func sendInitialMetadata(_ metadata: Metadata, flags: UInt32 = 0) {
        var op = grpc_op()
        op.op = GRPC_OP_SEND_INITIAL_METADATA
        op.flags = flags
        if !metadata.isEmpty {
            let c = CMetadata(metadata)
            sendMetadata.append(c)
            op.data.send_initial_metadata.count = c.count
            op.data.send_initial_metadata.metadata = c.pointer
        }
        ops.append(op)
    }

    func sendMessage(_ message: OutgoingMessage) {
        let buffer = message.take()
        sendBuffers.append(OpaquePointer(buffer))
        var op = grpc_op()
        op.op = GRPC_OP_SEND_MESSAGE
        op.data.send_message.send_message = buffer
        ops.append(op)
    }

    func sendCloseFromClient() {
        var op = grpc_op()
        op.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT
        ops.append(op)
    }

    func sendStatus(_ status: RPCError, trailing: Metadata = Metadata()) {
        let details = UnsafeMutablePointer<grpc_slice>.allocate(capacity: 1)
        details.initialize(to: grpc_slice_from_copied_string(status.message))
        sendDetails = details
        var op = grpc_op()
        op.op = GRPC_OP_SEND_STATUS_FROM_SERVER
        op.data.send_status_from_server.status = grpc_status_code(rawValue: status.code.rawValue)
        op.data.send_status_from_server.status_details = details
        if !trailing.isEmpty {
            let c = CMetadata(trailing)
            sendMetadata.append(c)
            op.data.send_status_from_server.trailing_metadata_count = c.count
            op.data.send_status_from_server.trailing_metadata = c.pointer
        }
        ops.append(op)
    }

    func receiveInitialMetadata() {
        let array = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
        grpc_metadata_array_init(array)
        recvInitial = array
        var op = grpc_op()
        op.op = GRPC_OP_RECV_INITIAL_METADATA
        op.data.recv_initial_metadata.recv_initial_metadata = array
        ops.append(op)
    }

    func receiveMessage() {
        let slot = UnsafeMutablePointer<OpaquePointer?>.allocate(capacity: 1)
        slot.initialize(to: nil)
        recvMessage = slot
        var op = grpc_op()
        op.op = GRPC_OP_RECV_MESSAGE
        op.data.recv_message.recv_message = UnsafeMutableRawPointer(slot)
            .assumingMemoryBound(to: UnsafeMutablePointer<grpc_byte_buffer>?.self)
        ops.append(op)
    }

    func receiveStatusOnClient() {
        let code = UnsafeMutablePointer<grpc_status_code>.allocate(capacity: 1)
        code.initialize(to: GRPC_STATUS_UNKNOWN)
        let details = UnsafeMutablePointer<grpc_slice>.allocate(capacity: 1)
        details.initialize(to: grpc_empty_slice())
        let trailing = UnsafeMutablePointer<grpc_metadata_array>.allocate(capacity: 1)
        grpc_metadata_array_init(trailing)
        recvCode = code; recvDetails = details; recvTrailing = trailing
        var op = grpc_op()
        op.op = GRPC_OP_RECV_STATUS_ON_CLIENT
        op.data.recv_status_on_client.status = code
        op.data.recv_status_on_client.status_details = details
        op.data.recv_status_on_client.trailing_metadata = trailing
        ops.append(op)
    }

    func receiveCloseOnServer() {
        let flag = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        flag.initialize(to: 0)
        recvCancelled = flag
        var op = grpc_op()
        op.op = GRPC_OP_RECV_CLOSE_ON_SERVER
        op.data.recv_close_on_server.cancelled = flag
        ops.append(op)
    }

    /// Starts the batch; `completion` runs on the completion queue's thread (or at once, with a failed result,
    /// when gRPC refuses the batch).
    func start(on call: CallHandle, completion: @escaping @Sendable (BatchResult) -> Void) {
        let tag = CompletionTag { success in
            // `call` is captured so the grpc_call outlives the batch.
            withExtendedLifetime(call) { completion(self.collect(success: success)) }
        }
        let pointer = tag.retainedPointer()
        let error = ops.withUnsafeBufferPointer { grpc_call_start_batch(call.call, $0.baseAddress, $0.count, pointer, nil) }
        if error != GRPC_CALL_OK {
            CompletionTag.cancel(pointer)
            completion(BatchResult(success: false, status: RPCError(.internal, "gRPC refused the batch (call error \(error.rawValue))")))
        }
    }

    func run(on call: CallHandle) async -> BatchResult {
        // Unchecked: `start` calls its completion exactly once (from the tag, or at once when refused).
        await withUnsafeContinuation { continuation in
            start(on: call) { continuation.resume(returning: $0) }
        }
    }

    private func collect(success: Bool) -> BatchResult {
        var result = BatchResult(success: success)
        if let recvInitial { result.initialMetadata = Metadata(recvInitial.pointee) }
        if let recvMessage, let buffer = recvMessage.pointee {
            if let bytes = readByteBuffer(UnsafeMutablePointer<grpc_byte_buffer>(buffer)) { result.message = bytes } else { result.messageUnreadable = true }
        }
        if let recvCode, let recvDetails {
            result.status = RPCError(StatusCode(wire: recvCode.pointee.rawValue), String(slice: recvDetails.pointee))
        }
        if let recvTrailing { result.trailingMetadata = Metadata(recvTrailing.pointee) }
        if let recvCancelled { result.cancelled = recvCancelled.pointee != 0 }
        return result
    }

    deinit {
        for buffer in sendBuffers { grpc_byte_buffer_destroy(UnsafeMutablePointer<grpc_byte_buffer>(buffer)) }
        if let sendDetails { grpc_slice_unref(sendDetails.pointee); sendDetails.deallocate() }
        if let recvInitial { grpc_metadata_array_destroy(recvInitial); recvInitial.deallocate() }
        if let recvMessage {
            if let buffer = recvMessage.pointee { grpc_byte_buffer_destroy(UnsafeMutablePointer<grpc_byte_buffer>(buffer)) }
            recvMessage.deallocate()
        }
        recvCode?.deallocate()
        if let recvDetails { grpc_slice_unref(recvDetails.pointee); recvDetails.deallocate() }
        if let recvTrailing { grpc_metadata_array_destroy(recvTrailing); recvTrailing.deallocate() }
        recvCancelled?.deallocate()
    }
}
