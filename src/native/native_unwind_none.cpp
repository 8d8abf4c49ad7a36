// native_unwind_none.cpp: native_unwind.h for a build without libunwind's
// headers (CMake picks this unit instead of native_unwind.cpp). Everything
// else of spprof works; native unwinding reports why it is unavailable.
#include "native_unwind.h"

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

}  // namespace spprof::native
