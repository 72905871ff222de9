// A measurement for issue 15, not part of divert: UDP with recvmmsg/sendmmsg, for Node
// through N-API and a libuv poll handle. npm run bench:batch-relay compiles it (cc) and
// runs relay.ts on it against the same relay on node:dgram, so that the gain a native
// batched UDP path could bring to divert is measured, not guessed. Loopback IPv4 only.
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <string.h>
#include <stdlib.h>
#include <errno.h>
#include <unistd.h>

#define BATCH 64
#define SLOT 4096

typedef struct {
  int fd;
  uv_poll_t poll;
  napi_env env;
  napi_ref cb;
  napi_ref resource;
  napi_async_context ctx;
  uint8_t *inbuf;
  int32_t *inmeta;
  struct mmsghdr msgs[BATCH];
  struct iovec iovs[BATCH];
  struct sockaddr_in addrs[BATCH];
  struct mmsghdr smsgs[BATCH];
  struct iovec siovs[BATCH];
  struct sockaddr_in saddrs[BATCH];
} sock_t;

#define CHECK(x) do { if ((x) != napi_ok) { napi_throw_error(env, NULL, #x); return NULL; } } while (0)

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 2; napi_value argv[2]; int32_t bport, cport;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &bport));
  CHECK(napi_get_value_int32(env, argv[1], &cport));
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int rcv = 4 << 20; setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001), .sin_port = htons(bport) };
  if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) { napi_throw_error(env, NULL, "bind"); return NULL; }
  if (cport) { a.sin_port = htons(cport); if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { napi_throw_error(env, NULL, "connect"); return NULL; } }
  sock_t *s = calloc(1, sizeof(sock_t)); s->fd = fd; s->env = env;
  napi_value ext; CHECK(napi_create_external(env, s, NULL, NULL, &ext));
  return ext;
}

static void on_readable(uv_poll_t *p, int status, int events) {
  sock_t *s = p->data;
  napi_env env = s->env;
  for (int round = 0; round < 8; round++) {
    for (int i = 0; i < BATCH; i++) {
      s->iovs[i].iov_base = s->inbuf + i * SLOT; s->iovs[i].iov_len = SLOT;
      s->msgs[i].msg_hdr.msg_iov = &s->iovs[i]; s->msgs[i].msg_hdr.msg_iovlen = 1;
      s->msgs[i].msg_hdr.msg_name = &s->addrs[i]; s->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
      s->msgs[i].msg_hdr.msg_control = NULL; s->msgs[i].msg_hdr.msg_controllen = 0; s->msgs[i].msg_hdr.msg_flags = 0;
    }
    int n = recvmmsg(s->fd, s->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return;
    for (int i = 0; i < n; i++) {
      s->inmeta[i * 3] = s->msgs[i].msg_len;
      s->inmeta[i * 3 + 1] = (int32_t)ntohl(s->addrs[i].sin_addr.s_addr);
      s->inmeta[i * 3 + 2] = ntohs(s->addrs[i].sin_port);
    }
    napi_handle_scope scope; napi_open_handle_scope(env, &scope);
    napi_value cb, resource, arg, result;
    napi_get_reference_value(env, s->cb, &cb);
    napi_get_reference_value(env, s->resource, &resource);
    napi_create_int32(env, n, &arg);
    napi_make_callback(env, s->ctx, resource, cb, 1, &arg, &result);
    napi_close_handle_scope(env, scope);
    if (n < BATCH) return;
  }
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 4; napi_value argv[4]; sock_t *s; void *data; size_t len;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_external(env, argv[0], (void **)&s));
  CHECK(napi_get_arraybuffer_info(env, argv[1], &data, &len)); s->inbuf = data;
  CHECK(napi_get_arraybuffer_info(env, argv[2], &data, &len)); s->inmeta = data;
  CHECK(napi_create_reference(env, argv[3], 1, &s->cb));
  napi_value obj, name; napi_create_object(env, &obj); napi_create_reference(env, obj, 1, &s->resource);
  napi_create_string_utf8(env, "udpbatch", NAPI_AUTO_LENGTH, &name);
  CHECK(napi_async_init(env, obj, name, &s->ctx));
  // keep the buffers alive
  napi_ref r; napi_create_reference(env, argv[1], 1, &r); napi_create_reference(env, argv[2], 1, &r);
  uv_loop_t *loop; CHECK(napi_get_uv_event_loop(env, &loop));
  uv_poll_init(loop, &s->poll, s->fd); s->poll.data = s;
  uv_poll_start(&s->poll, UV_READABLE, on_readable);
  return NULL;
}

// send(handle, arraybuffer, meta Int32Array buffer [off,len,addr,port]*, count)
static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 4; napi_value argv[4]; sock_t *s; void *buf, *meta; size_t len; int32_t n;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_external(env, argv[0], (void **)&s));
  CHECK(napi_get_arraybuffer_info(env, argv[1], &buf, &len));
  CHECK(napi_get_arraybuffer_info(env, argv[2], &meta, &len));
  CHECK(napi_get_value_int32(env, argv[3], &n));
  int32_t *m = meta; if (n > BATCH) n = BATCH;
  for (int i = 0; i < n; i++) {
    s->siovs[i].iov_base = (uint8_t *)buf + m[i * 4]; s->siovs[i].iov_len = m[i * 4 + 1];
    memset(&s->smsgs[i].msg_hdr, 0, sizeof(struct msghdr));
    s->smsgs[i].msg_hdr.msg_iov = &s->siovs[i]; s->smsgs[i].msg_hdr.msg_iovlen = 1;
    if (m[i * 4 + 3]) {
      s->saddrs[i].sin_family = AF_INET; s->saddrs[i].sin_addr.s_addr = htonl((uint32_t)m[i * 4 + 2]); s->saddrs[i].sin_port = htons(m[i * 4 + 3]);
      s->smsgs[i].msg_hdr.msg_name = &s->saddrs[i]; s->smsgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_in);
    }
  }
  int sent = 0;
  while (sent < n) { int k = sendmmsg(s->fd, s->smsgs + sent, n - sent, MSG_DONTWAIT); if (k <= 0) break; sent += k; }
  napi_value out; napi_create_int32(env, sent, &out); return out;
}

NAPI_MODULE_INIT() {
  napi_value f;
  napi_create_function(env, "open", NAPI_AUTO_LENGTH, js_open, NULL, &f); napi_set_named_property(env, exports, "open", f);
  napi_create_function(env, "start", NAPI_AUTO_LENGTH, js_start, NULL, &f); napi_set_named_property(env, exports, "start", f);
  napi_create_function(env, "send", NAPI_AUTO_LENGTH, js_send, NULL, &f); napi_set_named_property(env, exports, "send", f);
  return exports;
}
