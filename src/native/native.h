// What divert's addons (udp-batch.c, udp-connected.c, tcp-relay.c) share: N-API error handling,
// typed arrays handed in from JavaScript, and socket addresses. Each addon is compiled on
// its own (src/native/build.ts), so everything here is static.
#ifndef DIVERT_NATIVE_H
#define DIVERT_NATIVE_H
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define CHECK(x)                                 \
  do {                                           \
    if ((x) != napi_ok) {                        \
      napi_throw_error(env, NULL, #x " failed"); \
      return NULL;                               \
    }                                            \
  } while (0)

/** An OS error as Node gives one (err.code 'EADDRINUSE'), so failures read the same as on node:dgram. */
static inline napi_value throw_errno(napi_env env, const char *what, int err) {
  const char *code = uv_err_name(uv_translate_sys_error(err));
  char message[160];
  snprintf(message, sizeof message, "%s %s: %s", what, code, strerror(err));
  napi_throw_error(env, code, message);
  return NULL;
}

/** A typed array's memory and its size in bytes, if it is of `want` (Uint8Array or Int32Array); NULL otherwise. */
static inline void *array_of(napi_env env, napi_value v, napi_typedarray_type want, size_t *bytes) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok || type != want) return NULL;
  *bytes = length * (want == napi_int32_array ? 4 : 1);
  return data;
}

/** host (an IPv4 or IPv6 address, as text) and port as a sockaddr; 0 when host is neither. */
static inline socklen_t address_of(const char *host, int port, struct sockaddr_storage *at) {
  memset(at, 0, sizeof *at);
  struct sockaddr_in *a4 = (struct sockaddr_in *)at;
  struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)at;
  if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    return sizeof *a4;
  }
  if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    return sizeof *a6;
  }
  return 0;
}

/** Points message m at one buffer (its iovec `iov`) and, when name is not NULL, an address:
 * what recvmmsg fills and sendmmsg sends, one datagram each. */
static inline void set_message(struct mmsghdr *m, struct iovec *iov, void *base, size_t length, void *name, socklen_t namelen) {
  iov->iov_base = base;
  iov->iov_len = length;
  memset(&m->msg_hdr, 0, sizeof m->msg_hdr);
  m->msg_hdr.msg_iov = iov;
  m->msg_hdr.msg_iovlen = 1;
  m->msg_hdr.msg_name = name;
  m->msg_hdr.msg_namelen = namelen;
}

/** The local port of socket fd, as a JavaScript number (throws the OS's error). */
static inline napi_value local_port(napi_env env, int fd) {
  struct sockaddr_storage at;
  socklen_t len = sizeof at;
  napi_value out;
  if (fd < 0 || getsockname(fd, (struct sockaddr *)&at, &len) < 0) return throw_errno(env, "getsockname", fd < 0 ? EBADF : errno);
  int port = at.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&at)->sin_port) : ntohs(((struct sockaddr_in6 *)&at)->sin6_port);
  CHECK(napi_create_int32(env, port, &out));
  return out;
}

/** The registration of `fd` in the loop's epoll made again, exclusive, with libuv's `data`
 * (read by make_exclusive); as a new registration it goes to the back of the socket's wait
 * queue. The kernel wakes the first idle waiter in that queue's order, so a worker that
 * goes to the back after taking connections lets the next ones wake another idle worker
 * first: connections alternate between idle workers instead of all going to the one
 * registered first, which matters when they are long-lived (each stays with the worker
 * that accepted it). 0 when it could not be made exclusive (it is then the plain one libuv
 * made, or none when even the delete failed, as for a handle libuv has stopped). */
static inline int requeue_exclusive(uv_loop_t *loop, int fd, uint64_t data) {
  int epfd = uv_backend_fd(loop);
  struct epoll_event e = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.u64 = data};
  if (epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &e) != 0) return 0;
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) == 0) return 1;
  e.events = EPOLLIN;
  epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e);
  return 0;
}

/** Workers share a socket (a datagram socket, a TCP listener), and libuv registers it in
 * each worker's epoll without EPOLLEXCLUSIVE: every datagram or connection would wake every
 * idle worker, and all but one would find nothing to read (CPU and, on a busy machine,
 * latency). Once libuv has registered it (at the first readable event), the registration
 * is replaced by the same one with EPOLLEXCLUSIVE: the kernel then wakes one worker waiting
 * in epoll_wait, and passes a busy one over for an idle one. The events and data libuv gave
 * it are read back from /proc/self/fdinfo and kept as they were, so libuv's bookkeeping
 * still matches. An exclusive registration cannot be modified (EPOLL_CTL_MOD fails), so a
 * caller that changes what it polls for stops and restarts the handle instead, and makes
 * the next registration exclusive again. Where any step fails (no /proc, an old kernel) the
 * registration stays as libuv made it and 0 is returned; 1 when it is exclusive now, with
 * libuv's data for it in *data_out (for requeue_exclusive). */
