// resolver.h: turns raw samples into interned stacks, off the signal path.
//
// Runs with the GIL held (the code registry reads code objects), on the
// service thread (every 100 ms, sooner when the buffer fills) and once more
// in stop(), so the work at stop() does not grow with the session's length.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "aggregator.h"
#include "code_registry.h"
#include "sample_buffer.h"

namespace spprof {

class Resolver {
public:
    // Consume every published sample. Returns how many were consumed.
    // With `per_thread`, also counts the samples of each thread there.
    // What the aggregator, the code registry and this resolver hold stays
    // within `budget` bytes: a sample that would need more is dropped (and
    // counted, with its weight, in the aggregator), as is one whose
    // resolution runs out of memory. Never throws.
    size_t drain(SampleBuffer& buffer, CodeRegistry& codes, Aggregator& out, size_t budget,
                 std::unordered_map<pid_t, uint64_t>* per_thread = nullptr);
    void clear();
    // How samples of a thread without a Python thread state are named: the
    // frame `label(tid)` returns (`<native thread NAME>`), or, when it
    // returns "", `<no Python frame>` (a Python thread at its start or end).
    void set_thread_label(std::function<std::string(pid_t)> label) { label_ = std::move(label); }
    size_t approx_bytes() const {
        return (names_.size() + frames_.size() + native_frames_.size()) * 64 + no_lines_.size() * 32;
    }
    uint64_t allocation_failures() const { return allocation_failures_; }

private:
    uint32_t frame_for(const CodeInfo* info, int32_t instr, Aggregator& out);
    uint32_t special_frame(const char* name, Aggregator& out);
    // The <native thread NAME> frame of thread `tid`, or kNoFrame (frame
    // ids start at 0: the first frame of a session can be this one).
    static constexpr uint32_t kNoFrame = UINT32_MAX;
    uint32_t thread_frame(pid_t tid, Aggregator& out);
    // Native frames (sessions with native frames): every frame of a trace
    // named and cached; then the frames ips[lo, hi) of a trace, root first,
    // appended to `frames`. Trim::leaf drops the interpreter's frames on the
    // root side (how the evaluation loop reached the C function) unless
    // nothing else is there; Trim::between_runs drops them on both sides,
    // and all of them when nothing else is there.
    enum class Trim { none, leaf, between_runs };
    void intern_native(const NativeTrace& trace, Aggregator& out);
    void native_segment(const NativeTrace& trace, int lo, int hi, Trim trim,
                        std::vector<uint32_t>* frames) const;
    static int previous_run_eval(const SampleSlot& slot, int i);
    static uint64_t native_key(const NativeTrace& trace, int i) {
        return (uint64_t{trace.ip[i]} << 1) | (i == 0 ? 0u : 1u);
    }
    struct NativeEntry {
        uint32_t frame;
        uint32_t name;     // the frame's name (string id)
        bool interpreter;  // in the interpreter's code
        bool eval_loop;    // in the evaluation loop itself
        bool compiled;     // a Python function compiled to C (Cython, mypyc)
        bool cython_helper;  // one of Cython's utility functions (__Pyx_...)
    };

    // code info id -> (name string id, file string id)
    std::unordered_map<uint32_t, std::pair<uint32_t, uint32_t>> names_;
    // (code info id << 32 | line) -> frame id
    std::unordered_map<uint64_t, uint32_t> frames_;
    std::function<std::string(pid_t)> label_;
    std::unordered_map<pid_t, uint32_t> thread_frames_;  // tid -> its <native thread> frame
    // (address << 1 | not the interrupted instruction) -> its frame
    std::unordered_map<uint64_t, NativeEntry> native_frames_;
    uintptr_t interp_lo_ = 0, interp_hi_ = 0;  // the interpreter's code (unwind_tables.h)
    std::unordered_set<uint64_t> no_lines_;  // (object << 32 | name) of functions without source lines
    std::vector<uint32_t> native_stack_;  // scratch
    uint64_t allocation_failures_ = 0;
};

}  // namespace spprof
