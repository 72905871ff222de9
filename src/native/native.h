// What divert's two addons (udp-batch.c, udp-connected.c) share: N-API error handling,
// typed arrays handed in from JavaScript, and socket addresses. Each addon is compiled on
// its own (src/native/build.ts), so everything here is static.
#ifndef DIVERT_NATIVE_H
#define DIVERT_NATIVE_H
#define _GNU_SOURCE
#include <node_api.h>
#include <uv.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define CHECK(x)                                 \
  do {                                           \
    if ((x) != napi_ok) {                        \
      napi_throw_error(env, NULL, #x " failed"); \
      return NULL;                               \
    }                                            \
  } while (0)

/** An OS error as Node gives one (err.code 'EADDRINUSE'), so failures read the same as on node:dgram. */
static napi_value throw_errno(napi_env env, const char *what, int err) {
  const char *code = uv_err_name(uv_translate_sys_error(err));
  char message[160];
  snprintf(message, sizeof message, "%s %s: %s", what, code, strerror(err));
  napi_throw_error(env, code, message);
  return NULL;
}

/** A typed array's memory and its size in bytes, if it is of `want` (Uint8Array or Int32Array); NULL otherwise. */
static void *array_of(napi_env env, napi_value v, napi_typedarray_type want, size_t *bytes) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (napi_get_typedarray_info(env, v, &type, &length, &data, NULL, NULL) != napi_ok || type != want) return NULL;
  *bytes = length * (want == napi_int32_array ? 4 : 1);
  return data;
}

/** host (an IPv4 or IPv6 address, as text) and port as a sockaddr; 0 when host is neither. */
static socklen_t address_of(const char *host, int port, struct sockaddr_storage *at) {
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
static void set_message(struct mmsghdr *m, struct iovec *iov, void *base, size_t length, void *name, socklen_t namelen) {
  iov->iov_base = base;
  iov->iov_len = length;
  memset(&m->msg_hdr, 0, sizeof m->msg_hdr);
  m->msg_hdr.msg_iov = iov;
  m->msg_hdr.msg_iovlen = 1;
  m->msg_hdr.msg_name = name;
  m->msg_hdr.msg_namelen = namelen;
}

/** The local port of socket fd, as a JavaScript number (throws the OS's error). */
static napi_value local_port(napi_env env, int fd) {
  struct sockaddr_storage at;
  socklen_t len = sizeof at;
  napi_value out;
  if (fd < 0 || getsockname(fd, (struct sockaddr *)&at, &len) < 0) return throw_errno(env, "getsockname", fd < 0 ? EBADF : errno);
  int port = at.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&at)->sin_port) : ntohs(((struct sockaddr_in6 *)&at)->sin6_port);
  CHECK(napi_create_int32(env, port, &out));
  return out;
}

typedef struct {
  const char *name;
  napi_callback fn;
} function_t;

/** Sets exports[name] = fn for each of the n functions. */
static void export_functions(napi_env env, napi_value exports, const function_t *fns, size_t n) {
  for (size_t i = 0; i < n; i++) {
    napi_value f;
    napi_create_function(env, fns[i].name, NAPI_AUTO_LENGTH, fns[i].fn, NULL, &f);
    napi_set_named_property(env, exports, fns[i].name, f);
  }
}

/** Sets exports[name] = the int. */
static void export_int(napi_env env, napi_value exports, const char *name, int32_t value) {
  napi_value v;
  napi_create_int32(env, value, &v);
  napi_set_named_property(env, exports, name, v);
}

#endif
