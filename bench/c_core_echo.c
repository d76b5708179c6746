// The raw gRPC C-core baseline for the transport benchmark: one thread, one completion queue, no Swift.
// Serves /radial.Diagnostics/Echo by returning the request bytes (an EchoRequest holding only a payload encodes
// exactly like the EchoReply with that payload), and calls it sequentially as a client.
//   cc -O2 -o c_core_echo bench/c_core_echo.c -lgrpc -lgpr
//   c_core_echo server PORT            prints 'listening on 127.0.0.1:PORT'
//   c_core_echo client ADDR SIZE CALLS prints one JSON object (p50_us, p99_us, calls_per_s)
#include <sys/types.h>
#include <sys/select.h>
#include <stdlib.h>
#include <time.h>
#include <pthread.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/byte_buffer.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <string.h>

static gpr_timespec inf(void) { return gpr_inf_future(GPR_CLOCK_REALTIME); }

static void wait_tag(grpc_completion_queue *cq, void *tag) {
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, inf(), NULL);
    if (ev.type == GRPC_OP_COMPLETE && ev.tag == tag) return;
  }
}

static int serve(int port) {
  grpc_server *server = grpc_server_create(NULL, NULL);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(server, cq, NULL);
  char addr[64];
  snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int bound = grpc_server_add_http2_port(server, addr, creds);
  grpc_server_credentials_release(creds);
  grpc_server_start(server);
  printf("listening on 127.0.0.1:%d\n", bound);
  fflush(stdout);
  for (;;) {
    grpc_call *call = NULL;
    grpc_call_details details;
    grpc_metadata_array md;
    grpc_call_details_init(&details);
    grpc_metadata_array_init(&md);
    grpc_server_request_call(server, &call, &details, &md, cq, cq, (void *)1);
    wait_tag(cq, (void *)1);
    grpc_byte_buffer *request = NULL;
    int cancelled = 0;
    grpc_op ops[4];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_RECV_MESSAGE;
    ops[0].data.recv_message.recv_message = &request;
    grpc_call_start_batch(call, ops, 1, (void *)2, NULL);
    wait_tag(cq, (void *)2);
    grpc_slice details_slice = grpc_empty_slice();
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = request;
    ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
    ops[2].data.send_status_from_server.status_details = &details_slice;
    ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[3].data.recv_close_on_server.cancelled = &cancelled;
    grpc_call_start_batch(call, ops, request ? 4 : 3, (void *)3, NULL);
    wait_tag(cq, (void *)3);
    if (request) grpc_byte_buffer_destroy(request);
    grpc_call_unref(call);
    grpc_call_details_destroy(&details);
    grpc_metadata_array_destroy(&md);
  }
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static int client(const char *target, int size, int calls) {
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  grpc_channel *channel = grpc_channel_create(target, creds, NULL);
  grpc_channel_credentials_release(creds);
  grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
  // EchoRequest{payload = size bytes}: tag 0x0a, varint length, bytes.
  unsigned char *msg = malloc(size + 8);
  int n = 0;
  msg[n++] = 0x0a;
  for (unsigned v = size; ; ) { unsigned char b = v & 0x7f; v >>= 7; if (v) { msg[n++] = b | 0x80; } else { msg[n++] = b; break; } }
  memset(msg + n, 7, size);
  n += size;
  grpc_slice method = grpc_slice_from_static_string("/radial.Diagnostics/Echo");
  int warm = calls / 10 + 20;
  double *lat = malloc(sizeof(double) * calls);
  double t_start = 0;
  for (int i = -warm; i < calls; i++) {
    if (i == 0) t_start = now_s();
    double t0 = now_s();
    grpc_call *call = grpc_channel_create_call(channel, NULL, 0, cq, method, NULL, inf(), NULL);
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)msg, n);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_metadata_array initial, trailing;
    grpc_metadata_array_init(&initial);
    grpc_metadata_array_init(&trailing);
    grpc_byte_buffer *reply = NULL;
    grpc_status_code status;
    grpc_slice details;
    grpc_op ops[6];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_MESSAGE;
    ops[1].data.send_message.send_message = bb;
    ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
    ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
    ops[4].op = GRPC_OP_RECV_MESSAGE;
    ops[4].data.recv_message.recv_message = &reply;
    ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[5].data.recv_status_on_client.status = &status;
    ops[5].data.recv_status_on_client.status_details = &details;
    ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
    grpc_call_start_batch(call, ops, 6, (void *)9, NULL);
    wait_tag(cq, (void *)9);
    if (status != GRPC_STATUS_OK || !reply || grpc_byte_buffer_length(reply) < (size_t)size) {
      fprintf(stderr, "call failed: status %d\n", status);
      return 1;
    }
    grpc_byte_buffer_destroy(bb);
    grpc_byte_buffer_destroy(reply);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&initial);
    grpc_metadata_array_destroy(&trailing);
    grpc_call_unref(call);
    if (i >= 0) lat[i] = now_s() - t0;
  }
  double total = now_s() - t_start;
  qsort(lat, calls, sizeof(double), cmp);
  printf("{\"impl\": \"c-core\", \"size_bytes\": %d, \"in_flight\": 1, \"calls\": %d, \"p50_us\": %.1f, \"p99_us\": %.1f, \"calls_per_s\": %.0f}\n",
         size, calls, lat[calls / 2] * 1e6, lat[calls * 99 / 100] * 1e6, calls / total);
  return 0;
}

int main(int argc, char **argv) {
  grpc_init();
  if (argc == 3 && !strcmp(argv[1], "server")) return serve(atoi(argv[2]));
  if (argc == 5 && !strcmp(argv[1], "client")) return client(argv[2], atoi(argv[3]), atoi(argv[4]));
  fprintf(stderr, "usage: c_core_echo server PORT | client ADDR SIZE CALLS\n");
  return 2;
}
