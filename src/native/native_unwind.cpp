// native_unwind.cpp: native unwinding with libunwind, loaded at run time.
//
// Why dlopen(RTLD_LOCAL) and not a link (measured, native-frames.md "Build
// changes"): Debian's libunwind.a is not position independent, so it cannot
// go into our shared object; and libunwind.so.8 exports
// _Unwind_RaiseException and the rest of the C++ exception ABI plus a weak
// backtrace(), so as a DT_NEEDED of _native it could take over C++
// exception unwinding of libraries loaded after it. Loaded locally nothing
// binds to it, and a machine without the libunwind8 runtime package gets
// "unavailable" instead of an import error. Only the headers are used at
// build time (UNW_LOCAL_ONLY: the _UL* local-unwinding entry points).
#include "native_unwind.h"

#define UNW_LOCAL_ONLY
#include <dlfcn.h>
#include <libunwind.h>

#include <atomic>
#include <cstdio>

namespace spprof::native {
namespace {

// The entry points we use, by their exported names. libunwind.h maps
// unw_getcontext, unw_init_local, ... to these with macros; taking them
// from dlsym keeps the macros' names out of our code.
struct Api {
    int (*getcontext)(unw_context_t*);
    int (*init_local)(unw_cursor_t*, unw_context_t*);
    int (*step)(unw_cursor_t*);
    int (*get_reg)(unw_cursor_t*, int, unw_word_t*);
    int (*is_signal_frame)(unw_cursor_t*);
};

Api g_api;
std::atomic<bool> g_loaded{false};  // g_api complete (release/acquire)
const char* g_reason = nullptr;      // why not, once tried
bool g_tried = false;
char g_reason_text[512];

constexpr const char* kLibrary = "libunwind.so.8";

template <typename F>
bool bind(void* lib, const char* name, F& out) {
    out = reinterpret_cast<F>(dlsym(lib, name));
    return out != nullptr;
}

void set_reason(const char* what, const char* detail) {
    std::snprintf(g_reason_text, sizeof g_reason_text, "%s%s%s", what, detail ? ": " : "",
                  detail ? detail : "");
    g_reason = g_reason_text;
}

// Steps from an initialized cursor: skips `skip` frames, then records up to
// kMaxNativeFrames. Plain loads and libunwind calls only, fixed bounds: the
// handler's unwind will share it (behind the loader-lock guard).
int walk(unw_cursor_t& cursor, int skip, NativeStack& out) {
    out.depth = 0;
    out.flags = 0;
    out.exact_ip[0] = out.exact_ip[1] = 0;
    bool next_exact = false;
    uintptr_t last_sp = 0;
    for (int steps = 0; steps < skip + kMaxNativeFrames + 1; ++steps) {
        if (steps >= skip) {
            if (out.depth == kMaxNativeFrames) {
                out.flags |= NativeStack::kTruncated;
                break;
            }
            unw_word_t ip = 0, sp = 0;
            if (g_api.get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0) break;
            if (g_api.get_reg(&cursor, UNW_REG_SP, &sp) < 0) break;
            if (out.depth > 0 && sp <= last_sp) {
                out.flags |= NativeStack::kBadFrame;
                break;
            }
            int i = out.depth++;
            out.ip[i] = static_cast<uintptr_t>(ip);
            out.sp[i] = static_cast<uintptr_t>(sp);
            if (next_exact) out.exact_ip[i >> 6] |= uint64_t{1} << (i & 63);
            last_sp = static_cast<uintptr_t>(sp);
        }
        // The frame after a signal frame was interrupted, not called.
        next_exact = g_api.is_signal_frame(&cursor) > 0;
        int r = g_api.step(&cursor);
        if (r == 0) break;
        if (r < 0) {
            out.flags |= NativeStack::kStepError;
            break;
        }
    }
    return out.depth;
}

}  // namespace

bool unwinder_built() { return true; }

const char* load_unwinder() {
    if (g_tried) return g_reason;
    g_tried = true;
    void* lib = dlopen(kLibrary, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        set_reason("cannot load libunwind.so.8 (install Debian's libunwind8)", dlerror());
        return g_reason;
    }
    Api api{};
    if (!bind(lib, "_Ux86_64_getcontext", api.getcontext) ||
        !bind(lib, "_ULx86_64_init_local", api.init_local) || !bind(lib, "_ULx86_64_step", api.step) ||
        !bind(lib, "_ULx86_64_get_reg", api.get_reg) ||
        !bind(lib, "_ULx86_64_is_signal_frame", api.is_signal_frame)) {
        set_reason("libunwind.so.8 lacks an entry point spprof uses", dlerror());
        dlclose(lib);
        return g_reason;
    }
    g_api = api;
    g_loaded.store(true, std::memory_order_release);
    // The first unwind of the process initializes libunwind (a mutex, a
    // pipe): done here, never first in a handler.
    NativeStack warm;
    unwind_current_thread(warm);
    return nullptr;
}

// noinline: the context taken here must stay valid while we step from it,
// so the unwind runs in this very frame.
__attribute__((noinline)) int unwind_current_thread(NativeStack& out) {
    out.depth = 0;
    out.flags = 0;
    if (!g_loaded.load(std::memory_order_acquire)) return 0;
    unw_context_t context;
    unw_cursor_t cursor;
    if (g_api.getcontext(&context) != 0 || g_api.init_local(&cursor, &context) != 0) return 0;
    int depth = walk(cursor, 1, out);  // frame 0 is this function
    asm volatile("" ::: "memory");     // no tail call: our frame must outlive walk()
    return depth;
}

}  // namespace spprof::native
