// divert's batched UDP socket (--udp-batch): recvmmsg and sendmmsg on a socket polled by
// libuv, so that one call into JavaScript takes up to BATCH datagrams and one system call
// sends up to BATCH replies; node:dgram costs a call into JavaScript and a system call per
// datagram each way (bench/batch-relay measured 29k against 95k queries/s). N-API and
// libuv only, reached through napi_get_uv_event_loop: one build works on any Node >= 20.
// src/transport/udp-batch.ts is the only caller; what it hands in is sized by it:
//   in:    BATCH x SLOT bytes, datagram i at i x SLOT
//   meta:  BATCH x 4 int32: length (-1: truncated), source port, address text length, name length
//   names: BATCH x NAME bytes, the source's sockaddr (what a reply is sent to)
//   text:  BATCH x TEXT bytes, the source address as inet_ntop writes it
// With --workers the primary opens the socket (open, never started there) and every
// worker takes the same one over by its descriptor (adopt): one socket, read by the first
// worker always and by the others while it falls behind (spill, udp-spill.h), so a
// stalled worker strands no client for longer than a spill reader takes to come back.
#include "native.h"
#include "udp-spill.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#define BATCH 64
#define SLOT 4096
#define NAME 32
#define TEXT 48
/** Batches read per readable event before libuv gets the loop back: other sockets and timers must not starve. */
#define ROUNDS 8
/** Replies kept while the send buffer is full, sent when it has room; beyond them a reply is dropped. */
#define PENDING (4 * BATCH)

/** A reply that found the send buffer full: its own copy, sent when the socket is writable. */
typedef struct {
  uint8_t *data;
  size_t length;
  struct sockaddr_storage to;
  socklen_t tolen;
} pending_t;

typedef struct {
  /** First: js_handle_fd and js_handle_port read it (native.h). */
  int fd;
  uv_poll_t poll;
  napi_env env;
  napi_ref in_ref, meta_ref, names_ref, text_ref;
  /** onBatch(count) */
  callback_t on_batch;
  uint8_t *in, *names, *text;
  int32_t *meta;
  int started, closing, finalized;
  /** What the poll handle watches: UV_READABLE, or UV_WRITABLE alone while replies wait. */
  int events;
  struct mmsghdr msgs[BATCH];
  struct iovec iovs[BATCH];
  /** The replies waiting for room, oldest at head; `lost`: those of them the OS refused since the last send call. */
  pending_t pending[PENDING];
  int head, waiting, lost;
  /** 1 once the read registration was made exclusive (or tried: at most once per registration). */
  int exclusive;
  /** libuv handles of this socket not yet closed (the poll handle, the spill timer). */
  int handles;
  /** spill(): not the socket's first reader (udp-spill.h). */
  int spill;
  spill_t spilling;
} sock_t;

/** Frees the replies still waiting; how many there were. */
static int drop_pending(sock_t *s) {
  int dropped = s->waiting;
  for (; s->waiting > 0; s->waiting--, s->head = (s->head + 1) % PENDING) free(s->pending[s->head].data);
  return dropped;
}

/** The socket's memory goes when both the JavaScript handle is collected and libuv is done with the poll handle. */
static void release(sock_t *s) {
  if (!s->finalized || s->handles > 0) return;
  drop_pending(s);
  free(s);
}

static void finalize(napi_env env, void *data, void *hint) {
  sock_t *s = data;
  // never started, or started and never stopped (the handle is then held by the callback, so not collected)
  if (!s->started && s->fd >= 0) close(s->fd);
  s->finalized = 1;
  release(s);
}

static sock_t *handle_of(napi_env env, napi_value v) {
  sock_t *s = NULL;
  napi_get_value_external(env, v, (void **)&s);
  return s;
}

