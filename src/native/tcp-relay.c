// divert proxy's native TCP relay: accept, connect and the relaying of bytes both ways in C
// on libuv's loop, while JavaScript decides (src/proxy/native-tcp-service.ts is the only
// caller): which target a new connection goes to, when a connection is closed (onChange,
// limits), and what the connection table shows. Node's sockets cost a JavaScript object,
// stream machinery and a call into JavaScript per read on each side of each connection;
// here a read is one read(2) into a buffer shared by every connection and one send(2) of
// it. Bytes are kept only while the other side cannot take them (then that side is not
// read until they are sent: backpressure, one read's worth per direction at most). A FIN
// is passed on as a FIN once what came before it is sent (half-close), a reset as a reset.
// Plain TCP only: TLS either side and onChange move stay on node:net.
//
// The connections' sockets are registered once, edge-triggered, in an epoll set of this
// file's own, which libuv polls as one descriptor: libuv's uv_poll costs four epoll_ctl
// calls and an ioctl per socket (a check when the handle is made, a removal at every change
// of what it waits for and at its close); here a socket costs one epoll_ctl, and closing
// it removes it. What happened to connections reaches JavaScript in batches, one call per
// batch of events (see init).
//
//   init(onEvents, Float64Array(EVENTS * 5))    once per process: onEvents(n) reads n events
//       [type, id, a, b, tag]: (CONNECTED, id, µs) (FAILED, id, errno) (CLOSED, id, bytesIn,
//       bytesOut); CLOSED: the relay ended by itself (both sides closed, a reset, an error,
//       idleMs of silence); a connection closed through close() gets no event.
//   listen(host, port) -> listener   bound and listening (the primary, or a process alone)
//   adopt(fd) -> listener            one a primary opened, handed over as a descriptor
//   fd(listener), port(listener)
//   start(listener, onAccept, idleMs, wildcard, tag)
//       onAccept(id, address, port, localAddress, localPort) for each connection (the
//       local address only for a wildcard listener); onAccept(-errno) when accept fails
//       for want of descriptors or memory (the listener rests 100 ms)
//   connect(id, host, port, timeoutMs, header|null) -> 0, or the errno of a failure at once
//   close(id, reset) -> whether it was open     counters(id, Float64Array(3)) -> bool
//   source(id) -> [address, port] | null        stop(listener): closes its connections (reset)
#include "tcp-relay-core.h"

static void finalize_listener(napi_env env, void *data, void *hint) {
  listener_t *l = data;
  if (!l->started && l->fd >= 0) close(l->fd);
  l->finalized = 1;
  release_listener(l);
}

static listener_t *listener_of(napi_env env, napi_value v) {
  listener_t *l = NULL;
  if (napi_get_value_external(env, v, (void **)&l) != napi_ok) return NULL;
  return l;
}

static napi_value wrap_listener(napi_env env, int fd) {
  listener_t *l = calloc(1, sizeof *l);
  napi_value handle;
  if (!l || napi_create_external(env, l, finalize_listener, NULL, &handle) != napi_ok) {
    close(fd);
    free(l);
    napi_throw_error(env, NULL, "cannot make a listener handle");
    return NULL;
  }
  l->fd = fd;
  // Linux's accepted sockets inherit it: no setsockopt per connection
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return handle;
}

static napi_value js_init(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (set.fd >= 0) {
    napi_throw_error(env, NULL, "init: called already");
    return NULL;
  }
  napi_typedarray_type type;
  size_t length;
  void *data;
  CHECK(napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL));
  if (type != napi_float64_array || length < EVENTS * 5) {
    napi_throw_error(env, NULL, "init: expected a Float64Array of EVENTS * 5");
    return NULL;
  }
  uv_loop_t *loop;
  CHECK(napi_get_uv_event_loop(env, &loop));
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return throw_errno(env, "epoll_create1", errno);
  if (uv_poll_init(loop, &set.poll, fd) != 0) {
    close(fd);
    return throw_errno(env, "uv_poll_init", EINVAL);
  }
  set.fd = fd;
  set.loop = loop;
  set.env = env;
  set.events = data;
  CHECK(napi_create_reference(env, argv[1], 1, &set.array));
  CHECK(callback_init(env, argv[0], "divert.tcp-relay", &set.on_events));
  uv_idle_init(loop, &set.idle);
  uv_poll_start(&set.poll, UV_READABLE, on_set);
  // the set alone keeps no process alive: the listeners and timers do
  uv_unref((uv_handle_t *)&set.poll);
  uv_unref((uv_handle_t *)&set.idle);
  return NULL;
}

