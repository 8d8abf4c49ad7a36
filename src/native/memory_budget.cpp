#include "memory_budget.h"

#include <algorithm>
#include <cstdio>

namespace spprof {

namespace {
constexpr size_t kThreadEntryBytes = 96;
}

size_t buffer_slots(size_t limit_bytes, size_t slot_bytes) {
    // At most a quarter of the memory budget (and 8 MiB): the buffer only
    // has to hold what arrives between two drains.
    size_t budget = std::min<size_t>(limit_bytes / 4, 8u << 20);
    return std::max<size_t>(16, budget / slot_bytes);
}

size_t memory_in_use(const MemoryUse& use) {
    return use.buffer + use.aggregator + use.codes + use.resolver + use.thread_entries * kThreadEntryBytes;
}

size_t resolver_budget(size_t limit_bytes, const MemoryUse& use) {
    // A reserve for what grows between drains without a check of its own
    // (per-thread records of new threads, tombstones of dying code).
    size_t reserve = std::min<size_t>(limit_bytes / 32, 64u << 10);
    size_t fixed = use.buffer + use.thread_entries * kThreadEntryBytes + reserve;
    return limit_bytes > fixed ? limit_bytes - fixed : 0;
}

std::string memory_warning(size_t limit_bytes, bool allocation_failed) {
    if (allocation_failed) {
        return "spprof: out of memory while storing samples; samples that could not be "
               "stored are dropped (counted in stats().dropped_samples)";
    }
    char limit[64];
    snprintf(limit, sizeof limit, "%.3g MB", static_cast<double>(limit_bytes) / (1 << 20));
    return std::string("spprof: the memory limit of ") + limit +
           " is reached; samples from now on are dropped (counted in "
           "stats().dropped_samples). Raise memory_limit_mb to keep them";
}

}  // namespace spprof