/** The handle JavaScript holds for a socket `fd`; the fd is closed if none can be made. */
static napi_value wrap(napi_env env, int fd) {
  sock_t *s = calloc(1, sizeof(sock_t));
  napi_value handle;
  if (!s || napi_create_external(env, s, finalize, NULL, &handle) != napi_ok) {
    close(fd);
    free(s);
    napi_throw_error(env, NULL, "cannot make a socket handle");
    return NULL;
  }
  s->fd = fd;
  s->env = env;
  return handle;
}

// open(host, port) -> handle. An IPv6 socket takes IPv6 only, as node:dgram's listener is
// opened (ipv6Only). No SO_REUSEPORT: a second socket on the port would take a share of
// the clients, and workers share this one instead (adopt).
static napi_value js_open(napi_env env, napi_callback_info info) {
  struct sockaddr_storage at;
  socklen_t atlen;
  int fd = socket_for(env, info, SOCK_DGRAM, &at, &atlen);
  if (fd < 0) return NULL;
  int size = 4 << 20;
  // larger buffers ride out bursts both ways (a datagram sent holds its share of the send
  // buffer until the client reads it); the system limit may be lower, and the default still works
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  if (bind(fd, (struct sockaddr *)&at, atlen) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind", err);
  }
  return wrap(env, fd);
}

// adopt(fd) -> handle: a socket opened by another process (the primary, handed over as
// one of this process's descriptors), to poll here like one of its own. It must be a
// bound IPv4 or IPv6 datagram socket; anything else is refused with a message naming it.
static napi_value js_adopt(napi_env env, napi_callback_info info) {
  char what[64];
  int32_t fd = descriptor_argument(env, info, what, sizeof what);
  if (fd < 0) return NULL;
  int type = 0, domain = 0;
  socklen_t len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0) return throw_errno(env, what, errno);
  len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0) return throw_errno(env, what, errno);
  if (type != SOCK_DGRAM || (domain != AF_INET && domain != AF_INET6)) {
    char message[160];
    snprintf(message, sizeof message, "%s is not a UDP socket (SO_TYPE %d, SO_DOMAIN %d)", what, type, domain);
    napi_throw_error(env, "ENOTSOCK", message);
    return NULL;
  }
  int err = take_descriptor(fd);
  if (err) return throw_errno(env, what, err);
  return wrap(env, fd);
}

/** Sends the waiting replies, oldest first, until none is left or the send buffer is full
 * again. One the OS refuses is dropped and counted in `lost`, for the next send call to report. */
static void send_pending(sock_t *s) {
  struct mmsghdr msgs[BATCH];
  struct iovec iovs[BATCH];
  while (s->waiting > 0) {
    int n = 0;
    for (; n < BATCH && n < s->waiting; n++) {
      pending_t *q = &s->pending[(s->head + n) % PENDING];
      set_message(&msgs[n], &iovs[n], q->data, q->length, &q->to, q->tolen);
    }
    int k = sendmmsg(s->fd, msgs, n, MSG_DONTWAIT);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (k <= 0) {
      // the first of them is refused (its destination): it goes, the rest are tried again
      k = 1;
      s->lost++;
    }
    for (int i = 0; i < k; i++, s->waiting--, s->head = (s->head + 1) % PENDING) free(s->pending[s->head].data);
  }
}

static void on_event(uv_poll_t *p, int status, int events);

/** Reading while no reply waits; while some do, only waiting for room to send them. Reading
 * then would only make replies with no room to go: the queries wait in the receive buffer
 * instead (the kernel drops what exceeds it), or are read by another worker. A spill reader
 * away from the socket watches nothing while no reply waits. */
static void watch(sock_t *s) {
  int want = s->waiting > 0 ? UV_WRITABLE : s->spilling.away ? 0 : UV_READABLE;
  if (!s->started || s->closing || want == s->events) return;
  s->events = want;
  if (s->exclusive || want == 0) {
    // an exclusive registration cannot be modified: deleted (stop) and added anew (start)
    uv_poll_stop(&s->poll);
    s->exclusive = 0;
  }
  if (want) uv_poll_start(&s->poll, want, on_event);
}