static inline int make_exclusive(uv_loop_t *loop, int fd, uint64_t *data_out) {
  int epfd = uv_backend_fd(loop);
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/self/fdinfo/%d", epfd);
  FILE *f = fopen(path, "re");
  if (!f) return 0;
  unsigned int events = 0;
  unsigned long long data = 0;
  int found = 0;
  while (!found && fgets(line, sizeof line, f)) {
    int tfd;
    found = sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &events, &data) == 3 && tfd == fd;
  }
  fclose(f);
  // the kernel shows EPOLLERR and EPOLLHUP, which every registration has; libuv asked for reading alone
  if (!found || (events & ~(unsigned int)(EPOLLERR | EPOLLHUP)) != EPOLLIN) return 0;
  if (!requeue_exclusive(loop, fd, data)) return 0;
  if (data_out) *data_out = data;
  return 1;
}

/** socket(2) of `type` for the (host, port) a JavaScript call gave as its first two
 * arguments, non-blocking, close-on-exec, IPv6 only for an IPv6 host (as node's listeners
 * are opened); its address in *at. -1 with an exception thrown when either is bad or the OS refuses. */
static inline int socket_for(napi_env env, napi_callback_info info, int type, struct sockaddr_storage *at, socklen_t *atlen) {
  size_t argc = 2;
  napi_value argv[2];
  char host[INET6_ADDRSTRLEN + 1];
  size_t hostlen;
  int32_t port;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 2 ||
      napi_get_value_string_utf8(env, argv[0], host, sizeof host, &hostlen) != napi_ok ||
      napi_get_value_int32(env, argv[1], &port) != napi_ok || (*atlen = address_of(host, port, at)) == 0) {
    throw_errno(env, "bind", EINVAL);
    return -1;
  }
  int fd = socket(at->ss_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, "socket", errno);
    return -1;
  }
  int one = 1;
  if (at->ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  return fd;
}

/** The descriptor in a handle an addon made (napi_create_external): each addon's handle struct starts with its `int fd`; -1 for anything else. */
static inline int handle_fd(napi_env env, napi_value v) {
  int *fd = NULL;
  return napi_get_value_external(env, v, (void **)&fd) == napi_ok && fd ? *fd : -1;
}

/** fd(handle) -> the socket's descriptor, for the primary to hand to its workers. */
static inline napi_value js_handle_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], out;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  CHECK(napi_create_int32(env, handle_fd(env, argv[0]), &out));
  return out;
}

/** port(handle) -> the socket's local port. */
static inline napi_value js_handle_port(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  return local_port(env, handle_fd(env, argv[0]));
}

/** A socket handed over by another process as descriptor fd, made ready to poll here: the file
 * status flags belong to the socket, shared with the other processes (already non-blocking
 * when the primary opened it); close-on-exec is this descriptor's own. 0, or the errno. */
static inline int take_descriptor(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) return errno;
  return 0;
}

/** A JavaScript function called back from libuv's loop, with the async context that makes
 * each call one async operation to Node (async_hooks, AsyncLocalStorage). */
typedef struct {
  napi_ref fn, resource;
  napi_async_context ctx;
} callback_t;

/** Keeps `fn` to be called back as `name`; napi_ok or the failing step's status. */
static inline napi_status callback_init(napi_env env, napi_value fn, const char *name, callback_t *cb) {
  napi_value resource, text;
  napi_status status;
  if ((status = napi_create_reference(env, fn, 1, &cb->fn)) != napi_ok || (status = napi_create_object(env, &resource)) != napi_ok ||
      (status = napi_create_reference(env, resource, 1, &cb->resource)) != napi_ok ||
      (status = napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &text)) != napi_ok)
    return status;
  return napi_async_init(env, resource, text, &cb->ctx);
}

/** Calls it with one number (how many results wait in the arrays it shares with C), through
 * napi_make_callback: its microtasks run before this returns. What it throws is Node's
 * uncaught exception, as from any callback. */
static inline void callback_count(napi_env env, callback_t *cb, int32_t count) {
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value fn, resource, arg, result;
  napi_get_reference_value(env, cb->fn, &fn);
  napi_get_reference_value(env, cb->resource, &resource);
  napi_create_int32(env, count, &arg);
  if (napi_make_callback(env, cb->ctx, resource, fn, 1, &arg, &result) == napi_pending_exception) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_handle_scope(env, scope);
}

/** It will not be called again: its function and context are let go. */
static inline void callback_release(napi_env env, callback_t *cb) {
  napi_delete_reference(env, cb->fn);
  napi_delete_reference(env, cb->resource);
  napi_async_destroy(env, cb->ctx);
}

/** The descriptor adopt(fd) was called with, its name for messages written into `what`;
 * -1 with an exception thrown when the argument is not a descriptor number. */
static inline int32_t descriptor_argument(napi_env env, napi_callback_info info, char *what, size_t size) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd = -1;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || napi_get_value_int32(env, argv[0], &fd) != napi_ok)
    fd = -1;
  snprintf(what, size, "adopt: descriptor %d", fd);
  if (fd < 0) throw_errno(env, what, EBADF);
  return fd;
}

typedef struct {
  const char *name;
  napi_callback fn;
} function_t;

/** Sets exports[name] = fn for each of the n functions. */
static inline void export_functions(napi_env env, napi_value exports, const function_t *fns, size_t n) {
  for (size_t i = 0; i < n; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
}

/** Sets exports[name] = the int. */
static inline void export_int(napi_env env, napi_value exports, const char *name, int32_t value) {
  napi_value v;
  napi_create_int32(env, value, &v);
  napi_set_named_property(env, exports, name, v);
}

#endif
