// The engine of divert proxy's native TCP relay (tcp-relay.c is its N-API surface and
// the only file that includes this): the connections and their ids, the epoll set they are
// registered in (edge-triggered, once per socket), moving bytes both ways with
// backpressure, FIN and reset passed on, connects, accepts, the idle sweep, and the events
// queued for JavaScript. Everything is static: the addon is compiled as one unit.
#ifndef DIVERT_TCP_RELAY_CORE_H
#define DIVERT_TCP_RELAY_CORE_H
#include "native.h"
#include <fcntl.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

/** Connections accepted per readable event before libuv gets the loop back: a burst is
 * shared with the other workers (one of them is woken while this one is busy) rather than
 * taken whole by the first awake. */
#define ACCEPTS 16
/** Bytes read at once; at most this much waits per direction while the other side is full. */
#define CHUNK 65536
/** Reads per connection and direction before others get a turn (the rest waits for an idle turn of the loop). */
#define TURN 16
/** Connection ids: a slot in the low 20 bits, a generation above, so a stale id finds nothing. */
#define SLOT_BITS 20
#define MAX_SLOTS (1 << SLOT_BITS)
#define BACKLOG 4096
/** How long a listener rests when accept fails for want of descriptors or memory. */
#define REST_MS 100
/** epoll events taken at once, and events queued for JavaScript (5 numbers each): a batch of
 * 4 x WAIT epoll events queues at most 2 each, so JavaScript is called between batches only,
 * never while events taken from the set are still to be handled (a retried connect reuses a side). */
#define WAIT 256
#define EVENTS 4096

enum { CONNECTED = 1, FAILED = 2, CLOSED = 3 };

typedef struct listener listener_t;
typedef struct conn conn_t;

typedef struct {
  conn_t *c;
  int fd;
  /** Edge-triggered readiness: set by an event, cleared when the socket says EAGAIN (or a read comes back short). */
  int can_read, can_write;
  /** The peer closed or reset (EPOLLRDHUP, EPOLLHUP): read until EOF even after a short read. */
  int hup;
  /** Bytes read from the other side that this one has not taken yet. */
  uint8_t *pending;
  size_t plen, poff;
  /** Read EOF from this side / sent it a FIN. */
  int eof, shut;
} side_t;

struct conn {
  int32_t id;
  listener_t *l;
  /** 0: the client, 1: the target. */
  side_t s[2];
  /** The connect timeout; the connection's memory goes when it is closed. */
  uv_timer_t timer;
  int connecting, connected, done;
  /** Client to target, target to client. */
  double bytes[2];
  uint64_t last, started;
  conn_t *prev, *next;
  /** On the list of connections with bytes still to move (they used up their turn). */
  int again;
  conn_t *again_prev, *again_next;
};

struct listener {
  /** First: js_handle_fd and js_handle_port read it (native.h). */
  int fd;
  uv_poll_t poll;
  uv_timer_t sweep, rest;
  napi_env env;
  /** onAccept(id, address, port, localAddress, localPort) */
  callback_t on_accept;
  /** exclusive: 0 the registration not yet looked at, 1 left as libuv made it (make_exclusive failed), 2 exclusive. */
  int started, closing, finalized, exclusive, wildcard, handles;
  /** The data of libuv's registration of the listener, for requeue_exclusive. */
  uint64_t registered;
  double tag;
  uint64_t idle_ms;
  conn_t *conns;
};

static uint8_t scratch[CHUNK];
static conn_t **slots;
static int32_t slot_count, slot_capacity, *free_slots, free_count, generation;

/** The epoll set of every connection's sockets, polled by libuv as one descriptor. */
static struct {
  int fd;
  uv_poll_t poll;
  uv_idle_t idle;
  uv_loop_t *loop;
  napi_env env;
  napi_ref array;
  /** onEvents(count) */
  callback_t on_events;
  double *events;
  int queued;
  conn_t *again;
} set = {.fd = -1};

static conn_t *conn_of(int32_t id) {
  if (id < 0) return NULL;
  int32_t slot = id & (MAX_SLOTS - 1);
  if (slot >= slot_count || !slots[slot] || slots[slot]->id != id) return NULL;
  return slots[slot];
}

/** A slot for c, its id set; 0 when every slot is taken. */
static int take_slot(conn_t *c) {
  int32_t slot;
  if (free_count > 0) {
    slot = free_slots[--free_count];
  } else {
    if (slot_count == MAX_SLOTS) return 0;
    if (slot_count == slot_capacity) {
      int32_t cap = slot_capacity ? slot_capacity * 2 : 1024;
      conn_t **grown = realloc(slots, cap * sizeof *slots);
      if (!grown) return 0;
      slots = grown;
      int32_t *frees = realloc(free_slots, cap * sizeof *free_slots);
      if (!frees) return 0;
      free_slots = frees;
      slot_capacity = cap;
    }
    slot = slot_count++;
  }
  generation = (generation + 1) & 1023;
  c->id = slot | (generation << SLOT_BITS);
  slots[slot] = c;
  return 1;
}

