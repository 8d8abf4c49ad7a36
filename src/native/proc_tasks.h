// proc_tasks.h: the process's kernel threads, as /proc/self/task lists
// them, and the rule for opening such files at all.
//
// spprof opens /proc files only briefly and off the signal path. A program
// that closes one of its standard descriptors (0-2) and opens a file in its
// place expects that file to get the lowest number; a descriptor of ours
// taken in between would take it. So nothing is opened while one of 0-2 is
// closed: the caller tries again later.
#pragma once

#include <sys/types.h>

#include <vector>

namespace spprof {

// Whether descriptors 0, 1 and 2 are all open now.
bool standard_descriptors_open();

// Every thread of this process now, in `out` (cleared first). False when
// it could not be listed (a standard descriptor closed, no descriptor or
// memory left): `out` is then empty.
bool list_process_threads(std::vector<pid_t>* out);

}  // namespace spprof

namespace spprof {

// A /proc file opened out of the program's way. open() refuses while one
// of 0-2 is closed, and moves the descriptor from the number open() gave
// (the lowest free one, which the program may expect to get next) to a
// high one at once (from min(RLIMIT_NOFILE / 2, 1024) up, as the
// perf_event descriptors). The descriptor is used and closed only while it
// still is that file (device and inode of the path, checked with fstat): a
// program that closed it and reused the number (a daemonizer's closerange,
// then its own pipes) keeps its file untouched.
class ProcFile {
public:
    ProcFile() = default;
    ProcFile(const ProcFile&) = delete;
    ProcFile& operator=(const ProcFile&) = delete;
    ProcFile(ProcFile&& other) noexcept { take(other); }
    ProcFile& operator=(ProcFile&& other) noexcept {
        if (this != &other) {
            close();
            take(other);
        }
        return *this;
    }
    ~ProcFile() { close(); }

    bool open(const char* path, int flags);
    // The descriptor, or -1 when it no longer is the file opened.
    int fd() const;
    // Whether a descriptor was opened and not closed or forgotten since.
    bool is_open() const { return fd_ >= 0; }
    void close();
    // Let go of the descriptor without closing it (it is no longer ours:
    // fd() said so).
    void forget() { fd_ = -1; }

private:
    void take(ProcFile& other) {
        fd_ = other.fd_;
        dev_ = other.dev_;
        ino_ = other.ino_;
        other.fd_ = -1;
    }
    int fd_ = -1;
    dev_t dev_ = 0;
    ino_t ino_ = 0;
};

}  // namespace spprof
