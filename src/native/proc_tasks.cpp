#include "proc_tasks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
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

bool ProcFile::open(const char* path, int flags) {
    close();
    if (!standard_descriptors_open()) return false;
    struct stat expected, got;
    if (stat(path, &expected) != 0) return false;
    int low = ::open(path, flags | O_CLOEXEC);
    if (low < 0) return false;
    if (fstat(low, &got) != 0 || got.st_dev != expected.st_dev || got.st_ino != expected.st_ino) {
        return false;  // the number is already the program's: not ours to close
    }
    rlimit nofile{};
    rlim_t soft = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                      ? nofile.rlim_cur
                      : rlim_t{1} << 20;
    int high = fcntl(low, F_DUPFD_CLOEXEC, static_cast<int>(std::min<rlim_t>(soft / 2, 1024)));
    if (fstat(low, &got) == 0 && got.st_dev == expected.st_dev && got.st_ino == expected.st_ino) {
        ::close(low);
    }
    if (high < 0) return false;
    if (fstat(high, &got) != 0 || got.st_dev != expected.st_dev || got.st_ino != expected.st_ino) {
        return false;
    }
    fd_ = high;
    dev_ = expected.st_dev;
    ino_ = expected.st_ino;
    return true;
}

int ProcFile::fd() const {
    struct stat got;
    if (fd_ < 0 || fstat(fd_, &got) != 0 || got.st_dev != dev_ || got.st_ino != ino_) return -1;
    return fd_;
}

void ProcFile::close() {
    if (fd() >= 0) ::close(fd_);
    fd_ = -1;
}

bool list_process_threads(std::vector<pid_t>* out) {
    out->clear();
    ProcFile dir;
    if (!dir.open("/proc/self/task", O_RDONLY | O_DIRECTORY)) return false;
    // getdents64 into a buffer of our own: no DIR allocation.
    alignas(8) char buf[4096];
    bool ok = true;
    try {
        for (;;) {
            const int fd = dir.fd();
            if (fd < 0) {
                ok = false;  // the program closed it (and maybe reused the number)
                break;
            }
            long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
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
    if (!ok) out->clear();
    return ok;
}

}  // namespace spprof
