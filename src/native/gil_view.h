// gil_view.h: whether a thread holds the GIL, read from outside the
// interpreter's locking: by the signal handler (the interrupted thread
// itself) and by the wall-clock reader (another thread).
//
// The GIL records that it is taken (`locked`) and which thread state took it
// last (`last_holder`, kept after release). A thread holds it when it is
// taken and it was the last to take it. Both are word-sized, aligned fields
// written with atomic stores by the interpreter; they are read here with
// relaxed atomic loads, without any lock: ASYNC-SIGNAL-SAFE. Where the
// fields are is the compat layer's business (compat_internal.h).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace spprof {

// What a sample says about the GIL (SampleRecord::gil, the result's "gil"
// column, Sample.holds_gil in Python).
enum class GilHeld : uint8_t { unknown = 0, held = 1, released = 2 };

struct GilView {
    const char* gil = nullptr;  // the interpreter's struct _gil_runtime_state
    size_t locked_offset = 0;
    size_t holder_offset = 0;

    bool known() const { return gil != nullptr; }

    // ASYNC-SIGNAL-SAFE. Whether `tstate` holds the GIL now.
    bool held_by(const void* tstate) const {
        auto* locked = reinterpret_cast<const std::atomic<int>*>(gil + locked_offset);
        auto* holder = reinterpret_cast<const std::atomic<uintptr_t>*>(gil + holder_offset);
        return locked->load(std::memory_order_relaxed) != 0 &&
               holder->load(std::memory_order_relaxed) == reinterpret_cast<uintptr_t>(tstate);
    }
};

static_assert(sizeof(std::atomic<int>) == sizeof(int) && sizeof(std::atomic<uintptr_t>) == sizeof(void*),
              "the GIL's fields are read in place as atomics");

}  // namespace spprof
