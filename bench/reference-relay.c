// The floor that `npm run bench:proxy` measures divert proxy against: the I/O pattern of
// divert's native relay (src/native/tcp-relay-core.h) in a plain C program, without Node,
// libuv, JavaScript or any bookkeeping (no connection table, limits, timeouts, metrics).
// Each worker process has one edge-triggered epoll set; the listeners are shared and
// registered EPOLLEXCLUSIVE, and a worker goes to the back of a listener's queue after
// each accept batch, and after a batch of events it yields before it looks again; the
// target is connected first and the client read once it is; bytes move both ways with
// backpressure (a side whose peer has bytes waiting is not read), FIN is passed on. Not
// a product: bench/proxy.ts builds it with cc and runs it as the "reference" target, so
// that one run shows what the kernel and this pattern allow on the machine, and how much
// of divert's figure goes to its host runtime. flush_side, relay_from and progress mirror
// the addon's functions of those names less its figures, events and turns: a copy on
// purpose (the addon's are tied to libuv and N-API), to be changed with them.
//
// reference-relay WORKERS LISTEN_PORT:TARGET_PORT...   (127.0.0.1 both sides)
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK 65536
#define ACCEPTS 16
#define WAIT 256
#define MAX_LISTENERS 8

typedef struct conn conn_t;
typedef struct {
  conn_t *c;
  int fd, can_read, can_write, hup, eof, shut;
  /** Bytes read from the other side that this one has not taken yet. */
  char *pending;
  size_t plen, poff;
} side_t;
struct conn {
  side_t s[2];
  int connecting, done;
  conn_t *next_dead;
};
typedef struct {
  int fd;
  struct sockaddr_in target;
} listener_t;

static int ep;
static char buf[CHUNK];
static listener_t listeners[MAX_LISTENERS];
/** Connections finished in this batch: freed after it, as later events of the batch may name them. */
static conn_t *dead;

static int watch(side_t *sd) {
  struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = sd};
  return epoll_ctl(ep, EPOLL_CTL_ADD, sd->fd, &e);
}

static void finish(conn_t *c) {
  if (c->done) return;
  c->done = 1;
  for (int i = 0; i < 2; i++) {
    if (c->s[i].fd >= 0) close(c->s[i].fd);
    free(c->s[i].pending);
  }
  c->next_dead = dead;
  dead = c;
}

static void pass_fin(side_t *to, side_t *from) {
  if (from->eof && !to->pending && !to->shut) {
    if (!to->eof) shutdown(to->fd, SHUT_WR);
    to->shut = 1;
  }
}

/** Sends what waits for side i; whether it all went. */
static int flush_side(conn_t *c, int i) {
  side_t *sd = &c->s[i];
  ssize_t w = send(sd->fd, sd->pending + sd->poff, sd->plen - sd->poff, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w < 0) {
    if (errno == EAGAIN) sd->can_write = 0;
    else if (errno != EINTR) finish(c);
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

/** One read from side i, sent on to the other (what does not fit waits); whether bytes moved. */
static int relay_from(conn_t *c, int i) {
  side_t *a = &c->s[i], *b = &c->s[1 - i];
  ssize_t n = read(a->fd, buf, CHUNK);
  if (n == 0) {
    a->eof = 1;
    pass_fin(b, a);
    return 0;
  }
  if (n < 0) {
    if (errno == EAGAIN) a->can_read = 0;
    else if (errno != EINTR) finish(c);
    return 0;
  }
  int last = n < CHUNK && a->hup;
  if (n < CHUNK) a->can_read = 0;
  ssize_t w = b->can_write ? send(b->fd, buf, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) : 0;
  if (w < 0) {
    if (errno != EAGAIN && errno != EINTR) {
      finish(c);
      return 0;
    }
    w = 0;
  }
  if (w < n) {
    b->can_write = 0;
    b->plen = (size_t)(n - w);
    b->poff = 0;
    b->pending = malloc(b->plen);
    if (!b->pending) {
      finish(c);
      return 0;
    }
    memcpy(b->pending, buf + w, b->plen);
  }
  if (last) {
    a->eof = 1;
    pass_fin(b, a);
  }
  return 1;
}

static void progress(conn_t *c) {
  for (int moved = 1; moved && !c->done;) {
    moved = 0;
    for (int i = 0; i < 2 && !c->done; i++) {
      side_t *a = &c->s[i], *b = &c->s[1 - i];
      if (a->pending && a->can_write) moved |= flush_side(c, i);
      if (c->done || a->eof || !a->can_read || b->pending) continue;
      moved |= relay_from(c, i);
    }
  }
  if (!c->done && c->s[0].eof && c->s[1].eof && c->s[0].shut && c->s[1].shut) finish(c);
}

static void on_accept(listener_t *l) {
  int one = 1;
  for (int k = 0; k < ACCEPTS; k++) {
    int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) break;
    conn_t *c = calloc(1, sizeof *c);
    int t = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!c || t < 0) {
      free(c);
      close(fd);
      if (t >= 0) close(t);
      continue;
    }
    c->s[0] = (side_t){.c = c, .fd = fd, .can_write = 1};
    c->s[1] = (side_t){.c = c, .fd = t, .can_write = 1};
    setsockopt(t, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if ((connect(t, (struct sockaddr *)&l->target, sizeof l->target) < 0 && errno != EINPROGRESS) || watch(&c->s[1]) < 0) {
      finish(c);
      continue;
    }
    c->connecting = 1;
  }
  // to the back of the listener's queue of waiters, as divert's relay does
  struct epoll_event e = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = l};
  epoll_ctl(ep, EPOLL_CTL_DEL, l->fd, NULL);
  epoll_ctl(ep, EPOLL_CTL_ADD, l->fd, &e);
}

