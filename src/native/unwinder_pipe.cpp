// unwinder_pipe.cpp: see unwinder_pipe.h.
#include "unwinder_pipe.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace spprof::native {
namespace {

std::vector<int*> g_candidates;  // pairs that read {-1, -1} before the first unwind
int* g_pipe = nullptr;           // libunwind's array, once found
dev_t g_dev = 0;
ino_t g_ino = 0;

struct Find {
    uintptr_t base;
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges;  // writable, file-backed
};

int on_object(struct dl_phdr_info* info, size_t, void* data) {
    auto* find = static_cast<Find*>(data);
    if (info->dlpi_addr != find->base) return 0;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)& ph = info->dlpi_phdr[i];
        if (ph.p_type == PT_LOAD && (ph.p_flags & PF_W) && ph.p_filesz > 0) {
            const uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
            find->ranges.emplace_back(lo, lo + ph.p_filesz);
        }
    }
    return 1;
}

bool is_pipe(int fd, struct stat* st) { return fstat(fd, st) == 0 && S_ISFIFO(st->st_mode); }

int high_floor() {
    rlimit nofile{};
    rlim_t soft = 1024;
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) soft = nofile.rlim_cur;
    return static_cast<int>(std::min<rlim_t>(soft / 2, 1024));
}

}  // namespace

void find_pipe_candidates(void* lib) {
    g_candidates.clear();
    struct link_map* map = nullptr;
    if (dlinfo(lib, RTLD_DI_LINKMAP, &map) != 0 || map == nullptr) return;
    Find find{static_cast<uintptr_t>(map->l_addr), {}};
    dl_iterate_phdr(on_object, &find);
    for (const auto& [lo, hi] : find.ranges) {
        for (uintptr_t p = (lo + 3) & ~uintptr_t{3}; p + 8 <= hi; p += 4) {
            int* pair = reinterpret_cast<int*>(p);
            if (pair[0] == -1 && pair[1] == -1) g_candidates.push_back(pair);
        }
    }
}

bool relocate_pipe(std::string* why) {
    std::vector<int*> found;
    for (int* pair : g_candidates) {
        struct stat r, w;
        if (pair[0] >= 0 && pair[1] >= 0 && pair[0] != pair[1] && is_pipe(pair[0], &r) &&
            is_pipe(pair[1], &w) && r.st_ino == w.st_ino && r.st_dev == w.st_dev) {
            found.push_back(pair);
        }
    }
    g_candidates.clear();
    if (found.size() != 1) {
        *why = found.empty() ? "its pipe was not found" : "its pipe was found more than once";
        return false;
    }
    int* pair = found[0];
    const int floor = high_floor();
    if (pair[0] < floor || pair[1] < floor) {
        const int r = fcntl(pair[0], F_DUPFD_CLOEXEC, floor);
        const int w = r < 0 ? -1 : fcntl(pair[1], F_DUPFD_CLOEXEC, floor);
        if (w < 0) {
            if (r >= 0) close(r);
            *why = "no free descriptor above the program's";
            g_pipe = pair;  // still watched where it is
        } else {
            const int old_r = pair[0], old_w = pair[1];
            pair[0] = r;  // no unwind runs meanwhile: the GIL, no session records native frames yet
            pair[1] = w;
            close(old_r);
            close(old_w);
            g_pipe = pair;
        }
    } else {
        g_pipe = pair;
    }
    struct stat st;
    if (fstat(g_pipe[0], &st) == 0) {
        g_dev = st.st_dev;
        g_ino = st.st_ino;
    }
    return why->empty();
}

bool pipe_intact() {
    if (g_pipe == nullptr) return true;  // not found: nothing to check against
    struct stat r, w;
    return is_pipe(g_pipe[0], &r) && is_pipe(g_pipe[1], &w) && r.st_ino == g_ino && w.st_ino == g_ino &&
           r.st_dev == g_dev;
}

}  // namespace spprof::native