/** udp-spill.h's word that the socket is to be read, or left, from now. */
static void rewatch(void *owner) {
  watch(owner);
}

/** Keeps copies of `n` replies that found the send buffer full; how many did not fit (or
 * cannot wait: a socket not polled never hears it is writable). */
static int keep(sock_t *s, struct mmsghdr *msgs, int n) {
  int dropped = 0;
  for (int i = 0; i < n; i++) {
    struct msghdr *h = &msgs[i].msg_hdr;
    pending_t *q = &s->pending[(s->head + s->waiting) % PENDING];
    if (s->waiting == PENDING || !s->started || !(q->data = malloc(h->msg_iov->iov_len ? h->msg_iov->iov_len : 1))) {
      dropped++;
      continue;
    }
    memcpy(q->data, h->msg_iov->iov_base, h->msg_iov->iov_len);
    q->length = h->msg_iov->iov_len;
    memcpy(&q->to, h->msg_name, h->msg_namelen);
    q->tolen = h->msg_namelen;
    s->waiting++;
  }
  watch(s);
  return dropped;
}

static void on_event(uv_poll_t *p, int status, int events) {
  sock_t *s = p->data;
  napi_env env = s->env;
  if (status < 0) return;
  if (events & UV_WRITABLE) {
    send_pending(s);
    watch(s);
    return;
  }
  if (!s->exclusive) {
    s->exclusive = 1;
    make_exclusive(s->poll.loop, s->fd, NULL);
  }
  for (int round = 0; round < ROUNDS && !s->closing && s->waiting == 0; round++) {
    for (int i = 0; i < BATCH; i++) {
      set_message(&s->msgs[i], &s->iovs[i], s->in + i * SLOT, SLOT, s->names + i * NAME, NAME);
    }
    int n = recvmmsg(s->fd, s->msgs, BATCH, MSG_DONTWAIT, NULL);
    if (n <= 0) return;
    if (s->spill) spill_read(&s->spilling, n);
    for (int i = 0; i < n; i++) {
      struct sockaddr *from = (struct sockaddr *)(s->names + i * NAME);
      char *text = (char *)s->text + i * TEXT;
      int32_t *m = s->meta + i * 4;
      // a datagram larger than the slot arrives cut short: not a query to answer
      m[0] = (s->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? -1 : (int32_t)s->msgs[i].msg_len;
      if (from->sa_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)from;
        m[1] = ntohs(a->sin_port);
        inet_ntop(AF_INET, &a->sin_addr, text, TEXT);
      } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)from;
        m[1] = ntohs(a->sin6_port);
        inet_ntop(AF_INET6, &a->sin6_addr, text, TEXT);
      }
      m[2] = (int32_t)strlen(text);
      m[3] = (int32_t)s->msgs[i].msg_hdr.msg_namelen;
    }
    // the microtasks (promise replies, the flush) run before it returns
    callback_count(env, &s->on_batch, n);
    if (n < BATCH) return;
  }
}

/** A pid argument: a positive whole number, or 0 (not known) for anything else. */
static int pid_of(napi_env env, napi_value v) {
  int32_t pid = 0;
  if (napi_get_value_int32(env, v, &pid) != napi_ok || pid < 0) pid = 0;
  return pid;
}

// spill(handle, firstPid): this process is not the socket's first reader (a worker other
// than the first, which reads it always, and is process firstPid: 0 when not known): it
// reads only while the first falls behind (udp-spill.h). Called again: the first reader is
// another process from now (a restarted one).
static napi_value js_spill(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = argc >= 2 ? handle_of(env, argv[0]) : NULL;
  if (!s || !s->started || s->closing) {
    napi_throw_error(env, NULL, "spill: not a started socket");
    return NULL;
  }
  if (!s->spill) {
    s->handles++;
    s->spill = 1;
    spill_start(&s->spilling, s->poll.loop, s->fd, rewatch, s);
  }
  spill_peer(&s->spilling, pid_of(env, argv[1]));
  return NULL;
}

