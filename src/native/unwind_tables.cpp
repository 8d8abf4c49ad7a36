// unwind_tables.cpp: see unwind_tables.h.
#include "unwind_tables.h"

#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <libunwind.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include <atomic>
#include <cstdlib>
#include <mutex>

#include "native_unwind.h"
#include "native_unwind_api.h"
#include "unwinder_pipe.h"

namespace spprof::native {
namespace {

// One executable segment of a loaded object, with its object's
// .eh_frame_hdr search table.
struct Entry {
    unw_dyn_info_t info;          // what libunwind reads (registered)
    uintptr_t lo = 0, hi = 0;     // the segment
    const unsigned char* hdr = nullptr;  // the object's .eh_frame_hdr
    const int32_t* table = nullptr;      // (initial location, FDE) pairs, sorted
    uint32_t count = 0;
    uint32_t* range = nullptr;    // each FDE's pc_range (never freed)
    std::atomic<bool> live{false};
    bool seen = false;            // refresh() bookkeeping
};

constexpr int kMaxEntries = 2048;
Entry g_entries[kMaxEntries];
std::atomic<int> g_count{0};  // entries [0, count) are set up (release/acquire)
std::mutex g_mu;              // refresh() against refresh()
unsigned long long g_adds = 0, g_subs = 0;
bool g_counted = false;
std::atomic<uintptr_t> g_eval_lo{0}, g_eval_hi{0};
uintptr_t g_interp_lo = 0, g_interp_hi = 0;

uint64_t uleb(const unsigned char** p) {
    uint64_t r = 0;
    int shift = 0;
    unsigned char b;
    do {
        b = *(*p)++;
        if (shift < 64) r |= uint64_t{b & 0x7fu} << shift;
        shift += 7;
    } while (b & 0x80);
    return r;
}

void skip_leb(const unsigned char** p) {
    while (*(*p)++ & 0x80) {
    }
}

// Size of a DW_EH_PE-encoded value (0: not one we read).
int encoded_size(int enc) {
    switch (enc & 0x0f) {
        case 0x00: return 8;              // absptr
        case 0x02: case 0x0a: return 2;   // udata2, sdata2
        case 0x03: case 0x0b: return 4;   // udata4, sdata4
        case 0x04: case 0x0c: return 8;   // udata8, sdata8
        default: return 0;
    }
}

// The pc_range of the FDE at `fde` (its CIE says how it is encoded); 0
// when it cannot be read, so the FDE covers nothing.
uint32_t fde_range(const unsigned char* fde) {
    uint32_t length;
    memcpy(&length, fde, 4);
    if (length == 0 || length == 0xffffffffu) return 0;  // end, or 64-bit DWARF
    int32_t cie_offset;
    memcpy(&cie_offset, fde + 4, 4);
    const unsigned char* cie = fde + 4 - cie_offset;
    const unsigned char* p = cie + 8;  // length, CIE id
    const int version = *p++;
    const char* augmentation = reinterpret_cast<const char*>(p);
    p += strlen(augmentation) + 1;
    skip_leb(&p);  // code alignment
    skip_leb(&p);  // data alignment
    if (version == 1) {
        ++p;  // return address register
    } else {
        skip_leb(&p);
    }
    int fde_encoding = 0;
    if (augmentation[0] == 'z') {
        uleb(&p);
        for (const char* a = augmentation + 1; *a != '\0'; ++a) {
            if (*a == 'R') {
                fde_encoding = *p++;
            } else if (*a == 'L') {
                ++p;
            } else if (*a == 'P') {
                const int n = encoded_size(*p++);
                if (n == 0) return 0;
                p += n;
            } else if (*a != 'S' && *a != 'B') {
                return 0;
            }
        }
    }
    const int n = encoded_size(fde_encoding);
    if (n == 0) return 0;
    uint64_t range = 0;
    memcpy(&range, fde + 8 + n, static_cast<size_t>(n));
    return range > 0xffffffffu ? 0 : static_cast<uint32_t>(range);
}

void find_eval_loop() {
    if (g_eval_hi.load(std::memory_order_relaxed) != 0) return;
    void* eval = dlsym(RTLD_DEFAULT, "_PyEval_EvalFrameDefault");
    Dl_info info{};
    void* entry = nullptr;
    if (eval == nullptr || dladdr1(eval, &info, &entry, RTLD_DL_SYMENT) == 0 || entry == nullptr) {
        return;
    }
    const auto* sym = static_cast<const ElfW(Sym)*>(entry);
    const auto lo = reinterpret_cast<uintptr_t>(eval);
    g_eval_lo.store(lo, std::memory_order_relaxed);
    g_eval_hi.store(lo + (sym->st_size > 0 ? sym->st_size : 1), std::memory_order_release);
}

struct Scan {
    int added = 0;
};

int on_object(struct dl_phdr_info* info, size_t size, void* data) {
    auto* scan = static_cast<Scan*>(data);
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        g_adds = info->dlpi_adds;
        g_subs = info->dlpi_subs;
        g_counted = true;
    }
    const ElfW(Phdr)* eh = nullptr;
    const ElfW(Phdr)* dynamic = nullptr;
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        if (info->dlpi_phdr[i].p_type == PT_GNU_EH_FRAME) eh = &info->dlpi_phdr[i];
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) dynamic = &info->dlpi_phdr[i];
    }
    if (eh == nullptr) return 0;
    const auto* hdr = reinterpret_cast<const unsigned char*>(info->dlpi_addr + eh->p_vaddr);
    // Version 1; eh_frame_ptr pcrel|sdata4; fde_count udata4; a table of
    // datarel|sdata4 pairs: the only layout linkers write for a search table.
    if (hdr[0] != 1 || hdr[1] != 0x1b || hdr[2] != 0x03 || hdr[3] != 0x3b) return 0;
    uint32_t fde_count;
    memcpy(&fde_count, hdr + 8, 4);
    const auto eval_lo = g_eval_lo.load(std::memory_order_relaxed);
    for (int i = 0; i < info->dlpi_phnum; ++i) {
        const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
        const uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        const uintptr_t hi = lo + ph->p_memsz;
        if (eval_lo >= lo && eval_lo < hi) {
            g_interp_lo = lo;
            g_interp_hi = hi;
        }
        bool known = false;
        const int n = g_count.load(std::memory_order_relaxed);
        for (int k = 0; k < n; ++k) {
            Entry& e = g_entries[k];
            if (e.live.load(std::memory_order_relaxed) && e.lo == lo && e.hdr == hdr) {
                e.seen = true;
                known = true;
                break;
            }
        }
        if (known || n >= kMaxEntries) continue;
        auto* range = static_cast<uint32_t*>(calloc(fde_count ? fde_count : 1, sizeof(uint32_t)));
        if (range == nullptr) continue;
        const auto* table = reinterpret_cast<const int32_t*>(hdr + 12);
        for (uint32_t j = 0; j < fde_count; ++j) range[j] = fde_range(hdr + table[2 * j + 1]);
        Entry& e = g_entries[n];
        memset(&e.info, 0, sizeof e.info);
        e.info.start_ip = lo;
        e.info.end_ip = hi;
        if (dynamic != nullptr) {
            for (const auto* d = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + dynamic->p_vaddr);
                 d->d_tag != DT_NULL; ++d) {
                if (d->d_tag == DT_PLTGOT) e.info.gp = d->d_un.d_ptr;
            }
        }
        e.info.format = UNW_INFO_FORMAT_REMOTE_TABLE;
        e.info.u.rti.name_ptr = reinterpret_cast<unw_word_t>(info->dlpi_name);
        e.info.u.rti.segbase = reinterpret_cast<unw_word_t>(hdr);
        e.info.u.rti.table_data = reinterpret_cast<unw_word_t>(table);
        // In words of the table (libunwind multiplies by the word size).
        e.info.u.rti.table_len = fde_count * 8 / sizeof(unw_word_t);
        e.lo = lo;
        e.hi = hi;
        e.hdr = hdr;
        e.table = table;
        e.count = fde_count;
        e.range = range;
        e.seen = true;
        api().dyn_register(&e.info);
        e.live.store(true, std::memory_order_relaxed);
        g_count.store(n + 1, std::memory_order_release);
        ++scan->added;
    }
    return 0;
}