static void release_listener(listener_t *l) {
  if (l->finalized && l->handles == 0) free(l);
}

static void on_timer_closed(uv_handle_t *h) {
  free(h->data);
}

/** Hands the queued events to JavaScript in one call: an exception in it is Node's uncaught exception. */
static void flush(void) {
  if (set.queued == 0) return;
  int count = set.queued;
  set.queued = 0;
  callback_count(set.env, &set.on_events, count);
}

static void emit(conn_t *c, int type, double a, double b) {
  if (set.queued == EVENTS) flush();
  double *e = set.events + set.queued++ * 5;
  e[0] = type;
  e[1] = c->id;
  e[2] = a;
  e[3] = b;
  e[4] = c->l->tag;
}

static void not_again(conn_t *c) {
  if (!c->again) return;
  c->again = 0;
  if (c->again_prev) c->again_prev->again_next = c->again_next;
  else set.again = c->again_next;
  if (c->again_next) c->again_next->again_prev = c->again_prev;
}

/** Closes one side's socket (RST when `reset`), which leaves the epoll set with it; what waited for it is dropped. */
static void close_side(side_t *sd, int reset) {
  if (sd->fd >= 0) {
    if (reset) {
      struct linger lg = {1, 0};
      setsockopt(sd->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(sd->fd);
    sd->fd = -1;
  }
  free(sd->pending);
  sd->pending = NULL;
  sd->can_read = sd->can_write = sd->hup = 0;
}

/** The connection ends (both sides closed, RST when `reset`); CLOSED is queued when `notify`. The id finds nothing from here on. */
static void finish(conn_t *c, int reset, int notify) {
  if (c->done) return;
  c->done = 1;
  slots[c->id & (MAX_SLOTS - 1)] = NULL;
  free_slots[free_count++] = c->id & (MAX_SLOTS - 1);
  listener_t *l = c->l;
  if (c->prev) c->prev->next = c->next;
  else l->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  not_again(c);
  close_side(&c->s[0], reset);
  close_side(&c->s[1], reset);
  if (notify) emit(c, CLOSED, c->bytes[0], c->bytes[1]);
  // the memory stays until libuv lets go of the timer: events already taken from the set may still name it
  uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/** A failure of one side (errno `err`): a reset is passed on as a reset, anything else closes. */
static void fail(conn_t *c, int err) {
  finish(c, err == ECONNRESET, 1);
}

static int watch(side_t *sd) {
  struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = sd};
  return epoll_ctl(set.fd, EPOLL_CTL_ADD, sd->fd, &e) < 0 ? errno : 0;
}

/** The other side sent its FIN: passed on once nothing waits for this side. A side that sent
 * its own FIN already is not told with shutdown(2): both ways are then done, and the close
 * that follows at once sends it (a system call less per connection). */
static void pass_fin(side_t *sd, side_t *from) {
  if (from->eof && !sd->pending && !sd->shut) {
    if (!sd->eof) shutdown(sd->fd, SHUT_WR);
    sd->shut = 1;
  }
}

/** Sends what waits for side i; whether it all went. */
static int flush_side(conn_t *c, int i) {
  side_t *sd = &c->s[i];
  ssize_t w = send(sd->fd, sd->pending + sd->poff, sd->plen - sd->poff, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) sd->can_write = 0;
    else if (errno != EINTR) fail(c, errno);
    return 0;
  }
  sd->poff += (size_t)w;
  if (sd->poff < sd->plen) {
    sd->can_write = 0;
    return 0;
  }
  free(sd->pending);
  sd->pending = NULL;
  pass_fin(sd, &c->s[1 - i]);
  return 1;
}

/** One read from side i, sent on to the other; whether bytes moved. */
static int relay_from(conn_t *c, int i) {
  side_t *a = &c->s[i], *b = &c->s[1 - i];
  ssize_t n = read(a->fd, scratch, CHUNK);
  if (n == 0) {
    a->eof = 1;
    pass_fin(b, a);
    return 0;
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) a->can_read = 0;
    else if (errno != EINTR) fail(c, errno);
    return 0;
  }
  // a short read emptied the socket: the next bytes bring a new event. When the peer's FIN
  // had come (hup: EPOLLRDHUP; the kernel queues it behind every byte before it), these
  // were its last bytes: EOF without another read(2)
  int last = n < CHUNK && a->hup;
  if (n < CHUNK) a->can_read = 0;
  c->bytes[i] += (double)n;
  c->last = uv_now(set.loop);
  ssize_t w = b->can_write ? send(b->fd, scratch, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
  if (w < 0) {
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      fail(c, errno);
      return 0;
    }
    w = 0;
  }
  if (w < n) {
    b->can_write = 0;
    b->pending = malloc((size_t)(n - w));
    if (!b->pending) {
      fail(c, ENOMEM);
      return 0;
    }
    memcpy(b->pending, scratch + w, (size_t)(n - w));
    b->plen = (size_t)(n - w);
    b->poff = 0;
  }
  if (last) {
    a->eof = 1;
    pass_fin(b, a);
  }
  return 1;
}