// spilled(handle) -> [joins, leaves, away, firstBusy]: how often a spill reader came back
// to the socket and left it, whether it is away now, and the first reader's CPU share as
// it last weighed it (per mille; -1 when it does not know the first reader).
static napi_value js_spilled(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, v;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = handle_of(env, argv[0]);
  int on = s && s->spill;
  int32_t values[4] = {on ? (int32_t)s->spilling.joins : 0, on ? (int32_t)s->spilling.leaves : 0, on ? s->spilling.away : 0,
                       on ? s->spilling.peer_busy : -1};
  CHECK(napi_create_array_with_length(env, 4, &out));
  for (uint32_t i = 0; i < 4; i++) {
    CHECK(napi_create_int32(env, values[i], &v));
    CHECK(napi_set_element(env, out, i, v));
  }
  return out;
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = handle_of(env, argv[0]);
  if (!s || s->started) {
    napi_throw_error(env, NULL, "not a socket, or started already");
    return NULL;
  }
  // written from C on every batch: each must hold a whole batch, or the socket is not started
  size_t in_bytes = 0, meta_bytes = 0, names_bytes = 0, text_bytes = 0;
  s->in = array_of(env, argv[1], napi_uint8_array, &in_bytes);
  s->meta = array_of(env, argv[2], napi_int32_array, &meta_bytes);
  s->names = array_of(env, argv[3], napi_uint8_array, &names_bytes);
  s->text = array_of(env, argv[4], napi_uint8_array, &text_bytes);
  if (!s->in || !s->meta || !s->names || !s->text || in_bytes < (size_t)BATCH * SLOT || meta_bytes < (size_t)BATCH * 4 * 4 ||
      names_bytes < (size_t)BATCH * NAME || text_bytes < (size_t)BATCH * TEXT) {
    napi_throw_error(env, NULL, "start: buffers smaller than a batch");
    return NULL;
  }
  // the arrays are written from C between calls: they must outlive the socket's polling
  CHECK(napi_create_reference(env, argv[1], 1, &s->in_ref));
  CHECK(napi_create_reference(env, argv[2], 1, &s->meta_ref));
  CHECK(napi_create_reference(env, argv[3], 1, &s->names_ref));
  CHECK(napi_create_reference(env, argv[4], 1, &s->text_ref));
  CHECK(callback_init(env, argv[5], "divert.udp-batch", &s->on_batch));
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  if (uv_poll_init(loop, &s->poll, s->fd) != 0) return throw_errno(env, "uv_poll_init", EINVAL);
  s->poll.data = s;
  s->handles++;
  s->started = 1;
  s->events = UV_READABLE;
  uv_poll_start(&s->poll, UV_READABLE, on_event);
  return NULL;
}