int count_only(struct dl_phdr_info* info, size_t size, void* data) {
    auto* changed = static_cast<bool*>(data);
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        *changed = !g_counted || info->dlpi_adds != g_adds || info->dlpi_subs != g_subs;
    } else {
        *changed = true;
    }
    return 1;  // the counters are the same in every callback
}

// ASYNC-SIGNAL-SAFE. Whether an FDE of `e` covers `ip`.
bool fde_covers(const Entry& e, uintptr_t ip) {
    const int64_t rel = static_cast<int64_t>(ip - reinterpret_cast<uintptr_t>(e.hdr));
    uint32_t lo = 0, hi = e.count;
    while (lo < hi) {
        const uint32_t mid = lo + (hi - lo) / 2;
        if (e.table[2 * mid] <= rel) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if (lo == 0) return false;
    return rel < int64_t{e.table[2 * (lo - 1)]} + int64_t{e.range[lo - 1]};
}

}  // namespace

int refresh_unwind_tables() {
    if (!api().loaded()) return 0;
    std::lock_guard<std::mutex> lock(g_mu);
    find_eval_loop();
    // Our own thread must not take a sample while it holds the loader lock
    // (its handler would check tables we are writing, harmless, but an
    // unwind from here must not meet our half-registered entry either).
    sigset_t only, saved;
    sigemptyset(&only);
    sigaddset(&only, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &only, &saved);
    const int n = g_count.load(std::memory_order_relaxed);
    for (int k = 0; k < n; ++k) g_entries[k].seen = false;
    Scan scan;
    dl_iterate_phdr(on_object, &scan);
    for (int k = 0; k < n; ++k) {
        Entry& e = g_entries[k];
        if (e.live.load(std::memory_order_relaxed) && !e.seen) {
            // Unloaded: never read again (the handler checks `live` and the
            // loader's own answer); libunwind forgets it and what it cached.
            e.live.store(false, std::memory_order_release);
            api().dyn_cancel(&e.info);
            api().flush_cache(e.lo, e.hi);
        }
    }
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    int live = 0;
    for (int k = 0; k < g_count.load(std::memory_order_relaxed); ++k) {
        if (g_entries[k].live.load(std::memory_order_relaxed)) ++live;
    }
    return live;
}

