// frame_walker.h: reads the calling thread's Python stack into raw
// (code object address, instruction index) pairs.
//
// ASYNC-SIGNAL-SAFE: plain loads only; every pointer is checked (non-null,
// aligned, in the user address range) and every frame's code object must
// have PyCode_Type, before it is used; the walk is bounded and stops on a
// cycle. It never touches reference counts or calls the Python C API.
#pragma once

#include <Python.h>

#include <sys/types.h>

#include <cstdint>

#include "sample_buffer.h"

namespace spprof {

struct WalkResult {
    uint16_t depth = 0;       // frames written, leaf first
    bool truncated = false;   // more frames existed than `max_frames`
    bool invalid = false;     // an invalid pointer or a cycle stopped the walk
    bool recovered = false;   // walked from the enclosing eval loop (compat.h)
    int16_t gc_pos = -1;      // index in `out` of the frame `gc_frame`, if met
};

// The runs of the evaluation loop a walk met, innermost first: each call of
// the loop runs one or more Python frames (calls between Python functions
// stay in the same run); a run ends where the loop was entered from C. For
// each run: the index (among the frames written) of its innermost frame,
// and an address inside the C stack frame of the loop's call that runs it
// (its C frame on 3.11/3.12, its entry shim on 3.13), which tells that call
// apart on the native stack (native_unwind.h).
struct EvalRuns {
    int count = 0;
    uint16_t first_frame[kMaxDepth];
    uintptr_t anchor[kMaxDepth];
};

// Walk the frames of `tstate`, which must be the calling thread's own thread
// state (its frames cannot change while this runs). When `gc_frame` is not
// null, the index of that frame among those written is reported as gc_pos.
// With `runs`, the runs of the frames written are reported there.
// ASYNC-SIGNAL-SAFE.
WalkResult walk_own_stack(PyThreadState* tstate, RawFrame* out, int max_frames,
                          const void* gc_frame = nullptr, EvalRuns* runs = nullptr);

// Walk the frames of another thread of this process: `tstate` is thread
// `tid`'s thread state with unique id `uid`, as last seen with the GIL
// held; the thread may have exited (its state freed, the memory unmapped or
// reused) or be running. Everything is copied with process_vm_readv and
// checked: the state must still be that thread's (else `*gone`), and the
// thread must still be at the same frame after the walk (else it is tried
// once more, then reported `invalid`). For threads that are blocked (the
// point of wall-clock sampling) the frames do not change. Never faults;
// takes no lock; not for a signal handler (it is not needed there).
WalkResult walk_other_stack(PyThreadState* tstate, pid_t tid, uint64_t uid, RawFrame* out,
                            int max_frames, bool* gone);

}  // namespace spprof