static napi_value js_listen(napi_env env, napi_callback_info info) {
  struct sockaddr_storage at;
  socklen_t atlen;
  int fd = socket_for(env, info, SOCK_STREAM, &at, &atlen);
  if (fd < 0) return NULL;
  int one = 1;
  // as node:net's listeners: a port whose last connections are in TIME_WAIT can be bound again
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&at, atlen) < 0 || listen(fd, BACKLOG) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "listen", err);
  }
  return wrap_listener(env, fd);
}

static napi_value js_adopt(napi_env env, napi_callback_info info) {
  char what[64];
  int32_t fd = descriptor_argument(env, info, what, sizeof what);
  if (fd < 0) return NULL;
  int listening = 0;
  socklen_t len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) < 0) return throw_errno(env, what, errno);
  if (!listening) {
    napi_throw_error(env, "ENOTSOCK", "adopt: not a listening socket");
    return NULL;
  }
  int err = take_descriptor(fd);
  if (err) return throw_errno(env, what, err);
  return wrap_listener(env, fd);
}

static napi_value js_start(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  listener_t *l = listener_of(env, argv[0]);
  if (!l || l->started || l->fd < 0 || set.fd < 0) {
    napi_throw_error(env, NULL, "not a listener, started already, or init not called");
    return NULL;
  }
  double idle;
  bool wildcard;
  CHECK(napi_get_value_double(env, argv[2], &idle));
  CHECK(napi_get_value_bool(env, argv[3], &wildcard));
  CHECK(napi_get_value_double(env, argv[4], &l->tag));
  CHECK(callback_init(env, argv[1], "divert.tcp-relay.accept", &l->on_accept));
  if (uv_poll_init(set.loop, &l->poll, l->fd) != 0) return throw_errno(env, "uv_poll_init", EINVAL);
  l->env = env;
  l->idle_ms = idle > 0 ? (uint64_t)idle : 0;
  l->wildcard = wildcard;
  l->poll.data = l;
  uv_timer_init(set.loop, &l->sweep);
  uv_timer_init(set.loop, &l->rest);
  l->sweep.data = l->rest.data = l;
  l->handles = 3;
  l->started = 1;
  uv_poll_start(&l->poll, UV_READABLE, on_accept);
  if (l->idle_ms > 0) {
    uint64_t every = l->idle_ms / 4 < 1000 ? (l->idle_ms / 4 ? l->idle_ms / 4 : 1) : 1000;
    uv_timer_start(&l->sweep, on_sweep, every, every);
    // the sweep alone does not keep the process alive
    uv_unref((uv_handle_t *)&l->sweep);
  }
  return NULL;
}

