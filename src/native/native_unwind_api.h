// native_unwind_api.h: libunwind's entry points, bound at run time
// (native_unwind.cpp says why it is not linked). Shared by the unwinder and
// the unwind tables (unwind_tables.h); only for builds with libunwind's
// headers.
#pragma once

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <atomic>

namespace spprof::native {

struct UnwindApi {
    int (*getcontext)(unw_context_t*) = nullptr;
    int (*init_local)(unw_cursor_t*, unw_context_t*) = nullptr;
    int (*init_local2)(unw_cursor_t*, unw_context_t*, int) = nullptr;
    int (*step)(unw_cursor_t*) = nullptr;
    int (*get_reg)(unw_cursor_t*, int, unw_word_t*) = nullptr;
    int (*is_signal_frame)(unw_cursor_t*) = nullptr;
    void (*dyn_register)(unw_dyn_info_t*) = nullptr;
    void (*dyn_cancel)(unw_dyn_info_t*) = nullptr;
    void (*flush_cache_fn)(unw_addr_space_t, unw_word_t, unw_word_t) = nullptr;
    int (*set_cache_size)(unw_addr_space_t, size_t, int) = nullptr;
    unw_addr_space_t* local_space = nullptr;
    std::atomic<bool> ready{false};  // every pointer above is set (release/acquire)

    bool loaded() const { return ready.load(std::memory_order_acquire); }
    void flush_cache(unw_word_t lo, unw_word_t hi) const { flush_cache_fn(*local_space, lo, hi); }
};

UnwindApi& api();

}  // namespace spprof::native
