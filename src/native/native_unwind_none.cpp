// native_unwind_none.cpp: native_unwind.h for a build without libunwind's
// headers (CMake picks this unit instead of native_unwind.cpp). Everything
// else of spprof works; native unwinding reports why it is unavailable.
#include "native_unwind.h"
#include "unwind_tables.h"

namespace spprof::native {

bool unwinder_built() { return false; }

const char* load_unwinder() {
    return "spprof was built without libunwind (install Debian's libunwind-dev and rebuild)";
}

int unwind_current_thread(NativeStack& out) {
    out.depth = 0;
    out.flags = 0;
    return 0;
}

int unwind_signal_context(void*, uintptr_t*, int, EvalSplice*, uint16_t* flags) {
    *flags = 0;
    return 0;
}

const char* prepare_native_unwinding() { return load_unwinder(); }
void prepare_current_thread() {}
bool keep_unwind_tables_current() { return true; }
int refresh_unwind_tables() { return 0; }
bool unwind_tables_stale() { return false; }
bool unwind_tables_cover(uintptr_t) { return false; }
bool in_eval_loop(uintptr_t) { return false; }
void interpreter_range(uintptr_t* lo, uintptr_t* hi) {
    *lo = 0;
    *hi = 0;
}

}  // namespace spprof::native