const char* prepare_native_unwinding() {
    if (const char* why = load_unwinder()) return why;
    prepare_current_thread();
    refresh_unwind_tables();
    return nullptr;
}

bool keep_unwind_tables_current() {
    if (unwind_tables_stale()) refresh_unwind_tables();
    return pipe_intact();
}

bool unwind_tables_stale() {
    bool changed = true;
    dl_iterate_phdr(count_only, &changed);
    return changed;
}

bool unwind_tables_cover(uintptr_t ip) {
    const int n = g_count.load(std::memory_order_acquire);
    for (int k = 0; k < n; ++k) {
        const Entry& e = g_entries[k];
        if (ip < e.lo || ip >= e.hi || !e.live.load(std::memory_order_acquire)) continue;
        if (!fde_covers(e, ip)) return false;
        struct dl_find_object found;
        return _dl_find_object(reinterpret_cast<void*>(ip), &found) == 0 &&
               found.dlfo_eh_frame == static_cast<const void*>(e.hdr);
    }
    return false;
}

bool in_eval_loop(uintptr_t ip) {
    const uintptr_t hi = g_eval_hi.load(std::memory_order_acquire);  // set after lo
    return ip < hi && ip >= g_eval_lo.load(std::memory_order_relaxed);
}

void interpreter_range(uintptr_t* lo, uintptr_t* hi) {
    std::lock_guard<std::mutex> lock(g_mu);
    *lo = g_interp_lo;
    *hi = g_interp_hi;
}

}  // namespace spprof::native