static napi_value js_connect(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], out;
  int32_t id, port;
  double timeout;
  char host[INET6_ADDRSTRLEN + 1];
  size_t hostlen, header_len = 0;
  void *header = NULL;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &id));
  CHECK(napi_get_value_string_utf8(env, argv[1], host, sizeof host, &hostlen));
  CHECK(napi_get_value_int32(env, argv[2], &port));
  CHECK(napi_get_value_double(env, argv[3], &timeout));
  bool is_buffer = false;
  if (argc > 4 && napi_is_buffer(env, argv[4], &is_buffer) == napi_ok && is_buffer)
    CHECK(napi_get_buffer_info(env, argv[4], &header, &header_len));
  conn_t *c = conn_of(id);
  if (!c || c->connecting || c->connected) return throw_errno(env, "connect", EBADF);
  struct sockaddr_storage at;
  socklen_t atlen = address_of(host, port, &at);
  side_t *t = &c->s[1];
  int err = 0;
  int fd = atlen ? socket(at.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
  if (atlen == 0) err = EINVAL;
  else if (fd < 0) err = errno;
  if (!err) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&at, atlen) < 0 && errno != EINPROGRESS) err = errno;
  }
  if (!err) {
    *t = (side_t){.c = c, .fd = fd, .can_write = 1};
    err = watch(t);
    if (err) t->fd = -1;
  }
  if (err) {
    if (fd >= 0) close(fd);
    CHECK(napi_create_int32(env, err, &out));
    return out;
  }
  if (header_len > 0 && (t->pending = malloc(header_len))) {
    memcpy(t->pending, header, header_len);
    t->plen = header_len;
  }
  c->connecting = 1;
  c->started = uv_hrtime();
  uv_timer_start(&c->timer, on_connect_timeout, timeout > 0 ? (uint64_t)timeout : 1, 0);
  CHECK(napi_create_int32(env, 0, &out));
  return out;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  int32_t id;
  bool reset = false;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &id));
  if (argc > 1) napi_get_value_bool(env, argv[1], &reset);
  conn_t *c = conn_of(id);
  if (c) finish(c, reset, 0);
  CHECK(napi_get_boolean(env, c != NULL, &out));
  return out;
}

static napi_value js_counters(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], out;
  int32_t id;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &id));
  napi_typedarray_type type;
  size_t length;
  void *data;
  CHECK(napi_get_typedarray_info(env, argv[1], &type, &length, &data, NULL, NULL));
  conn_t *c = conn_of(id);
  if (c && type == napi_float64_array && length >= 3) {
    double *d = data;
    d[0] = c->bytes[0];
    d[1] = c->bytes[1];
    // ms since the last byte either way (since connected, before any)
    d[2] = c->connected ? (double)(uv_now(set.loop) - c->last) : -1;
  }
  CHECK(napi_get_boolean(env, c != NULL, &out));
  return out;
}

static napi_value js_source(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out, address, port;
  int32_t id;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_get_value_int32(env, argv[0], &id));
  conn_t *c = conn_of(id);
  struct sockaddr_storage at;
  socklen_t len = sizeof at;
  if (!c || c->s[1].fd < 0 || getsockname(c->s[1].fd, (struct sockaddr *)&at, &len) < 0) {
    CHECK(napi_get_null(env, &out));
    return out;
  }
  address_values(env, &at, &address, &port);
  CHECK(napi_create_array_with_length(env, 2, &out));
  CHECK(napi_set_element(env, out, 0, address));
  CHECK(napi_set_element(env, out, 1, port));
  return out;
}

static void on_listener_closed(uv_handle_t *h) {
  listener_t *l = h->data;
  if (--l->handles == 0) {
    close(l->fd);
    l->fd = -1;
    release_listener(l);
  }
}

static napi_value js_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  listener_t *l = listener_of(env, argv[0]);
  if (!l || l->closing) return NULL;
  l->closing = 1;
  if (!l->started) {
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
    return NULL;
  }
  while (l->conns) finish(l->conns, 1, 0);
  callback_release(env, &l->on_accept);
  uv_close((uv_handle_t *)&l->poll, on_listener_closed);
  uv_close((uv_handle_t *)&l->sweep, on_listener_closed);
  uv_close((uv_handle_t *)&l->rest, on_listener_closed);
  return NULL;
}

NAPI_MODULE_INIT() {
  static const function_t fns[] = {{"init", js_init},         {"listen", js_listen}, {"adopt", js_adopt},       {"fd", js_handle_fd},
                                   {"port", js_handle_port},         {"start", js_start},   {"connect", js_connect},   {"close", js_close},
                                   {"counters", js_counters}, {"source", js_source}, {"stop", js_stop}};
  export_functions(env, exports, fns, sizeof fns / sizeof fns[0]);
  export_int(env, exports, "CONNECTED", CONNECTED);
  export_int(env, exports, "FAILED", FAILED);
  export_int(env, exports, "CLOSED", CLOSED);
  export_int(env, exports, "EVENTS", EVENTS);
  return exports;
}
