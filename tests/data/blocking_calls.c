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
