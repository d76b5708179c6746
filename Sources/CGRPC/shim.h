// libc headers BEFORE grpc: grpc's port_platform.h defines _GNU_SOURCE, which otherwise breaks fd_set
// when a Swift target also imports Foundation (see PLATFORM.md).
#include <sys/types.h>
#include <sys/select.h>
#include <stdlib.h>
#include <time.h>
#include <pthread.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/log.h>