// send(handle, data, meta [offset, length, name index]*, names, count) -> how many failed.
// One failing reply (the OS refuses its destination) is skipped and the rest still go.
// Replies that find the send buffer full wait (keep) and go when it has room, after those
// already waiting; the event loop is never held up for them.
static napi_value js_send(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], out;
  size_t data_bytes = 0, meta_bytes = 0, names_bytes = 0;
  int32_t n, failed = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = handle_of(env, argv[0]);
  uint8_t *data = array_of(env, argv[1], napi_uint8_array, &data_bytes);
  int32_t *meta = array_of(env, argv[2], napi_int32_array, &meta_bytes);
  uint8_t *names = array_of(env, argv[3], napi_uint8_array, &names_bytes);
  CHECK(napi_get_value_int32(env, argv[4], &n));
  if (!data || !meta || !names) {
    napi_throw_error(env, NULL, "send: expected Uint8Array, Int32Array, Uint8Array");
    return NULL;
  }
  if (n > BATCH) n = BATCH;
  if (n < 0) n = 0;
  if ((size_t)n * 3 * 4 > meta_bytes) n = (int32_t)(meta_bytes / 12);
  if (!s || s->closing) {
    // closed: nothing goes out any more, and each reply counts as failed
    CHECK(napi_create_int32(env, n, &out));
    return out;
  }
  struct mmsghdr msgs[BATCH];
  struct iovec iovs[BATCH];
  int32_t *m = meta;
  int kept = 0;
  for (int i = 0; i < n; i++) {
    // every offset, length and name index is checked against the arrays it points into: a
    // bug on the JavaScript side costs that reply (counted as failed), never memory
    int32_t off = m[i * 3], length = m[i * 3 + 1], name = m[i * 3 + 2];
    if (off < 0 || length < 0 || (size_t)off + (size_t)length > data_bytes || name < 0 || (size_t)(name + 1) * NAME > names_bytes) {
      failed++;
      continue;
    }
    struct sockaddr *to = (struct sockaddr *)(names + (size_t)name * NAME);
    if (to->sa_family != AF_INET && to->sa_family != AF_INET6) {
      failed++;
      continue;
    }
    socklen_t tolen = to->sa_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    set_message(&msgs[kept], &iovs[kept], data + off, length, to, tolen);
    kept++;
  }
  n = kept;
  int sent = 0;
  // the ones waiting go first; while some still wait, these wait behind them
  if (s->waiting > 0) send_pending(s);
  while (sent < n && s->waiting == 0) {
    int k = sendmmsg(s->fd, msgs + sent, n - sent, MSG_DONTWAIT);
    if (k > 0) {
      sent += k;
    } else if (k < 0 && errno == EINTR) {
      continue;
    } else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      // the first of the rest failed (the OS refuses its destination): skip it
      failed++;
      sent++;
    }
  }
  if (sent < n) failed += keep(s, msgs + sent, n - sent);
  if (s->waiting == 0) watch(s);
  failed += s->lost;
  s->lost = 0;
  CHECK(napi_create_int32(env, failed, &out));
  return out;
}

static void on_closed(uv_handle_t *h) {
  sock_t *s = h->data; // the spill timer's too (spill_start)
  if (h == (uv_handle_t *)&s->poll) close(s->fd);
  s->handles--;
  release(s);
}

// stop(handle) -> how many replies were still waiting for room (they are dropped): no
// more reading; the fd closes once libuv lets go of the poll handle.
static napi_value js_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  sock_t *s = handle_of(env, argv[0]);
  if (!s || s->closing) return NULL;
  s->closing = 1;
  int32_t dropped = drop_pending(s) + s->lost;
  s->lost = 0;
  CHECK(napi_create_int32(env, dropped, &out));
  if (!s->started) {
    close(s->fd);
    s->fd = -1;
    return out;
  }
  uv_poll_stop(&s->poll);
  if (s->spill) spill_close(&s->spilling, on_closed);
  napi_ref refs[] = {s->in_ref, s->meta_ref, s->names_ref, s->text_ref};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++) napi_delete_reference(env, refs[i]);
  callback_release(env, &s->on_batch);
  uv_close((uv_handle_t *)&s->poll, on_closed);
  return out;
}

NAPI_MODULE_INIT() {
  static const function_t fns[] = {{"open", js_open}, {"adopt", js_adopt}, {"fd", js_handle_fd}, {"port", js_handle_port}, {"start", js_start}, {"send", js_send}, {"stop", js_stop}, {"spill", js_spill}, {"spilled", js_spilled}};
  export_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
  export_int(env, exports, "BATCH", BATCH);
  export_int(env, exports, "SLOT", SLOT);
  export_int(env, exports, "NAME", NAME);
  export_int(env, exports, "TEXT", TEXT);
  return exports;
}
