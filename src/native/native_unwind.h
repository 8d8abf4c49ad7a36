// native_unwind.h: the native (C/C++) call stack of the calling thread, with
// libunwind (docs/design/native-frames.md).
//
// The unwind itself fills a fixed-size NativeStack: no allocation, no
// exception, bounded (kMaxNativeFrames steps, the stack pointer must grow
// at every step). That is the shape the SIGPROF handler will need; today
// only capture_native_stack() calls it, outside any handler. Before the
// handler may use it, the loader-lock guard of the design (registered
// unwind tables, FDE and _dl_find_object checks before each step) has to
// exist: libunwind 1.6.2 calls dl_iterate_phdr on a cache miss.
//
// libunwind is not linked: load_unwinder() dlopens libunwind.so.8 with
// RTLD_LOCAL (native_unwind.cpp says why). Built without libunwind's
// headers, native_unwind_none.cpp provides the same functions, and
// load_unwinder() says what is missing.
#pragma once

#include <cstdint>

namespace spprof::native {

inline constexpr int kMaxNativeFrames = 128;

struct NativeStack {
    enum Flags : uint16_t {
        kTruncated = 1,  // deeper than kMaxNativeFrames
        kStepError = 2,  // libunwind could not step past the last frame
        kBadFrame = 4,   // the stack pointer did not grow: stopped there
    };
    uint16_t depth = 0;
    uint16_t flags = 0;
    // Bit i set: ip[i] is the exact instruction (the leaf, or a frame a
    // signal interrupted); clear: a return address, one past the call.
    uint64_t exact_ip[2] = {0, 0};
    uintptr_t ip[kMaxNativeFrames];
    uintptr_t sp[kMaxNativeFrames];

    bool exact(int i) const { return (exact_ip[i >> 6] >> (i & 63)) & 1; }
};

// Whether this build has native unwinding compiled in (libunwind's headers
// were found). Constant for the build.
bool unwinder_built();

// Loads libunwind (once; later calls return the first answer). nullptr when
// it is usable, else why not, e.g. "spprof was built without libunwind
// (install libunwind-dev and rebuild)". Not async-signal-safe (dlopen);
// call with the GIL held.
const char* load_unwinder();

// Unwinds the calling thread into `out`, leaf first: out.ip[0] is the
// return address into the function that called unwind_current_thread.
// Returns out.depth; 0 when the unwinder is not loaded or libunwind could
// not start. No allocation in the loop.
int unwind_current_thread(NativeStack& out);

}  // namespace spprof::native
