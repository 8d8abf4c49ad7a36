/* Blocking calls made from C, the way much C code makes them: once, with no
 * retry on EINTR. tests/test_wall_blocking.py compiles this file into a
 * shared library and calls it through ctypes (which releases the GIL for the
 * call). A signal delivered to the thread while it waits ends poll() with
 * EINTR (whatever SA_RESTART says); each function returns -errno on failure,
 * so the caller sees it. */
#include <errno.h>
#include <poll.h>
#include <unistd.h>

/* poll() once on `fd` for POLLIN, up to `timeout_ms`: the number of ready
 * descriptors (0 on timeout) or -errno. */
int poll_once(int fd, int timeout_ms) {
    struct pollfd p;
    p.fd = fd;
    p.events = POLLIN;
    p.revents = 0;
    int r = poll(&p, 1, timeout_ms);
    return r < 0 ? -errno : r;
}

/* read() once, one byte from `fd`: the byte count or -errno. */
long read_once(int fd) {
    char c;
    ssize_t r = read(fd, &c, 1);
    return r < 0 ? -(long)errno : (long)r;
}

/* `calls` polls, with a zero timeout, of 128 pipes that are never ready:
 * most of the thread's CPU is spent inside poll(), in the kernel. The
 * number of calls that ended with EINTR (a signal raised while inside),
 * or -errno if the pipes could not be made. */
int poll_busy(int calls) {
    int fds[256];
    struct pollfd p[128];
    int n = 0, eintr = 0;
    for (int i = 0; i < 128; ++i) {
        if (pipe(fds + 2 * i) != 0) {
            int e = errno;
            for (int j = 0; j < 2 * n; ++j) close(fds[j]);
            return -e;
        }
        p[i].fd = fds[2 * i];
        p[i].events = POLLIN;
        p[i].revents = 0;
        ++n;
    }
    for (int c = 0; c < calls; ++c) {
        if (poll(p, n, 0) < 0 && errno == EINTR) ++eintr;
    }
    for (int j = 0; j < 2 * n; ++j) close(fds[j]);
    return eintr;
}
