#include "aggregator.h"

#include <algorithm>

namespace spprof {

Aggregator::Aggregator() { clear(); }

void Aggregator::clear() {
    strings_.clear();
    string_ids_.clear();
    frames_.clear();
    frame_ids_.clear();
    stacks_.assign(1, {0, 0});
    stack_ids_.clear();
    samples_.clear();
    samples_.shrink_to_fit();
    string_bytes_ = 0;
    dropped_ = 0;
    dropped_weight_ = 0;
}

uint32_t Aggregator::intern_string(std::string_view s) {
    auto it = string_ids_.find(std::string(s));
    if (it != string_ids_.end()) return it->second;
    auto id = static_cast<uint32_t>(strings_.size());
    strings_.emplace_back(s);
    string_ids_.emplace(std::string(s), id);
    string_bytes_ += 2 * s.size() + 96;
    return id;
}

uint32_t Aggregator::intern_frame(uint32_t name, uint32_t file, int32_t line, uint32_t module) {
    FrameKey key{name, file, line, module};
    auto it = frame_ids_.find(key);
    if (it != frame_ids_.end()) return it->second;
    auto id = static_cast<uint32_t>(frames_.size());
    frames_.push_back(key);
    frame_ids_.emplace(key, id);
    return id;
}

uint32_t Aggregator::child_stack(uint32_t parent, uint32_t frame) {
    uint64_t key = (uint64_t{parent} << 32) | frame;
    auto it = stack_ids_.find(key);
    if (it != stack_ids_.end()) return it->second;
    auto id = static_cast<uint32_t>(stacks_.size());
    stacks_.emplace_back(parent, frame);
    stack_ids_.emplace(key, id);
    return id;
}

size_t Aggregator::approx_bytes() const {
    // Vectors plus hash nodes (~48 bytes per node in libstdc++).
    return string_bytes_ + frames_.size() * (sizeof(FrameKey) + 56) +
           stacks_.size() * (sizeof(stacks_[0]) + 48) + samples_.capacity() * sizeof(SampleRecord);
}

bool Aggregator::add_sample(const SampleRecord& rec, size_t limit) {
    if (samples_.size() == samples_.capacity()) {
        // Grow by at most what the limit leaves (a doubling could jump far
        // past it), and stop when nothing is left.
        size_t used = approx_bytes();
        size_t room = used < limit ? (limit - used) / sizeof(SampleRecord) : 0;
        if (room == 0) return false;
        size_t grow = std::min(std::max<size_t>(samples_.capacity(), 64), room);
        samples_.reserve(samples_.capacity() + grow);
    }
    samples_.push_back(rec);
    return true;
}

}  // namespace spprof
