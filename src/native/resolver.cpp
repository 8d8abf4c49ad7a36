#include "resolver.h"

#include <cstring>
#include <new>

#include "source_lines.h"
#include "symbolizer.h"
#include "unwind_tables.h"

namespace spprof {

void Resolver::clear() {
    names_.clear();
    frames_.clear();
    thread_frames_.clear();
    native_frames_.clear();
    no_lines_.clear();
    interp_lo_ = interp_hi_ = 0;
}

void Resolver::intern_native(const NativeTrace& trace, Aggregator& out) {
    const int depth = trace.depth;
    bool known = true;
    for (int i = 0; i < depth && known; ++i) known = native_frames_.count(native_key(trace, i)) != 0;
    if (known) return;
    if (interp_hi_ == 0) native::interpreter_range(&interp_lo_, &interp_hi_);
    const std::vector<native::Symbol> symbols = native::symbolize_trace(trace.ip, depth);
    for (int i = 0; i < depth; ++i) {
        if (native_frames_.count(native_key(trace, i)) != 0) continue;
        const native::Symbol& sym = symbols[static_cast<size_t>(i)];
        std::string name = sym.name;
        if (!sym.resolved) {
            // One entry per library for what it does not name, not one
            // per instruction.
            const size_t slash = sym.object.rfind('/');
            name = "?? (" + (sym.object.empty() ? std::string("unknown") : sym.object.substr(slash + 1)) + ")";
        }
        // Native frames name their object (module); their file and line
        // are the source's where the object has a line table, else the
        // object and kNativeLine.
        const uintptr_t ip = i == 0 ? trace.ip[i] : trace.ip[i] - 1;
        const uint32_t object = out.intern_string(sym.object);
        const uint32_t name_id = out.intern_string(name);
        // A function one of whose addresses had no line has none at its
        // others either (assembly kernels: each failed lookup costs libdw
        // milliseconds).
        const uint64_t function_key = (uint64_t{object} << 32) | name_id;
        std::string source;
        int line = 0;
        bool has_line = sym.resolved && no_lines_.count(function_key) == 0 &&
                        native::source_line(ip, &source, &line);
        if (sym.resolved && !has_line) no_lines_.insert(function_key);
        const uint32_t frame = has_line ? out.intern_frame(name_id, out.intern_string(source), line, object)
                                        : out.intern_frame(name_id, object, kNativeLine, object);
        auto ends_with = [&](const char* suffix) {
            const size_t n = std::strlen(suffix);
            return name.size() >= n && name.compare(name.size() - n, n, suffix) == 0;
        };
        NativeEntry entry{frame, out.frame_name(frame), ip >= interp_lo_ && ip < interp_hi_, native::in_eval_loop(ip),
                          ends_with(" (Cython)") || ends_with(" (mypyc)"),
                          name.compare(0, 6, "__Pyx_") == 0};
        native_frames_.emplace(native_key(trace, i), entry);
    }
}

void Resolver::native_segment(const NativeTrace& trace, int lo, int hi, Trim trim,
                              std::vector<uint32_t>* frames) const {
    auto entry = [&](int i) -> const NativeEntry& { return native_frames_.at(native_key(trace, i)); };
    if (trim != Trim::none) {
        // Root side: the interpreter's frames between the evaluation loop
        // and the C function the Python code called (how the call got
        // there). Between two runs also the leaf side: how that function
        // called back into Python. At the leaf they are shown when nothing
        // else is (the thread runs the interpreter's own C code).
        int top = hi - 1;
        while (top >= lo && entry(top).interpreter) --top;
        if (top < lo) {
            if (trim == Trim::between_runs) return;
            top = hi - 1;
        }
        if (trim == Trim::between_runs) {
            while (lo < top && entry(lo).interpreter) ++lo;
        }
        hi = top + 1;
    }
    uint32_t last_name = UINT32_MAX;
    for (int i = hi - 1; i >= lo; --i) {
        // A compiled Python function is a wrapper calling its body, both
        // named after it: one frame, the body's (its line is where it runs).
        const NativeEntry& e = entry(i);
        if (e.compiled && e.name == last_name) {
            frames->back() = e.frame;
            continue;
        }
        // Cython's helpers between compiled functions (calls, argument
        // parsing): shown only where the thread runs them.
        if (e.cython_helper && i > 0) continue;
        frames->push_back(e.frame);
        last_name = e.name;
    }
}

int Resolver::previous_run_eval(const SampleSlot& slot, int i) {
    // The nearest frame inside (leaf side of) frame i that starts a run:
    // its run's call of the loop, when the unwind found it (else -1).
    for (int k = i - 1; k >= 0; --k) {
        const int32_t e = slot.frames[k].native_eval;
        if (e != 0) return e > 0 ? e - 1 : -1;
    }
    return -1;
}

uint32_t Resolver::thread_frame(pid_t tid, Aggregator& out) {
    auto it = thread_frames_.find(tid);
    if (it != thread_frames_.end()) return it->second;
    std::string label = label_ ? label_(tid) : std::string();
    if (label.empty()) return kNoFrame;  // not known as native (now): asked again next time
    uint32_t frame = special_frame(label.c_str(), out);
    thread_frames_.emplace(tid, frame);
    return frame;
}

uint32_t Resolver::special_frame(const char* name, Aggregator& out) {
    uint32_t s = out.intern_string(name);
    return out.intern_frame(s, out.intern_string(""), 0);
}

uint32_t Resolver::frame_for(const CodeInfo* info, int32_t instr, Aggregator& out) {
    if (info == nullptr) return special_frame("<unknown>", out);
    int line = info->line_for(instr);
    uint64_t key = (uint64_t{info->id} << 32) | static_cast<uint32_t>(line);
    auto it = frames_.find(key);
    if (it != frames_.end()) return it->second;
    auto names = names_.find(info->id);
    if (names == names_.end()) {
        names = names_
                    .emplace(info->id, std::make_pair(out.intern_string(info->qualname),
                                                      out.intern_string(info->filename)))
                    .first;
    }
    uint32_t frame = out.intern_frame(names->second.first, names->second.second, line);
    frames_.emplace(key, frame);
    return frame;
}

size_t Resolver::drain(SampleBuffer& buffer, CodeRegistry& codes, Aggregator& out, size_t budget,
                       std::unordered_map<pid_t, uint64_t>* per_thread) {
    size_t n = 0;
    auto used = [&] { return out.approx_bytes() + codes.approx_bytes() + approx_bytes(); };
    // Interning one frame adds at most this much besides a code snapshot
    // (checked by the registry itself): strings, frame, trie node.
    constexpr size_t kFrameCost = 1024;
    while (const SampleSlot* slot = buffer.peek()) {
        bool keep = true;
        try {
            uint32_t stack = 0;
            auto extend = [&](uint32_t frame) {
                stack = out.child_stack(stack, frame);
            };
            auto room = [&]() -> size_t {
                size_t u = used() + kFrameCost;
                return u < budget ? budget - u : 0;
            };
            if (room() == 0) keep = false;
            if (keep && slot->truncated) extend(special_frame("<truncated>", out));
            if (keep && (slot->flags & kSampleSubinterpreter)) extend(special_frame("<subinterpreter>", out));
            if (keep && (slot->flags & kSampleIncomplete)) extend(special_frame("<unknown stack>", out));
            if (keep && (slot->flags & kSampleNoThreadState)) {
                const uint32_t frame = thread_frame(slot->tid, out);
                if (frame != kNoFrame) extend(frame);
            }
            // Frames were captured leaf first; stacks are built root first. A
            // sample taken during a garbage collection gets <gc> right under
            // the frame that triggered it (frames above it are finalizers the
            // collection ran).
            const int gc_pos = slot->gc_pos;
            const NativeTrace* trace = buffer.trace_of(slot);
            if (trace != nullptr && trace->depth == 0) trace = nullptr;
            if (keep && trace != nullptr) {
                if (room() == 0) {
                    keep = false;
                } else {
                    intern_native(*trace, out);
                }
            }
            for (int i = static_cast<int>(slot->depth) - 1; keep && i >= 0; --i) {
                size_t left = room();
                bool over = false;
                const RawFrame& raw = slot->frames[i];
                const CodeInfo* info = left == 0 ? nullptr : codes.lookup(raw.code, slot->code_epoch, left, &over);
                if (left == 0 || over) {
                    keep = false;
                    break;
                }
                extend(frame_for(info, raw.instr, out));
                if (i == gc_pos) extend(special_frame("<gc>", out));
                // The C code this frame called on its way to the run inside
                // it: between the two runs' calls of the evaluation loop.
                if (trace != nullptr && i > 0 && raw.native_eval > 0) {
                    const int inner = previous_run_eval(*slot, i);
                    if (inner >= 0 && inner < raw.native_eval - 1 && raw.native_eval <= trace->depth) {
                        native_stack_.clear();
                        native_segment(*trace, inner + 1, raw.native_eval - 1, Trim::between_runs,
                                       &native_stack_);
                        for (uint32_t frame : native_stack_) extend(frame);
                    }
                }
            }
            if (keep && gc_pos >= 0 && slot->depth == 0) extend(special_frame("<gc>", out));
            if (keep && trace != nullptr) {
                // The leaf: the C code the innermost Python frame runs, up
                // to its run's call of the evaluation loop (or the first
                // call of it the unwind met).
                const bool python = !(slot->flags & kSampleNoThreadState);
                int end = trace->depth;
                if (python) {
                    const int eval0 = slot->depth > 0 ? slot->frames[0].native_eval - 1 : -1;
                    if (eval0 >= 0 && eval0 < end) {
                        end = eval0;
                    } else {
                        for (int i = 0; i < end; ++i) {
                            if (native_frames_.at(native_key(*trace, i)).eval_loop) {
                                end = i;
                                break;
                            }
                        }
                    }
                }
                native_stack_.clear();
                native_segment(*trace, 0, end, python ? Trim::leaf : Trim::none, &native_stack_);
                for (uint32_t frame : native_stack_) extend(frame);
            }
            // A thread with a thread state but no Python frame running: at
            // its start or exit, between two calls from C, in C code called
            // from no Python frame. Its CPU counts, under an honest name
            // (never an empty stack: an unnamed root in every viewer).
            if (keep && stack == 0) extend(special_frame("<no Python frame>", out));
            if (keep) {
                size_t others = codes.approx_bytes() + approx_bytes();
                ThreadState state = ThreadState::cpu;
                if (slot->flags & kSampleGilWait) {
                    state = ThreadState::gil;
                } else if (slot->flags & kSampleOffCpu) {
                    state = ThreadState::idle;
                } else if (gc_pos >= 0) {
                    state = ThreadState::gc;
                }
                GilHeld gil = GilHeld::unknown;
                if (slot->flags & kSampleGilKnown) {
                    gil = (slot->flags & kSampleGilHeld) ? GilHeld::held : GilHeld::released;
                }
                keep = out.add_sample(SampleRecord{slot->timestamp_ns, slot->tid, stack, slot->weight, state, gil},
                                      others < budget ? budget - others : 0);
            }
        } catch (const std::bad_alloc&) {
            keep = false;
            ++allocation_failures_;
        }
        if (!keep) out.count_dropped(slot->weight);
        if (per_thread != nullptr) {
            try {
                ++(*per_thread)[slot->tid];
            } catch (const std::bad_alloc&) {
                ++allocation_failures_;
            }
        }
        buffer.pop();
        ++n;
    }
    return n;
}

}  // namespace spprof