static void on_idle(uv_idle_t *h);

/** Moves what can move both ways, up to TURN reads each; a connection with more to move waits for the next idle turn. */
static void progress(conn_t *c) {
  int reads[2] = {0, 0};
  for (int moved = 1; moved && !c->done;) {
    moved = 0;
    for (int i = 0; i < 2 && !c->done; i++) {
      side_t *a = &c->s[i], *b = &c->s[1 - i];
      if (a->pending && a->can_write) moved |= flush_side(c, i);
      if (c->done || a->eof || !a->can_read || b->pending) continue;
      if (reads[i] == TURN) {
        if (!c->again) {
          c->again = 1;
          c->again_prev = NULL;
          c->again_next = set.again;
          if (set.again) set.again->again_prev = c;
          set.again = c;
          uv_idle_start(&set.idle, on_idle);
        }
        continue;
      }
      reads[i]++;
      moved |= relay_from(c, i);
    }
  }
  if (c->done) return;
  if (c->s[0].eof && c->s[1].eof && c->s[0].shut && c->s[1].shut) finish(c, 0, 1);
}

/** The connect of the target side finished (or failed: the target side is closed for the next try). */
static void connect_done(conn_t *c, uint32_t events) {
  side_t *t = &c->s[1];
  int err = 0;
  if (events & (EPOLLERR | EPOLLHUP)) {
    socklen_t len = sizeof err;
    if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (!err) err = ECONNREFUSED;
  }
  uv_timer_stop(&c->timer);
  c->connecting = 0;
  if (err) {
    close_side(t, 0);
    emit(c, FAILED, err, 0);
    return;
  }
  c->connected = 1;
  c->last = uv_now(set.loop);
  // a target that speaks first may have done so in the same edge
  if (events & (EPOLLIN | EPOLLRDHUP)) t->can_read = 1;
  if (events & EPOLLRDHUP) t->hup = 1;
  int werr = watch(&c->s[0]);
  if (werr) {
    fail(c, werr);
    return;
  }
  emit(c, CONNECTED, (double)(uv_hrtime() - c->started) / 1000.0, 0);
  progress(c);
}

static void on_set(uv_poll_t *p, int status, int events) {
  struct epoll_event got[WAIT];
  for (int rounds = 0; rounds < 4; rounds++) {
    int n = epoll_wait(set.fd, got, WAIT, 0);
    if (n <= 0) break;
    for (int k = 0; k < n; k++) {
      side_t *sd = got[k].data.ptr;
      conn_t *c = sd->c;
      uint32_t e = got[k].events;
      // an event for a socket closed since it was taken: its side's descriptor is gone
      if (c->done || sd->fd < 0) continue;
      if (c->connecting) {
        if (sd == &c->s[1]) connect_done(c, e);
        continue;
      }
      if (e & (EPOLLRDHUP | EPOLLHUP)) sd->hup = 1;
      if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) sd->can_read = 1;
      if (e & EPOLLOUT) sd->can_write = 1;
      if (e & EPOLLERR) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(sd->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        fail(c, err ? err : ECONNRESET);
        continue;
      }
      progress(c);
    }
    // Before looking again, the processes these bytes woke (a client, a target, on a core this
    // process shares with them) run first: what they answer is taken in this same turn, not
    // after this process has slept in the loop's poll and been woken again. Alone on its core,
    // the yield returns at once and the look finds nothing. A full batch looks again at once.
    if (n < WAIT) {
      sched_yield();
      // the others may have run for a slice: last activity (c->last) is stamped with loop time
      uv_update_time(set.loop);
    }
  }
  flush();
}

/** Connections that used up their turn get another, one idle turn of the loop later. */
static void on_idle(uv_idle_t *h) {
  conn_t *list = set.again;
  set.again = NULL;
  for (conn_t *c = list; c; c = c->again_next) c->again = 0;
  // progress may put a connection back on the (new) list, and finish takes none off this one
  for (conn_t *c = list, *next; c; c = next) {
    next = c->again_next;
    if (!c->done) progress(c);
  }
  if (!set.again) uv_idle_stop(&set.idle);
  flush();
}

