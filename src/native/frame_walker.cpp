#include "frame_walker.h"

#include "compat.h"

namespace spprof {
namespace {

// How many frames we are willing to look at in total. Stacks deeper than
// kMaxDepth keep their innermost frames; this bound only limits the work
// spent discovering that a stack was deeper (or corrupt).
constexpr int kMaxWalk = 4096;

inline bool plausible_pointer(const void* p) {
    auto v = reinterpret_cast<uintptr_t>(p);
    // Non-null, beyond the zero page, 8-byte aligned, user-space canonical.
    return v >= 4096 && (v & 7u) == 0 && v < (uintptr_t{1} << 47);
}

// Walk from `frame`, the current frame of C frame `cf` (3.11/3.12; unused
// on 3.13).
WalkResult walk_chain(const compat::InterpreterFrame* frame, const compat::CFrame* cf,
                      RawFrame* out, int max_frames, const void* gc_frame) {
    WalkResult r;
    // Brent's cycle detection: remember one frame, compare each new frame
    // with it, move the checkpoint forward at powers of two. O(n), no memory.
    const compat::InterpreterFrame* checkpoint = nullptr;
    int next_checkpoint = 1;
    int seen = 0;
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
        if (frame->owner < 0 || frame->owner > compat::kMaxOwner) {
            r.invalid = true;
            break;
        }
        if (compat::kHasCFrames && compat::frame_is_entry(frame)) {
            // The frame the enclosing eval loop runs must come next.
            if (!plausible_pointer(cf)) {
                r.invalid = true;
                break;
            }
            const compat::CFrame* outer = compat::cframe_previous(cf);
            if (outer != nullptr && !plausible_pointer(outer)) {
                r.invalid = true;
                break;
            }
            const compat::InterpreterFrame* expected =
                outer != nullptr ? compat::cframe_current(outer) : nullptr;
            if (frame->previous != expected) {
                r.invalid = true;
                break;
            }
            cf = outer;
        }
        if (compat::frame_is_python(frame)) {
            PyObject* code = compat::frame_code(frame);
            if (plausible_pointer(code) && plausible_pointer(Py_TYPE(code)) &&
                Py_TYPE(code) == &PyCode_Type) {
                if (r.depth < max_frames) {
                    if (frame == gc_frame && r.gc_pos < 0) r.gc_pos = static_cast<int16_t>(r.depth);
                    int32_t idx = compat::frame_instr_index(frame, code);
                    if (idx < 0 || idx >= Py_SIZE(code)) idx = -1;
                    out[r.depth].code = reinterpret_cast<uintptr_t>(code);
                    out[r.depth].instr = idx;
                    out[r.depth].reserved = 0;
                    ++r.depth;
                } else {
                    r.truncated = true;
                }
            }
        }
        frame = frame->previous;
    }
    if (compat::kHasCFrames && frame == nullptr && !r.invalid && plausible_pointer(cf) &&
        compat::cframe_previous(cf) != nullptr) {
        // The chain ended inside a nested eval loop, whose entry frame would
        // have led to the enclosing loop: a frame being linked in (its
        // `previous` is not written yet; compilers may order those stores
        // either way). Not the thread's whole stack.
        r.invalid = true;
    }
    return r;
}

}  // namespace

WalkResult walk_own_stack(PyThreadState* tstate, RawFrame* out, int max_frames,
                          const void* gc_frame) {
    if (!plausible_pointer(tstate)) {
        WalkResult r;
        r.invalid = true;
        return r;
    }
    if constexpr (!compat::kHasCFrames) {
        return walk_chain(compat::current_frame(tstate), nullptr, out, max_frames, gc_frame);
    } else {
        const compat::CFrame* cf = compat::top_cframe(tstate);
        if (cf == nullptr) return WalkResult{};
        if (!plausible_pointer(cf)) {
            WalkResult r;
            r.invalid = true;
            return r;
        }
        WalkResult r = walk_chain(compat::cframe_current(cf), cf, out, max_frames, gc_frame);
        if (!r.invalid) return r;
        // Most likely the signal landed in an eval loop's prologue (see
        // compat.h): that loop has not started its frame yet, so the stack
        // is the enclosing loop's.
        const compat::CFrame* outer = compat::cframe_previous(cf);
        if (outer == nullptr || !plausible_pointer(outer)) return r;
        WalkResult again = walk_chain(compat::cframe_current(outer), outer, out, max_frames, gc_frame);
        if (again.invalid) return again;
        again.recovered = true;
        return again;
    }
}

}  // namespace spprof
