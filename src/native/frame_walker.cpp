#include "frame_walker.h"

#include "compat.h"

#include <sys/uio.h>
#include <unistd.h>

namespace spprof {
namespace {

// How many frames we are willing to look at in total: the frames kept
// (max_frames, kMaxDepth) plus the C-stack entry and shim frames between
// them. The walk stops as soon as max_frames Python frames are kept (the
// stack is then marked truncated, its innermost frames kept): frames outside
// the thread's data stack (every coroutine and generator of an await chain)
// cost a system call or two each, so the cost of a sample must not grow with
// the depth of the program's stack.
constexpr int kMaxWalk = 2 * kMaxDepth + 16;

inline bool plausible_pointer(const void* p) {
    auto v = reinterpret_cast<uintptr_t>(p);
    // Non-null, beyond the zero page, 8-byte aligned, user-space canonical.
    return v >= 4096 && (v & 7u) == 0 && v < (uintptr_t{1} << 47);
}

// -- reads of memory that may not be mapped ---------------------------------
//
// A pointer the walk finds can be stale: on 3.11/3.12 a signal that lands in
// an eval loop's prologue finds that loop's C frame not yet filled in (stack
// garbage, often the address of a frame that is long gone, in memory that may
// have been unmapped since). Frames in the thread's own data stack, below its
// top, are live and read in place. Anything else (generator and coroutine
// frames, entry frames on the C stack, C frames, and the code objects of
// such frames) is copied with process_vm_readv, which fails with EFAULT on an
// unmapped address instead of faulting. ASYNC-SIGNAL-SAFE: system calls only.

bool copy_unsafe(void* dst, const void* src, size_t n) {
    iovec local{dst, n};
    iovec remote{const_cast<void*>(src), n};
    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == static_cast<ssize_t>(n);
}

// Whether [p, p + n) lies in a live part of the thread's data stack.
bool in_data_stack(PyThreadState* tstate, const void* p, size_t n) {
    auto lo = reinterpret_cast<uintptr_t>(p);
    const _PyStackChunk* chunk = tstate->datastack_chunk;
    for (int i = 0; chunk != nullptr && i < 64; ++i, chunk = chunk->previous) {
        auto start = reinterpret_cast<uintptr_t>(chunk);
        uintptr_t end = start + chunk->size;
        if (i == 0) end = reinterpret_cast<uintptr_t>(tstate->datastack_top);
        if (lo >= start && lo + n <= end) return true;
    }
    return false;
}

// The frame at `frame`, in place when it is in the data stack of `tstate`
// (the calling thread's own), else copied into `scratch`; nullptr when it
// cannot be read. `copied` says which. Without `tstate` (another thread's
// frames) always copied.
const compat::InterpreterFrame* read_frame(PyThreadState* tstate,
                                           const compat::InterpreterFrame* frame,
                                           compat::InterpreterFrame* scratch, bool* copied) {
    if (tstate != nullptr && in_data_stack(tstate, frame, sizeof *frame)) {
        *copied = false;
        return frame;
    }
    *copied = true;
    return copy_unsafe(scratch, frame, sizeof *scratch) ? scratch : nullptr;
}

// Walk from `frame`, the current frame of C frame `cf` (3.11/3.12; unused
// on 3.13). `cf_copy` holds a readable copy of *cf.
WalkResult walk_chain(PyThreadState* tstate, const compat::InterpreterFrame* frame,
                      const compat::CFrame* cf, const compat::CFrame* cf_copy, RawFrame* out,
                      int max_frames, const void* gc_frame, EvalRuns* runs) {
    WalkResult r;
    if (runs != nullptr) runs->count = 0;
    int run_start = 0;  // the innermost frame of the run being walked
    // Brent's cycle detection: remember one frame, compare each new frame
    // with it, move the checkpoint forward at powers of two. O(n), no memory.
    const compat::InterpreterFrame* checkpoint = nullptr;
    int next_checkpoint = 1;
    int seen = 0;
    compat::InterpreterFrame scratch;
    compat::CFrame cf_scratch[2];
    int cf_slot = 0;
    while (frame != nullptr) {
        if (!plausible_pointer(frame) || frame == checkpoint || seen >= kMaxWalk) {
            r.invalid = seen < kMaxWalk;
            r.truncated = seen >= kMaxWalk;
            break;
        }
        if (++seen == next_checkpoint) {
            checkpoint = frame;
            next_checkpoint *= 2;
        }
        bool copied = false;
        const compat::InterpreterFrame* f = read_frame(tstate, frame, &scratch, &copied);
        if (f == nullptr || f->owner < 0 || f->owner > compat::kMaxOwner) {
            r.invalid = true;
            break;
        }
        // Set when this frame ends a run of the eval loop: where that call of
        // the loop keeps its C frame (3.11/3.12) or its entry shim (3.13).
        uintptr_t run_anchor = 0;
        if (!compat::kHasCFrames && !compat::frame_is_python(f)) {
            run_anchor = reinterpret_cast<uintptr_t>(frame);
        }
        if (compat::kHasCFrames && compat::frame_is_entry(f)) {
            run_anchor = reinterpret_cast<uintptr_t>(cf);
            // The frame the enclosing eval loop runs must come next.
            if (!plausible_pointer(cf) || cf_copy == nullptr) {
                r.invalid = true;
                break;
            }
            const compat::CFrame* outer = compat::cframe_previous(cf_copy);
            const compat::CFrame* outer_copy = nullptr;
            if (outer != nullptr) {
                if (!plausible_pointer(outer) ||
                    !copy_unsafe(&cf_scratch[cf_slot], outer, sizeof cf_scratch[cf_slot])) {
                    r.invalid = true;
                    break;
                }
                outer_copy = &cf_scratch[cf_slot];
                cf_slot ^= 1;
            }
            const compat::InterpreterFrame* expected =
                outer_copy != nullptr ? compat::cframe_current(outer_copy) : nullptr;
            if (f->previous != expected) {
                r.invalid = true;
                break;
            }
            cf = outer;
            cf_copy = outer_copy;
        }
        if (compat::frame_is_python(f)) {
            PyObject* code = compat::frame_code(f);
            PyVarObject header;
            bool code_ok = plausible_pointer(code);
            if (code_ok && copied) {
                // The frame was not in the data stack: its code pointer may be
                // as stale as the frame.
                code_ok = copy_unsafe(&header, code, sizeof header) &&
                          header.ob_base.ob_type == &PyCode_Type;
            } else if (code_ok) {
                code_ok = plausible_pointer(Py_TYPE(code)) && Py_TYPE(code) == &PyCode_Type;
                if (code_ok) header.ob_size = Py_SIZE(code);
            }
            if (code_ok) {
                if (r.depth >= max_frames) {
                    r.truncated = true;
                    break;
                }
                {
                    if (frame == gc_frame && r.gc_pos < 0) r.gc_pos = static_cast<int16_t>(r.depth);
                    int32_t idx = compat::frame_instr_index(f, code);
                    if (idx < 0 || idx >= header.ob_size) idx = -1;
                    out[r.depth].code = reinterpret_cast<uintptr_t>(code);
                    out[r.depth].instr = idx;
                    out[r.depth].native_eval = 0;
                    ++r.depth;
                }
            }
        }
        if (run_anchor != 0 && runs != nullptr && r.depth > run_start) {
            runs->first_frame[runs->count] = static_cast<uint16_t>(run_start);
            runs->anchor[runs->count] = run_anchor;
            ++runs->count;
            run_start = r.depth;
        }
        frame = f->previous;
    }
    if (compat::kHasCFrames && frame == nullptr && !r.invalid && cf_copy != nullptr &&
        compat::cframe_previous(cf_copy) != nullptr && compat::cframe_current(cf_copy) != nullptr) {
        // The chain ended inside a nested eval loop, whose entry frame would
        // have led to the enclosing loop: a frame being linked in (its
        // `previous` is not written yet; compilers may order those stores
        // either way). Not the thread's whole stack. (A C frame with no
        // current frame is where a chain may end: greenlet starts each
        // greenlet's frames on a C frame of its own, in front of the
        // thread's root one.)
        r.invalid = true;
    }
    return r;
}

// A copy of the thread state at `tstate` if it is still the one of thread
// `tid` with unique id `uid`.
bool copy_thread_state(PyThreadState* tstate, pid_t tid, uint64_t uid, PyThreadState* out) {
    return plausible_pointer(tstate) && copy_unsafe(out, tstate, sizeof *out) &&
           compat::thread_state_unique_id(out) == uid &&
           static_cast<pid_t>(compat::thread_state_native_id(out)) == tid;
}

// Where another thread is: its top C frame (3.11/3.12), current frame, and
// that frame's code, caller and instruction.
struct Position {
    const compat::CFrame* cf = nullptr;
    compat::CFrame cf_copy{};
    const compat::InterpreterFrame* frame = nullptr;
    const void* code = nullptr;
    const void* previous = nullptr;
    const void* instr = nullptr;
    bool same_as(const Position& o) const {
        return cf == o.cf && frame == o.frame && code == o.code && previous == o.previous &&
               instr == o.instr;
    }
};

// The position of a copied thread state; false if it cannot be read.
bool position_of(const PyThreadState* copy, Position* p) {
    if constexpr (!compat::kHasCFrames) {
        p->frame = compat::current_frame(const_cast<PyThreadState*>(copy));
    } else {
        p->cf = compat::top_cframe(const_cast<PyThreadState*>(copy));
        if (p->cf != nullptr) {
            if (!plausible_pointer(p->cf) || !copy_unsafe(&p->cf_copy, p->cf, sizeof p->cf_copy)) {
                return false;
            }
            p->frame = compat::cframe_current(&p->cf_copy);
        }
    }
    if (p->frame == nullptr) return true;
    compat::InterpreterFrame f;
    if (!plausible_pointer(p->frame) || !copy_unsafe(&f, p->frame, sizeof f)) return false;
    p->code = compat::frame_code(&f);
    p->previous = f.previous;
    p->instr = compat::frame_instr_pointer(&f);
    return true;
}

}  // namespace

WalkResult walk_other_stack(PyThreadState* tstate, pid_t tid, uint64_t uid, RawFrame* out,
                            int max_frames, bool* gone) {
    *gone = false;
    WalkResult r;
    for (int attempt = 0; attempt < 2; ++attempt) {
        PyThreadState copy;
        if (!copy_thread_state(tstate, tid, uid, &copy)) {
            *gone = true;
            return WalkResult{};
        }
        Position before;
        if (!position_of(&copy, &before)) {
            r = WalkResult{};
            r.invalid = true;
            continue;
        }
        r = walk_chain(nullptr, before.frame, before.cf,
                       before.cf == nullptr ? nullptr : &before.cf_copy, out, max_frames, nullptr,
                       nullptr);
        // The thread may have run meanwhile: what was read holds only if it
        // is still where the walk started (same frame, same code, same
        // caller, same instruction).
        PyThreadState after_copy;
        if (!copy_thread_state(tstate, tid, uid, &after_copy)) {
            *gone = true;
            return WalkResult{};
        }
        Position after;
        if (!position_of(&after_copy, &after) || !after.same_as(before)) {
            r = WalkResult{};
            r.invalid = true;
            continue;
        }
        if (!r.invalid) return r;
    }
    return r;
}

WalkResult walk_own_stack(PyThreadState* tstate, RawFrame* out, int max_frames,
                          const void* gc_frame, EvalRuns* runs) {
    if (runs != nullptr) runs->count = 0;
    if (!plausible_pointer(tstate)) {
        WalkResult r;
        r.invalid = true;
        return r;
    }
    if constexpr (!compat::kHasCFrames) {
        return walk_chain(tstate, compat::current_frame(tstate), nullptr, nullptr, out, max_frames,
                          gc_frame, runs);
    } else {
        // tstate->cframe is always a live C frame (on this thread's stack),
        // though its fields may not be filled in yet.
        const compat::CFrame* cf = compat::top_cframe(tstate);
        if (cf == nullptr) return WalkResult{};
        compat::CFrame top;
        if (!plausible_pointer(cf) || !copy_unsafe(&top, cf, sizeof top)) {
            WalkResult r;
            r.invalid = true;
            return r;
        }
        WalkResult r = walk_chain(tstate, compat::cframe_current(&top), cf, &top, out, max_frames,
                                  gc_frame, runs);
        if (!r.invalid) return r;
        // Most likely the signal landed in an eval loop's prologue (see
        // compat.h): that loop has not started its frame yet, so the stack
        // is the enclosing loop's.
        const compat::CFrame* outer = compat::cframe_previous(&top);
        compat::CFrame outer_copy;
        if (outer == nullptr || !plausible_pointer(outer) ||
            !copy_unsafe(&outer_copy, outer, sizeof outer_copy)) {
            return r;
        }
        WalkResult again = walk_chain(tstate, compat::cframe_current(&outer_copy), outer, &outer_copy,
                                      out, max_frames, gc_frame, runs);
        if (again.invalid) return again;
        again.recovered = true;
        return again;
    }
}

}  // namespace spprof
