// Included ahead of src/native/udp-batch.c (cc -include) by test/udp-batch.test.ts: while
// the environment holds UDP_BATCH_TEST_SEND_FULL, every sendmmsg finds the send buffer full
// (EAGAIN), as a real one does when a burst outruns the link. On loopback it never is:
// a datagram leaves the send buffer the moment it is handed to the receiver.
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static int full_send_buffer_sendmmsg(int fd, struct mmsghdr *msgs, unsigned int n, int flags) {
  if (getenv("UDP_BATCH_TEST_SEND_FULL")) {
    errno = EAGAIN;
    return -1;
  }
  return (int)syscall(SYS_sendmmsg, fd, msgs, n, flags);
}
#define sendmmsg full_send_buffer_sendmmsg
