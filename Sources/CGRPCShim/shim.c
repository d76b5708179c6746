// pthread_setname_np is a GNU extension; the header includes <pthread.h> first, so define it here.
#define _GNU_SOURCE 1
#include "CGRPCShim.h"
#include <math.h>
#include <string.h>

const uint8_t *rgs_slice_start(const grpc_slice *slice) { return GRPC_SLICE_START_PTR(*slice); }
size_t rgs_slice_length(const grpc_slice *slice) { return GRPC_SLICE_LENGTH(*slice); }

grpc_byte_buffer *rgs_byte_buffer_create(const void *bytes, size_t length) {
  grpc_slice slice = grpc_slice_from_copied_buffer((const char *)bytes, length);
  grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);  // the buffer holds its own reference
  return buffer;
}

grpc_byte_buffer *rgs_byte_buffer_allocate(size_t length, uint8_t **data) {
  // malloc_large: a plain grpc_slice_malloc keeps short slices inline in the slice struct itself, which the
  // buffer copies, so a pointer taken here would not point into the buffer.
  grpc_slice slice = grpc_slice_malloc_large(length);
  *data = GRPC_SLICE_START_PTR(slice);
  grpc_byte_buffer *buffer = grpc_raw_byte_buffer_create(&slice, 1);
  grpc_slice_unref(slice);  // the buffer holds its own reference to the same memory
  return buffer;
}

size_t rgs_byte_buffer_length(grpc_byte_buffer *buffer) { return grpc_byte_buffer_length(buffer); }

ptrdiff_t rgs_byte_buffer_copy(grpc_byte_buffer *buffer, void *out, size_t capacity) {
  grpc_byte_buffer_reader reader;
  if (!grpc_byte_buffer_reader_init(&reader, buffer)) return -1;
  size_t written = 0;
  grpc_slice slice;
  int ok = 1;
  while (grpc_byte_buffer_reader_next(&reader, &slice)) {
    size_t n = GRPC_SLICE_LENGTH(slice);
    if (written + n > capacity) ok = 0;
    else memcpy((uint8_t *)out + written, GRPC_SLICE_START_PTR(slice), n);
    written += n;
    grpc_slice_unref(slice);
  }
  grpc_byte_buffer_reader_destroy(&reader);
  return ok ? (ptrdiff_t)written : -1;
}

grpc_channel_args *rgs_args_create(size_t count) {
  grpc_channel_args *args = calloc(1, sizeof(grpc_channel_args));
  args->num_args = count;
  args->args = calloc(count ? count : 1, sizeof(grpc_arg));
  return args;
}

void rgs_args_set_int(grpc_channel_args *args, size_t index, const char *key, int value) {
  grpc_arg *arg = &args->args[index];
  arg->type = GRPC_ARG_INTEGER;
  arg->key = strdup(key);
  arg->value.integer = value;
}

void rgs_args_set_string(grpc_channel_args *args, size_t index, const char *key, const char *value) {
  grpc_arg *arg = &args->args[index];
  arg->type = GRPC_ARG_STRING;
  arg->key = strdup(key);
  arg->value.string = strdup(value);
}

void rgs_args_free(grpc_channel_args *args) {
  if (!args) return;
  for (size_t i = 0; i < args->num_args; i++) {
    free(args->args[i].key);
    if (args->args[i].type == GRPC_ARG_STRING) free(args->args[i].value.string);
  }
  free(args->args);
  free(args);
}

gpr_timespec rgs_deadline_after_micros(int64_t micros) {
  if (micros < 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_micros(micros, GPR_TIMESPAN));
}

double rgs_seconds_until(gpr_timespec deadline) {
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0) return INFINITY;
  gpr_timespec now = gpr_now(deadline.clock_type == GPR_TIMESPAN ? GPR_CLOCK_MONOTONIC : deadline.clock_type);
  gpr_timespec left = gpr_time_sub(deadline, now);
  return (double)left.tv_sec + (double)left.tv_nsec * 1e-9;
}

gpr_timespec rgs_inf_future(void) { return gpr_inf_future(GPR_CLOCK_REALTIME); }

uint32_t rgs_flag_wait_for_ready(void) { return GRPC_INITIAL_METADATA_WAIT_FOR_READY; }

void rgs_name_this_thread(const char *name) { pthread_setname_np(pthread_self(), name); }
