#include "resolver.h"

namespace spprof {

void Resolver::clear() {
    names_.clear();
    frames_.clear();
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

size_t Resolver::drain(SampleBuffer& buffer, CodeRegistry& codes, Aggregator& out,
                       std::unordered_map<pid_t, uint64_t>* per_thread) {
    size_t n = 0;
    while (const SampleSlot* slot = buffer.peek()) {
        uint32_t stack = 0;
        if (slot->truncated) stack = out.child_stack(stack, special_frame("<truncated>", out));
        if (slot->flags & kSampleSubinterpreter) {
            stack = out.child_stack(stack, special_frame("<subinterpreter>", out));
        }
        // Frames were captured leaf first; stacks are built root first. A
        // sample taken during a garbage collection gets <gc> right under the
        // frame that triggered it (frames above it are finalizers the
        // collection ran).
        const int gc_pos = slot->gc_pos;
        for (int i = static_cast<int>(slot->depth) - 1; i >= 0; --i) {
            const RawFrame& raw = slot->frames[i];
            const CodeInfo* info = codes.lookup(raw.code, slot->code_epoch);
            stack = out.child_stack(stack, frame_for(info, raw.instr, out));
            if (i == gc_pos) stack = out.child_stack(stack, special_frame("<gc>", out));
        }
        if (gc_pos >= 0 && slot->depth == 0) stack = out.child_stack(stack, special_frame("<gc>", out));
        out.add_sample(SampleRecord{slot->timestamp_ns, slot->tid, stack, slot->weight});
        if (per_thread != nullptr) ++(*per_thread)[slot->tid];
        buffer.pop();
        ++n;
    }
    return n;
}

}  // namespace spprof