static void on_connect_timeout(uv_timer_t *t) {
  conn_t *c = t->data;
  if (c->done || !c->connecting) return;
  c->connecting = 0;
  close_side(&c->s[1], 0);
  emit(c, FAILED, ETIMEDOUT, 0);
  flush();
}

/** address and port as JavaScript values. */
static void address_values(napi_env env, struct sockaddr_storage *at, napi_value *address, napi_value *port) {
  char text[INET6_ADDRSTRLEN];
  int p = 0;
  if (at->ss_family == AF_INET) {
    inet_ntop(AF_INET, &((struct sockaddr_in *)at)->sin_addr, text, sizeof text);
    p = ntohs(((struct sockaddr_in *)at)->sin_port);
  } else {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)at)->sin6_addr, text, sizeof text);
    p = ntohs(((struct sockaddr_in6 *)at)->sin6_port);
  }
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, address);
  napi_create_int32(env, p, port);
}

static void on_accept(uv_poll_t *p, int status, int events);

static void on_rested(uv_timer_t *t) {
  listener_t *l = t->data;
  if (l->closing) return;
  l->exclusive = 0;
  uv_poll_start(&l->poll, UV_READABLE, on_accept);
}

/** Calls onAccept for up to ACCEPTS new connections, in one callback scope (microtasks run once, at its end). */
static void on_accept(uv_poll_t *p, int status, int events) {
  listener_t *l = p->data;
  napi_env env = l->env;
  if (status < 0 || l->closing) return;
  if (!l->exclusive) l->exclusive = 1 + make_exclusive(p->loop, l->fd, &l->registered);
  int accepted = 0;
  napi_handle_scope scope;
  napi_callback_scope cscope;
  napi_value resource, cb, global, result;
  napi_open_handle_scope(env, &scope);
  napi_get_reference_value(env, l->on_accept.resource, &resource);
  napi_get_reference_value(env, l->on_accept.fn, &cb);
  napi_get_global(env, &global);
  napi_open_callback_scope(env, resource, l->on_accept.ctx, &cscope);
  for (int k = 0; k < ACCEPTS && !l->closing; k++) {
    struct sockaddr_storage from;
    socklen_t flen = sizeof from;
    int fd = accept4(l->fd, (struct sockaddr *)&from, &flen, SOCK_NONBLOCK | SOCK_CLOEXEC);
    napi_value argv[5];
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // the connection waits in the backlog; reading on would spin on the same failure
        uv_poll_stop(&l->poll);
        uv_timer_start(&l->rest, on_rested, REST_MS, 0);
        napi_create_int32(env, -errno, &argv[0]);
        napi_call_function(env, global, cb, 1, argv, &result);
      }
      break;
    }
    // TCP_NODELAY: inherited from the listener (wrap_listener)
    accepted++;
    conn_t *c = calloc(1, sizeof *c);
    if (!c || !take_slot(c)) {
      free(c);
      close(fd);
      continue;
    }
    c->l = l;
    c->s[0] = (side_t){.c = c, .fd = fd, .can_write = 1};
    c->s[1] = (side_t){.c = c, .fd = -1};
    uv_timer_init(p->loop, &c->timer);
    c->timer.data = c;
    c->next = l->conns;
    if (l->conns) l->conns->prev = c;
    l->conns = c;
    napi_create_int32(env, c->id, &argv[0]);
    address_values(env, &from, &argv[1], &argv[2]);
    struct sockaddr_storage local;
    socklen_t llen = sizeof local;
    if (l->wildcard && getsockname(fd, (struct sockaddr *)&local, &llen) == 0) {
      address_values(env, &local, &argv[3], &argv[4]);
    } else {
      napi_get_undefined(env, &argv[3]);
      napi_get_undefined(env, &argv[4]);
    }
    if (napi_call_function(env, global, cb, 5, argv, &result) == napi_pending_exception) break;
  }
  // to the back of the listener's queue of waiters: the next connection wakes another idle worker first
  if (accepted && l->exclusive == 2 && uv_is_active((uv_handle_t *)&l->poll) && !requeue_exclusive(p->loop, l->fd, l->registered)) l->exclusive = 0;
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) {
    napi_value err;
    napi_get_and_clear_last_exception(env, &err);
    napi_fatal_exception(env, err);
  }
  napi_close_callback_scope(env, cscope);
  napi_close_handle_scope(env, scope);
}

/** Every `idle_ms / 4` (at most a second): connections silent both ways for idle_ms end. */
static void on_sweep(uv_timer_t *t) {
  listener_t *l = t->data;
  uint64_t now = uv_now(t->loop);
  for (conn_t *c = l->conns, *next; c; c = next) {
    next = c->next;
    if (c->connected && now - c->last >= l->idle_ms) finish(c, 0, 1);
  }
  flush();
}

#endif
