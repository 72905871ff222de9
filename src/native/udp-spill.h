// A spill reader of a UDP socket that several processes share (udp-batch.c's spill): a
// worker other than the first, which reads the socket always. Below one worker's capacity
// a datagram that finds the first busy for a moment wakes another, and a wake-up costs
// more than the query it carries (README, Batched UDP): so this one reads only while the
// first falls behind. Every PROBE_MS it weighs the first reader's CPU (reading or away);
// away from the socket it looks at the socket's queue then too,
// and reads again once the oldest datagram there has waited JOIN_WAIT_MS (its arrival
// stamped by the kernel: SO_TIMESTAMPNS) — the first reader is stalled — or once
// JOIN_QUEUE_BYTES wait at two looks in a row while the first reader's thread was on a
// CPU JOIN_FIRST_BUSY of the last PEER_LOOKS looks — it is saturated. (A client that
// keeps many queries in flight keeps a queue waiting whether the first keeps up or not;
// two readers of one socket then split each batch in two and cost ~1.5x the CPU per
// query for no more answers: the first's CPU tells the two cases apart.) Reading, every
// WINDOW_MS it weighs its work: it leaves the socket to the first reader when both
// readers' threads together were on a CPU less than LEAVE_PAIR_BUSY of the window (one
// reader does that work alone, and cheaper), or when its own event loop was busy under
// LEAVE_BUSY with its reads finding fewer than BACKED_UP datagrams waiting on average.
// The first reader's pid comes from the primary (spill_peer); until it does, or once that
// process is gone, the queue alone decides. The owner polls the socket or not as `away`
// says, told by `changed` whenever it flips.
#ifndef DIVERT_UDP_SPILL_H
#define DIVERT_UDP_SPILL_H

#include "native.h"
#include <linux/sock_diag.h>
#include <stddef.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/** Away from the socket, it looks at its queue this often, */
#define PROBE_MS 5
/** and reads again once the oldest datagram there has waited this long (the first reader is stalled, or saturated), */
#define JOIN_WAIT_MS 10
/** or this much waits at two looks in a row (~a batch of small datagrams: the kernel counts ~830 bytes for one) —
 * a client that keeps a fixed number of queries in flight saturates the first reader without making any wait long. */
#define JOIN_QUEUE_BYTES (48 << 10)
/** or this much waits at two looks in a row and the first reader's thread was on a CPU this share of the last
 * PEER_LOOKS looks (per mille): saturated. Not saturated, it keeps up, and a second reader would only split its batches. */
#define JOIN_FIRST_BUSY 900
/** The looks over which the first reader's CPU is weighed (at PROBE_MS: 320 ms), and the fewest that tell. */
#define PEER_LOOKS 64
#define PEER_MIN_LOOKS 10
/** Reading, it weighs its event loop's work over this long, */
#define WINDOW_MS 1000
/** and leaves the socket to the first reader when the loop was busy less than this share of it (per mille), */
#define LEAVE_BUSY 400
/** unless its reads found this many datagrams waiting on average: then the socket backs up even with both reading
 * (a saturating client on cores it shares with the workers leaves each loop part idle). At 10,000 queries/s here a
 * read finds ~2; saturated, 4 to 40. */
#define BACKED_UP 4
/** or when its thread and the first reader's were on a CPU together less than this share of the window (per mille):
 * one reader does that work alone, in fuller batches. */
#define LEAVE_PAIR_BUSY 900
/** Back within this long of leaving, it weighs the next window twice as long (up to MAX_WINDOWS of them): no flapping near the edge. */
#define SOON_MS 5000
#define MAX_WINDOWS 64

typedef struct {
  uv_timer_t timer;
  int fd;
  /** Not reading the socket now, and the timer closing (no more flips). */
  int away, closing;
  /** Away: looks in a row that found JOIN_QUEUE_BYTES waiting. */
  int full_looks;
  /** The window's length, in WINDOW_MS. */
  int windows;
  /** Reading: when the window began, and the loop's idle time then (ns); away: when it left (ns). */
  uint64_t window_at, idle_at, left_at;
  /** Times it came back to the socket, and left it. */
  uint32_t joins, leaves;
  /** Reading: the window's reads that found datagrams, and the datagrams they took. */
  uint32_t reads, datagrams;
  /** The first reader's main thread's /proc/<pid>/schedstat, open while it is known and alive; -1 otherwise. */
  int peer_fd;
  /** The first reader's CPU time (ns) at the last looks, and when (ns), a ring; `looks` of them filled. */
  uint64_t peer_cpu[PEER_LOOKS], peer_time[PEER_LOOKS];
  int looks, look_next;
  /** Reading: the first reader's CPU time and this thread's when the window began (ns); peer_at 0: not known then. */
  uint64_t peer_at, own_at;
  /** The first reader's CPU share (per mille) as last weighed, -1 when not known. */
  int32_t peer_busy;
  void (*changed)(void *owner);
  void *owner;
} spill_t;

