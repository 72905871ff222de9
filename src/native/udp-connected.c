// divert's connected UDP sockets towards the upstreams (--udp-batch): each socket of an
// upstream's pool (src/upstream/udp-exchange.ts) is connect()ed to the upstream, as with
// node:dgram, but polled here with libuv: a readable socket is read with one recvmmsg
// (node:dgram reads until EAGAIN: two recvmsg calls for one reply), and the replies read
// from every socket in one turn of the event loop are handed to JavaScript in one call,
// from a uv_check handle, instead of one call per datagram. A turn's queries to one socket
// go out with one sendmmsg (sendBatch). N-API and libuv only, as udp-batch.c.
// src/transport/connected-udp.ts is the only caller; what it hands in is sized by it:
//   data:  CAP x SLOT bytes, reply i at i x SLOT
//   meta:  CAP x 2 int32: socket id, length (< 0: minus the errno the socket reported)
#include "native.h"
#include <stdlib.h>
#include <unistd.h>

/** Replies gathered before they are handed over (sooner, if this many come in one turn). */
#define CAP 64
/** A UDP datagram's largest payload fits: a reply is never cut short. */
#define SLOT 65536
/** Reads per readable event before the next socket gets its turn. */
#define ROUNDS 4

typedef struct conn conn_t;

typedef struct {
  napi_env env;
  napi_ref data_ref, meta_ref;
  /** onReplies(count) */
  callback_t on_replies;
  uint8_t *data;
  int32_t *meta;
  int count;
  uv_check_t check;
  /** Sockets by id; a closed socket's id is reused once libuv has let go of it. */
  conn_t **conns;
  int capacity, hint;
  struct mmsghdr msgs[CAP];
  struct iovec iovs[CAP];
  /** sendBatch's messages (CAP at most per call). */
  struct mmsghdr send_msgs[CAP];
  struct iovec send_iovs[CAP];
} group_t;

struct conn {
  group_t *g;
  int id, fd, closing;
  uv_poll_t poll;
};

static group_t *group_of(napi_env env, napi_value v) {
  group_t *g = NULL;
  if (napi_get_value_external(env, v, (void **)&g) != napi_ok) return NULL;
  return g;
}

/** The open socket that JavaScript's (group, id) arguments name, or NULL. */
static conn_t *conn_of(napi_env env, napi_value group, napi_value id) {
  group_t *g = group_of(env, group);
  int32_t i;
  if (!g || napi_get_value_int32(env, id, &i) != napi_ok || i < 0 || i >= g->capacity) return NULL;
  conn_t *c = g->conns[i];
  return c && !c->closing ? c : NULL;
}

/** Hands the replies gathered so far to JavaScript; its microtasks run before this returns. */
static void deliver(group_t *g) {
  if (g->count == 0) return;
  int count = g->count;
  g->count = 0;
  callback_count(g->env, &g->on_replies, count);
}

static void on_check(uv_check_t *h) { deliver(h->data); }

static void on_readable(uv_poll_t *p, int status, int events) {
  (void)status, (void)events; // an error status shows up again as recvmmsg's errno
  conn_t *c = p->data;
  group_t *g = c->g;
  for (int round = 0; round < ROUNDS && !c->closing; round++) {
    if (g->count == CAP) deliver(g);
    if (c->closing) return; // closed by what the delivery ran
    int room = CAP - g->count;
    for (int i = 0; i < room; i++) {
      set_message(&g->msgs[i], &g->iovs[i], g->data + (size_t)(g->count + i) * SLOT, SLOT, NULL, 0);
    }
    int n = recvmmsg(c->fd, g->msgs, room, MSG_DONTWAIT, NULL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
      // an ICMP error on the connected socket (ECONNREFUSED): what is in flight on it fails
      int32_t *m = g->meta + g->count * 2;
      m[0] = c->id;
      m[1] = -errno;
      g->count++;
      return;
    }
    for (int i = 0; i < n; i++) {
      int32_t *m = g->meta + (g->count + i) * 2;
      m[0] = c->id;
      m[1] = (int32_t)g->msgs[i].msg_len;
    }
    g->count += n;
    if (n < room) return;
  }
}

// group(data, meta, onReplies(count), capacity) -> handle. One per process: every upstream
// socket of every forwarder reads into it.
static napi_value js_group(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], handle;
  int32_t capacity;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  size_t data_bytes = 0, meta_bytes = 0;
  uint8_t *data = array_of(env, argv[0], napi_uint8_array, &data_bytes);
  int32_t *meta = array_of(env, argv[1], napi_int32_array, &meta_bytes);
  CHECK(napi_get_value_int32(env, argv[3], &capacity));
  if (!data || !meta || data_bytes < (size_t)CAP * SLOT || meta_bytes < (size_t)CAP * 2 * 4 || capacity < 1) {
    napi_throw_error(env, NULL, "group: buffers smaller than a batch, or no capacity");
    return NULL;
  }
  group_t *g = calloc(1, sizeof(group_t));
  conn_t **conns = calloc((size_t)capacity, sizeof(conn_t *));
  if (!g || !conns) {
    free(g);
    free(conns);
    napi_throw_error(env, NULL, "group: out of memory");
    return NULL;
  }
  g->conns = conns;
  g->env = env;
  g->data = data;
  g->meta = meta;
  g->capacity = capacity;
  // the group lives as long as the process: nothing here is ever released
  CHECK(napi_create_reference(env, argv[0], 1, &g->data_ref));
  CHECK(napi_create_reference(env, argv[1], 1, &g->meta_ref));
  CHECK(callback_init(env, argv[2], "divert.udp-connected", &g->on_replies));
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  uv_check_init(loop, &g->check);
  g->check.data = g;
  uv_check_start(&g->check, on_check);
  uv_unref((uv_handle_t *)&g->check);
  CHECK(napi_create_external(env, g, NULL, NULL, &handle));
  return handle;
}

