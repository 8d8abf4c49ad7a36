#include "proc_tasks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <new>

namespace spprof {

bool standard_descriptors_open() {
    for (int fd = 0; fd < 3; ++fd) {
        if (fcntl(fd, F_GETFD) < 0) return false;
    }
    return true;
}

bool list_process_threads(std::vector<pid_t>* out) {
    out->clear();
    if (!standard_descriptors_open()) return false;
    int dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) return false;
    // getdents64 into a buffer of our own: no DIR allocation.
    alignas(8) char buf[4096];
    bool ok = true;
    try {
        for (;;) {
            long n = syscall(SYS_getdents64, dir, buf, sizeof buf);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0) {
                ok = false;
                break;
            }
            if (n == 0) break;
            for (long pos = 0; pos < n;) {
                // struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name
                const char* rec = buf + pos;
                unsigned short reclen;
                __builtin_memcpy(&reclen, rec + 16, sizeof reclen);
                const char* name = rec + 19;
                if (name[0] >= '1' && name[0] <= '9') {
                    char* end = nullptr;
                    long tid = strtol(name, &end, 10);
                    if (end != name && *end == '\0' && tid > 0) out->push_back(static_cast<pid_t>(tid));
                }
                if (reclen == 0) break;
                pos += reclen;
            }
        }
    } catch (const std::bad_alloc&) {
        ok = false;
    }
    close(dir);
    if (!ok) out->clear();
    return ok;
}

}  // namespace spprof