/** The socket's receive queue as the kernel counts it (bytes); 0 when it cannot tell. */
static inline uint32_t spill_queued_bytes(int fd) {
  uint32_t mem[SK_MEMINFO_VARS];
  socklen_t len = sizeof mem;
  if (getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem, &len) != 0 || len <= SK_MEMINFO_RMEM_ALLOC * sizeof mem[0]) return 0;
  return mem[SK_MEMINFO_RMEM_ALLOC];
}

/** How long the oldest datagram in the socket's queue has waited (ms), from the time the
 * kernel stamped on it (SO_TIMESTAMPNS, turned on by spill_start); -1 when none waits. */
static inline int64_t spill_oldest_wait_ms(int fd) {
  char data[1];
  union {
    char buf[CMSG_SPACE(sizeof(struct timespec))];
    struct cmsghdr align;
  } control;
  struct iovec iov = {data, sizeof data};
  struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof control.buf};
  if (recvmsg(fd, &h, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC) < 0) return -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(&h, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_TIMESTAMPNS) continue;
    struct timespec at, now;
    memcpy(&at, CMSG_DATA(c), sizeof at);
    clock_gettime(CLOCK_REALTIME, &now);
    return (int64_t)(now.tv_sec - at.tv_sec) * 1000 + (now.tv_nsec - at.tv_nsec) / 1000000;
  }
  return 0;
}

/** The first reader's main thread's CPU time so far (ns), from its schedstat; 0 when not known (the
 * process is gone: the descriptor is closed, and the queue alone decides until the primary names another). */
static inline uint64_t spill_peer_cpu(spill_t *sp) {
  if (sp->peer_fd < 0) return 0;
  char text[96];
  ssize_t n = pread(sp->peer_fd, text, sizeof text - 1, 0);
  if (n <= 0) {
    close(sp->peer_fd);
    sp->peer_fd = -1;
    sp->peer_busy = -1;
    return 0;
  }
  text[n] = 0;
  uint64_t ns = strtoull(text, NULL, 10);
  return ns ? ns : 1;
}