// connect(group, host, port, recvBufferBytes) -> id. The kernel picks the local port at
// random (as for node:dgram's connect); only datagrams from host:port reach the socket.
static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], out;
  char host[INET6_ADDRSTRLEN + 1];
  size_t hostlen;
  int32_t port, rcvbuf;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  group_t *g = group_of(env, argv[0]);
  CHECK(napi_get_value_string_utf8(env, argv[1], host, sizeof host, &hostlen));
  CHECK(napi_get_value_int32(env, argv[2], &port));
  CHECK(napi_get_value_int32(env, argv[3], &rcvbuf));
  if (!g) {
    napi_throw_error(env, NULL, "connect: not a group");
    return NULL;
  }
  // the next free id after the last one given: a scan only when the ids wrap around
  int id = -1;
  for (int k = 0; k < g->capacity; k++) {
    int i = (g->hint + k) % g->capacity;
    if (!g->conns[i]) {
      id = i;
      g->hint = i + 1;
      break;
    }
  }
  if (id < 0) return throw_errno(env, "connect", EMFILE);
  struct sockaddr_storage at;
  socklen_t atlen = address_of(host, port, &at);
  if (atlen == 0) return throw_errno(env, "connect", EINVAL);
  int fd = socket(at.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  if (connect(fd, (struct sockaddr *)&at, atlen) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "connect", err);
  }
  conn_t *c = calloc(1, sizeof(conn_t));
  uv_loop_t *loop;
  if (!c || napi_get_uv_event_loop(env, &loop) != napi_ok || uv_poll_init(loop, &c->poll, fd) != 0) {
    free(c);
    close(fd);
    return throw_errno(env, "uv_poll_init", ENOMEM);
  }
  c->g = g;
  c->id = id;
  c->fd = fd;
  c->poll.data = c;
  g->conns[id] = c;
  uv_poll_start(&c->poll, UV_READABLE, on_readable);
  // as node:dgram's unref(): a socket waiting for replies does not keep the process alive
  uv_unref((uv_handle_t *)&c->poll);
  CHECK(napi_create_int32(env, id, &out));
  return out;
}

// sendBatch(group, id, data, lengths, count) -> how many were sent (from the first), or
// minus the errno when not even the first was (the socket's pending ICMP error, a full
// buffer). Message i is lengths[i] bytes of data, right after message i - 1: the queries of
// one turn of the event loop that went to this socket, sent with one sendmmsg.
static napi_value js_send_batch(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], out;
  int32_t count;
  size_t bytes = 0, lengths_bytes = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  conn_t *c = conn_of(env, argv[0], argv[1]);
  uint8_t *data = array_of(env, argv[2], napi_uint8_array, &bytes);
  int32_t *lengths = array_of(env, argv[3], napi_int32_array, &lengths_bytes);
  CHECK(napi_get_value_int32(env, argv[4], &count));
  int result = -EBADF;
  if (c && data && lengths && count > 0 && count <= CAP && (size_t)count * 4 <= lengths_bytes) {
    group_t *g = c->g;
    size_t at = 0;
    int ok = 1;
    for (int i = 0; i < count && ok; i++) {
      if (lengths[i] < 0 || at + (size_t)lengths[i] > bytes) ok = 0;
      else set_message(&g->send_msgs[i], &g->send_iovs[i], data + at, (size_t)lengths[i], NULL, 0);
      at += (size_t)lengths[i];
    }
    if (ok) {
      int sent = 0;
      while (sent < count) {
        int k = sendmmsg(c->fd, g->send_msgs + sent, (unsigned)(count - sent), MSG_DONTWAIT);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
          if (sent == 0) sent = k < 0 ? -errno : -EAGAIN;
          break;
        }
        sent += k;
      }
      result = sent;
    }
  }
  CHECK(napi_create_int32(env, result, &out));
  return out;
}

static napi_value js_port(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  conn_t *c = conn_of(env, argv[0], argv[1]);
  return local_port(env, c ? c->fd : -1);
}

static void on_closed(uv_handle_t *h) {
  conn_t *c = h->data;
  close(c->fd);
  c->g->conns[c->id] = NULL;
  free(c);
}

// close(group, id): no more reading; replies read and not yet handed over are dropped (the
// id may soon name another socket). The fd closes once libuv lets go of the poll handle.
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  conn_t *c = conn_of(env, argv[0], argv[1]);
  if (!c) return NULL;
  c->closing = 1;
  group_t *g = c->g;
  for (int i = 0; i < g->count; i++)
    if (g->meta[i * 2] == c->id) g->meta[i * 2] = -1;
  uv_poll_stop(&c->poll);
  uv_close((uv_handle_t *)&c->poll, on_closed);
  return NULL;
}

NAPI_MODULE_INIT() {
  static const function_t fns[] = {{"group", js_group}, {"connect", js_connect}, {"sendBatch", js_send_batch}, {"port", js_port}, {"close", js_close}};
  export_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
  export_int(env, exports, "CAP", CAP);
  export_int(env, exports, "SLOT", SLOT);
  return exports;
}
