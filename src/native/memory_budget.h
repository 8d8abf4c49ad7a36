// memory_budget.h: the session's memory limit, split between its parts.
//
// The raw-sample buffer takes a fixed share; the aggregator, the code
// registry and the resolver share what is left after the buffer, the
// per-thread records and a small reserve. Samples that do not fit are
// dropped and counted, with one warning.
#pragma once

#include <cstddef>
#include <string>

namespace spprof {

struct MemoryUse {
    size_t buffer = 0;
    size_t aggregator = 0;
    size_t codes = 0;
    size_t resolver = 0;
    size_t thread_entries = 0;  // per-thread records (names, health)
};

// Slots of the raw-sample buffer for a memory limit.
size_t buffer_slots(size_t limit_bytes, size_t slot_bytes);
// Bytes the session holds.
size_t memory_in_use(const MemoryUse& use);
// Bytes the aggregator, code registry and resolver may hold together.
size_t resolver_budget(size_t limit_bytes, const MemoryUse& use);
// The one warning when samples start being dropped.
std::string memory_warning(size_t limit_bytes, bool allocation_failed);

}  // namespace spprof