/** This thread's CPU time so far (ns): the loop's, as the timer runs on it. */
static inline uint64_t spill_own_cpu(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/** The first reader's CPU at this look (`cpu`, read every PROBE_MS, reading or away), into the ring; 1 when it
 * was saturated over the ring, 0 when not, -1 when it cannot tell (not known); too few looks yet (a new first reader): 0. */
static inline int spill_peer_saturated(spill_t *sp, uint64_t now, uint64_t cpu) {
  if (!cpu) return -1;
  // the oldest look still in the ring (the slot this one replaces once it is full)
  int oldest = sp->looks < PEER_LOOKS ? 0 : sp->look_next;
  uint64_t then_cpu = sp->peer_cpu[oldest], then = sp->peer_time[oldest];
  sp->peer_cpu[sp->look_next] = cpu;
  sp->peer_time[sp->look_next] = now;
  sp->look_next = (sp->look_next + 1) % PEER_LOOKS;
  if (sp->looks < PEER_LOOKS) sp->looks++;
  if (sp->looks < PEER_MIN_LOOKS || now <= then || cpu < then_cpu) return 0;
  sp->peer_busy = (int32_t)((cpu - then_cpu) * 1000 / (now - then));
  return sp->peer_busy >= JOIN_FIRST_BUSY;
}

static void spill_tick(uv_timer_t *t);

/** A read of the socket that took `n` datagrams: how backed up it is, for the window's weighing. */
static inline void spill_read(spill_t *sp, int n) {
  sp->reads++;
  sp->datagrams += (uint32_t)n;
}

/** A window of reading begins at `now`: its reads, the loop's idle time, and both threads' CPU counted from here. */
static inline void spill_window(spill_t *sp, uint64_t now, uint64_t idle, uint64_t peer, uint64_t own) {
  sp->window_at = now;
  sp->idle_at = idle;
  sp->reads = sp->datagrams = 0;
  sp->peer_at = peer;
  sp->own_at = own;
}

/** Reading again (the owner's poll handle reports the queue in this same turn of the loop), its work weighed from now. */
static inline void spill_join(spill_t *sp) {
  uint64_t now = uv_hrtime();
  sp->away = 0;
  if (sp->left_at && now - sp->left_at < (uint64_t)SOON_MS * 1000000) {
    if (sp->windows < MAX_WINDOWS) sp->windows *= 2;
  } else {
    sp->windows = 1;
  }
  spill_window(sp, now, uv_metrics_idle_time(sp->timer.loop), spill_peer_cpu(sp), spill_own_cpu());
  sp->changed(sp->owner);
}

/** The socket left to the first reader; its queue looked at from now. */
static inline void spill_leave(spill_t *sp) {
  sp->away = 1;
  sp->leaves++;
  sp->left_at = uv_hrtime();
  sp->full_looks = 0;
  sp->changed(sp->owner);
}

static void spill_tick(uv_timer_t *t) {
  spill_t *sp = (spill_t *)((char *)t - offsetof(spill_t, timer));
  if (sp->closing) return;
  // the first reader's CPU is weighed at every look, reading or away (divert_worker_udp_first_busy follows it)
  uint64_t now = uv_hrtime(), peer = spill_peer_cpu(sp);
  int saturated = spill_peer_saturated(sp, now, peer);
  if (sp->away) {
    uint32_t queued = spill_queued_bytes(sp->fd);
    sp->full_looks = queued >= JOIN_QUEUE_BYTES ? sp->full_looks + 1 : 0;
    // a queue that waits is the first reader's falling behind only if it is saturated (or it cannot tell)
    if ((sp->full_looks >= 2 && saturated != 0) || (queued > 0 && spill_oldest_wait_ms(sp->fd) >= JOIN_WAIT_MS)) {
      sp->joins++;
      spill_join(sp);
    }
    return;
  }
  if (now - sp->window_at < (uint64_t)WINDOW_MS * sp->windows * 1000000) return;
  uint64_t idle = uv_metrics_idle_time(t->loop);
  uint64_t span = now - sp->window_at, idle_span = idle - sp->idle_at;
  uint64_t own = spill_own_cpu();
  // both threads' work of the window, had one reader done it: under a core's LEAVE_PAIR_BUSY, one does
  int pair_light = 0;
  if (peer && sp->peer_at && span > 0 && peer >= sp->peer_at) {
    pair_light = (peer - sp->peer_at + own - sp->own_at) * 1000 / span < LEAVE_PAIR_BUSY;
  }
  // reads that found a batch waiting on average: the socket backs up even with both reading
  int backed_up = sp->datagrams >= (uint64_t)BACKED_UP * sp->reads && sp->reads > 0;
  spill_window(sp, now, idle, peer, own);
  if (pair_light || (!backed_up && span > 0 && (idle_span >= span || (span - idle_span) * 1000 / span < LEAVE_BUSY))) spill_leave(sp);
}

/** Starts reading as a spill reader of `fd` on `loop`: its first window begins now. The
 * timer's data is `owner` (for the owner's close callback); it keeps no loop alive. */
static inline void spill_start(spill_t *sp, uv_loop_t *loop, int fd, void (*changed)(void *owner), void *owner) {
  int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  uv_timer_init(loop, &sp->timer);
  uv_unref((uv_handle_t *)&sp->timer);
  sp->timer.data = owner;
  sp->fd = fd;
  sp->peer_fd = -1;
  sp->peer_busy = -1;
  sp->changed = changed;
  sp->owner = owner;
  spill_join(sp);
  uv_timer_start(&sp->timer, spill_tick, PROBE_MS, PROBE_MS);
}

/** The first reader is process `pid` from now (a new one after a restart); 0: not known. */
static inline void spill_peer(spill_t *sp, int pid) {
  if (sp->peer_fd >= 0) close(sp->peer_fd);
  sp->peer_fd = -1;
  sp->peer_busy = -1;
  sp->looks = sp->look_next = 0;
  if (pid > 0) {
    char path[48];
    snprintf(path, sizeof path, "/proc/%d/schedstat", pid);
    sp->peer_fd = open(path, O_RDONLY | O_CLOEXEC);
  }
  // reading: the window's weighing starts again, both threads' CPU from the same moment
  if (!sp->away) spill_window(sp, uv_hrtime(), uv_metrics_idle_time(sp->timer.loop), spill_peer_cpu(sp), spill_own_cpu());
}

/** No more looks or flips; `closed` runs once libuv lets go of the timer. */
static inline void spill_close(spill_t *sp, uv_close_cb closed) {
  if (sp->peer_fd >= 0) close(sp->peer_fd);
  sp->peer_fd = -1;
  sp->closing = 1;
  uv_timer_stop(&sp->timer);
  uv_close((uv_handle_t *)&sp->timer, closed);
}

#endif