static void on_event(side_t *sd, uint32_t e) {
  conn_t *c = sd->c;
  if (c->done) return;
  if (c->connecting) {
    if (sd != &c->s[1]) return;
    if (e & (EPOLLERR | EPOLLHUP)) {
      finish(c);
      return;
    }
    c->connecting = 0;
    if (e & (EPOLLIN | EPOLLRDHUP)) sd->can_read = 1;
    if (e & EPOLLRDHUP) sd->hup = 1;
    if (watch(&c->s[0]) < 0) {
      finish(c);
      return;
    }
    progress(c);
    return;
  }
  if (e & (EPOLLRDHUP | EPOLLHUP)) sd->hup = 1;
  if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP)) sd->can_read = 1;
  if (e & EPOLLOUT) sd->can_write = 1;
  if (e & EPOLLERR) {
    finish(c);
    return;
  }
  progress(c);
}

int main(int argc, char **argv) {
  int workers = argc > 1 ? atoi(argv[1]) : 0, count = argc - 2;
  if (workers < 1 || count < 1 || count > MAX_LISTENERS) {
    fprintf(stderr, "usage: reference-relay WORKERS LISTEN_PORT:TARGET_PORT... (at most %d)\n", MAX_LISTENERS);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int one = 1;
  for (int i = 0; i < count; i++) {
    int from, to;
    if (sscanf(argv[i + 2], "%d:%d", &from, &to) != 2) {
      fprintf(stderr, "reference-relay: %s is not LISTEN_PORT:TARGET_PORT\n", argv[i + 2]);
      return 2;
    }
    listener_t *l = &listeners[i];
    l->target = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(to), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct sockaddr_in at = {.sin_family = AF_INET, .sin_port = htons(from), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    l->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (l->fd < 0 || bind(l->fd, (struct sockaddr *)&at, sizeof at) < 0 || listen(l->fd, 4096) < 0) {
      perror("reference-relay: listen");
      return 1;
    }
  }
  for (int w = 1; w < workers; w++) {
    if (fork() == 0) {
      // the bench stops the first process by its PID: the others go with it
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      break;
    }
  }
  ep = epoll_create1(EPOLL_CLOEXEC);
  for (int i = 0; i < count; i++) {
    struct epoll_event e = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &listeners[i]};
    epoll_ctl(ep, EPOLL_CTL_ADD, listeners[i].fd, &e);
  }
  struct epoll_event got[WAIT];
  for (;;) {
    // as the addon's turn (on_set): after a batch, the processes it woke run first
    // (sched_yield), then a look without waiting, 4 looks at most before the next wait
    for (int rounds = 0, timeout = -1; rounds < 4; rounds++, timeout = 0) {
      int n = epoll_wait(ep, got, WAIT, timeout);
      if (n <= 0) break;
      for (int k = 0; k < n; k++) {
        // a listener's event names its slot in `listeners`; a socket's, its side of a connection
        uintptr_t p = (uintptr_t)got[k].data.ptr;
        if (p >= (uintptr_t)listeners && p < (uintptr_t)(listeners + MAX_LISTENERS)) on_accept((listener_t *)p);
        else on_event((side_t *)p, got[k].events);
      }
      while (dead) {
        conn_t *c = dead;
        dead = c->next_dead;
        free(c);
      }
      if (n < WAIT) sched_yield();
    }
  }
}
