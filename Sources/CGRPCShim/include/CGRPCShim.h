// Small C helpers for what Swift cannot import from gRPC core: macros (slice accessors, flag constants) and
// byte-buffer copy-in/copy-out. Everything else in gRPC core is called from Swift directly (Sources/RadialRPC).
#ifndef RADIAL_GRPC_SHIM_H
#define RADIAL_GRPC_SHIM_H

// libc headers BEFORE grpc: grpc's port_platform.h defines _GNU_SOURCE, which otherwise breaks fd_set
// when a Swift target also imports Foundation (PLATFORM.md).
#include <sys/types.h>
#include <sys/select.h>
#include <stdlib.h>
#include <stdint.h>
#include <time.h>
#include <pthread.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/time.h>
#include <grpc/support/log.h>

/// Start and length of a slice's bytes (GRPC_SLICE_START_PTR / GRPC_SLICE_LENGTH).
const uint8_t *rgs_slice_start(const grpc_slice *slice);
size_t rgs_slice_length(const grpc_slice *slice);

/// A byte buffer holding a copy of `length` bytes (one slice). Destroy with grpc_byte_buffer_destroy.
grpc_byte_buffer *rgs_byte_buffer_create(const void *bytes, size_t length);
/// A byte buffer of `length` bytes for the caller to fill through `*data` before sending it (one slice of
/// gRPC's own heap memory, never inlined, so `*data` stays valid for as long as the buffer): lets a message be
/// encoded where gRPC will send it from, with no copy. Destroy with grpc_byte_buffer_destroy.
grpc_byte_buffer *rgs_byte_buffer_allocate(size_t length, uint8_t **data);
/// Total length of a received byte buffer (which may be compressed or span several slices).
size_t rgs_byte_buffer_length(grpc_byte_buffer *buffer);
/// Copies a received byte buffer into `out` (capacity `capacity`); returns the bytes written, or -1 when the
/// buffer cannot be read (bad compression) or does not fit.
ptrdiff_t rgs_byte_buffer_copy(grpc_byte_buffer *buffer, void *out, size_t capacity);

/// Channel arguments: an array of `count` entries filled with set_int / set_string, freed with rgs_args_free.
grpc_channel_args *rgs_args_create(size_t count);
void rgs_args_set_int(grpc_channel_args *args, size_t index, const char *key, int value);
void rgs_args_set_string(grpc_channel_args *args, size_t index, const char *key, const char *value);
void rgs_args_free(grpc_channel_args *args);

/// Names the calling thread (at most 15 bytes show): pthread_setname_np needs _GNU_SOURCE, which Swift's
/// Glibc module does not import with.
void rgs_name_this_thread(const char *name);

/// A monotonic deadline `micros` from now; negative means no deadline (infinite future).
gpr_timespec rgs_deadline_after_micros(int64_t micros);
/// Seconds from now until `deadline` (any clock); +infinity for an infinite deadline, negative when past.
double rgs_seconds_until(gpr_timespec deadline);
/// An infinite deadline, for completion-queue waits.
gpr_timespec rgs_inf_future(void);

/// Flag values defined as macros in grpc_types.h.
uint32_t rgs_flag_wait_for_ready(void);

#endif
