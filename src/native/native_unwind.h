// native_unwind.h: the native (C/C++) call stack of a thread, with
// libunwind (docs/design/native-frames.md).
//
// Two entry points: unwind_current_thread() for capture_native_stack()
// (outside any handler), and unwind_signal_context() for the SIGPROF
// handler, which keeps the handler's contract: no allocation, no
// exception, bounded (kMaxNativeFrames steps, the stack pointer must grow
// at every step), and never the loader lock: before each step the frame's
// instruction must be covered by the unwind tables spprof registered with
// libunwind (unwind_tables.h), else the unwind ends there. libunwind's own
// cache lock is the one lock allowed (the contract's written exception):
// it holds it only with every signal blocked, so a handler never waits for
// it on its own thread.
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

// The calling thread's block of libunwind's thread-local variables,
// allocated now if libunwind is loaded: its step reads them where a DWARF
// step fails (address validation), and their first use in a thread
// allocates the block (malloc), which a handler must never be the one to
// do. Called as spprof's threads and hooked Python threads start, and by
// start() for its caller. Threads without Python may still meet it there
// (a frame whose unwind info libunwind cannot use): counted nowhere, rare.
void prepare_current_thread();

// What a signal-time unwind met (NativeTrace::flags).
enum TraceFlags : uint16_t {
    kTraceTruncated = 1,   // deeper than the room given
    kTraceStepError = 2,   // libunwind could not step on
    kTraceBadFrame = 4,    // the stack pointer did not grow
    kTraceUncovered = 8,   // a frame outside the registered unwind tables
    kTraceReachedEval = 16,  // stopped at the evaluation loop (Python runs there)
};

// Where a Python thread's evaluation-loop runs are on its native stack
// (frame_walker.h EvalRuns): `anchor[j]` is an address inside the C frame
// of the loop's call that runs run j (innermost first, so ascending); the
// unwind writes in `eval_at[j]` the index of that call's frame among the
// ips it records, or -1 when it did not find it.
struct EvalSplice {
    int count = 0;
    const uintptr_t* anchor = nullptr;
    int16_t* eval_at = nullptr;
};

// ASYNC-SIGNAL-SAFE (see above). The native frames of the thread a signal
// interrupted, from its context (the handler's third argument), leaf first
// into ips[0..max): ips[0] is the interrupted instruction, the others
// return addresses. Without `splice` (a thread without Python): its whole
// stack. With a splice of no runs (a Python thread whose Python frames
// could not be read): up to the first frame of the evaluation loop
// (kTraceReachedEval), the C code the thread runs. Else up to and including
// the loop's call that runs the outermost run, each run's call found by its
// anchor: the frames between two of them are the C code one run called on
// its way to the next (a C function calling back into Python). Returns the
// depth (0 when the unwinder is not loaded).
int unwind_signal_context(void* ucontext, uintptr_t* ips, int max, EvalSplice* splice,
                          uint16_t* flags);

}  // namespace spprof::native
