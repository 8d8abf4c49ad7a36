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

#include <dlfcn.h>

#include "native_unwind_api.h"
#include "unwind_tables.h"
#include "unwinder_pipe.h"

#include <atomic>
#include <cstdio>
#include <string>

namespace spprof::native {

namespace {
constinit UnwindApi g_api;  // constant-initialized: no guard, readable from a handler
}  // namespace

UnwindApi& api() { return g_api; }

namespace {

const char* g_reason = nullptr;      // why not, once tried
size_t g_tls_module = 0;             // libunwind's TLS module id (0: none)
bool g_tried = false;
char g_reason_text[512];

constexpr const char* kLibrary = "libunwind.so.8";
constexpr size_t kUnwindCacheFrames = 16384;

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
            if (api().get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0) break;
            if (api().get_reg(&cursor, UNW_REG_SP, &sp) < 0) break;
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
        next_exact = api().is_signal_frame(&cursor) > 0;
        int r = api().step(&cursor);
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
    UnwindApi& a = api();
    if (!bind(lib, "_Ux86_64_getcontext", a.getcontext) ||
        !bind(lib, "_ULx86_64_init_local", a.init_local) ||
        !bind(lib, "_ULx86_64_init_local2", a.init_local2) || !bind(lib, "_ULx86_64_step", a.step) ||
        !bind(lib, "_ULx86_64_get_reg", a.get_reg) ||
        !bind(lib, "_ULx86_64_is_signal_frame", a.is_signal_frame) ||
        !bind(lib, "_U_dyn_register", a.dyn_register) || !bind(lib, "_U_dyn_cancel", a.dyn_cancel) ||
        !bind(lib, "_Ux86_64_flush_cache", a.flush_cache_fn) ||
        !bind(lib, "_ULx86_64_local_addr_space", a.local_space) ||
        !bind(lib, "_ULx86_64_set_cache_size", a.set_cache_size)) {
        set_reason("libunwind.so.8 lacks an entry point spprof uses", dlerror());
        dlclose(lib);
        return g_reason;
    }
    // A step whose frame is not in libunwind's cache parses the frame's FDE
    // into an entry of its own memory pool, and an FDE found through the
    // tables spprof registers (unwind_tables.h) is never given back
    // (libunwind 1.6.2 frees only those it found itself): ~12 bytes per
    // sample measured at 1 ms with the default cache of 1024 frames. With
    // 16384 the misses, and the growth, stop once the program's hot code is
    // cached (0-8 KB per 1000 samples after a few seconds, measured).
    if (dlinfo(lib, RTLD_DI_TLS_MODID, &g_tls_module) != 0) g_tls_module = 0;
    prepare_current_thread();
    find_pipe_candidates(lib);  // before anything of libunwind runs
    a.set_cache_size(*a.local_space, kUnwindCacheFrames, 0);
    a.ready.store(true, std::memory_order_release);
    // The first unwind of the process initializes libunwind (a mutex, a
    // pipe): done here, never first in a handler; then its pipe is moved out
    // of the program's way (unwinder_pipe.h).
    NativeStack warm;
    unwind_current_thread(warm);
    std::string why;
    if (!relocate_pipe(&why)) {
        a.ready.store(false, std::memory_order_release);
        set_reason("libunwind's descriptors cannot be moved out of the program's way", why.c_str());
        return g_reason;
    }
    return nullptr;
}

// noinline: the context taken here must stay valid while we step from it,
// so the unwind runs in this very frame.
__attribute__((noinline)) int unwind_current_thread(NativeStack& out) {
    out.depth = 0;
    out.flags = 0;
    if (!api().loaded()) return 0;
    unw_context_t context;
    unw_cursor_t cursor;
    if (api().getcontext(&context) != 0 || api().init_local(&cursor, &context) != 0) return 0;
    int depth = walk(cursor, 1, out);  // frame 0 is this function
    asm volatile("" ::: "memory");     // no tail call: our frame must outlive walk()
    return depth;
}

namespace {
struct TlsIndex {  // glibc's tls_index
    unsigned long module;
    unsigned long offset;
};
}  // namespace
extern "C" void* __tls_get_addr(TlsIndex*);

void prepare_current_thread() {
    if (g_tls_module == 0 || !api().loaded()) return;
    TlsIndex index{g_tls_module, 0};
    __tls_get_addr(&index);
}

// ASYNC-SIGNAL-SAFE: see native_unwind.h.
int unwind_signal_context(void* ucontext, uintptr_t* ips, int max, EvalSplice* splice,
                          uint16_t* flags) {
    *flags = 0;
    const UnwindApi& a = api();
    const int runs = splice == nullptr ? 0 : splice->count;
    for (int j = 0; j < runs; ++j) splice->eval_at[j] = -1;
    if (!a.loaded() || max <= 0) return 0;
    unw_cursor_t cursor;
    if (a.init_local2(&cursor, static_cast<unw_context_t*>(ucontext), UNW_INIT_SIGNAL_FRAME) != 0) {
        *flags |= kTraceStepError;
        return 0;
    }
    const bool stop_at_eval = splice != nullptr && runs == 0;
    int depth = 0;
    int next_run = 0;        // the innermost run not placed yet
    int pending = -1;        // an eval-loop frame whose extent is not known yet
    uintptr_t pending_sp = 0;
    uintptr_t last_sp = 0;
    for (;;) {
        unw_word_t ip = 0, sp = 0;
        if (a.get_reg(&cursor, UNW_REG_IP, &ip) < 0 || ip == 0) break;
        if (a.get_reg(&cursor, UNW_REG_SP, &sp) < 0) break;
        if (depth > 0 && sp <= last_sp) {
            *flags |= kTraceBadFrame;
            break;
        }
        if (pending >= 0) {
            // The loop's call at `pending` holds its locals in [its SP, this
            // caller's SP): a run whose anchor is there is the one it runs.
            // An anchor below was not met in any call of the loop (-1).
            while (next_run < runs && splice->anchor[next_run] < pending_sp) ++next_run;
            if (next_run < runs && splice->anchor[next_run] < sp) {
                splice->eval_at[next_run++] = static_cast<int16_t>(pending);
                if (next_run == runs) {
                    *flags |= kTraceReachedEval;
                    break;  // the rest is how the thread reached its outermost run
                }
            }
            pending = -1;
        }
        const bool eval = in_eval_loop(ip);
        if (stop_at_eval && eval) {
            *flags |= kTraceReachedEval;
            break;
        }
        if (depth == max) {
            *flags |= kTraceTruncated;
            break;
        }
        if (eval && runs > 0) {
            pending = depth;
            pending_sp = sp;
        }
        ips[depth++] = ip;
        last_sp = sp;
        // Frame 0 was interrupted at `ip`; the others return to it (the
        // call is the byte before). No table, no step: dl_iterate_phdr
        // would be next.
        if (!unwind_tables_cover(depth == 1 ? ip : ip - 1)) {
            *flags |= kTraceUncovered;
            break;
        }
        const int r = a.step(&cursor);
        if (r == 0) break;
        if (r < 0) {
            *flags |= kTraceStepError;
            break;
        }
    }
    return depth;
}

}  // namespace spprof::native
