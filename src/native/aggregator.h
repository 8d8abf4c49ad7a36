// aggregator.h: resolved samples, interned.
//
// Strings, frames and stacks are interned (string table, frame table, stack
// trie), so memory grows with the number of unique stacks; each sample adds
// one fixed-size record (timestamp, thread, stack id, weight). The memory
// limit caps the total: past it, new samples are counted as dropped.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gil_view.h"

namespace spprof {

// The line of a native frame whose source line is not known (a C
// function: its name, and its loaded object as the file).
inline constexpr int32_t kNativeLine = -1;
// FrameKey::module of a Python frame.
inline constexpr uint32_t kNoModule = UINT32_MAX;

struct FrameKey {
    uint32_t name;  // string ids
    uint32_t file;  // a native frame: its source file, or its object when not known
    int32_t line;   // a native frame: its source line, or kNativeLine
    uint32_t module = kNoModule;  // a native frame: its loaded object (string id)
    bool operator==(const FrameKey&) const = default;
};

// What a thread was doing in a sample (Sample.state).
enum class ThreadState : uint8_t { cpu = 0, idle = 1, gil = 2, gc = 3 };

struct SampleRecord {
    int64_t timestamp_ns;
    int32_t tid;
    uint32_t stack;  // stack id; 0 = empty stack
    uint32_t weight;
    ThreadState state;
    GilHeld gil;
};

class Aggregator {
public:
    Aggregator();

    uint32_t intern_string(std::string_view s);
    uint32_t intern_frame(uint32_t name, uint32_t file, int32_t line, uint32_t module = kNoModule);
    // The stack id of `parent` extended by `frame` (0 is the empty stack).
    uint32_t child_stack(uint32_t parent, uint32_t frame);

    // False when storing it would take this aggregator past `limit` bytes
    // (the caller counts the drop). May throw std::bad_alloc.
    bool add_sample(const SampleRecord& rec, size_t limit);
    void count_dropped(uint32_t weight) {
        ++dropped_;
        dropped_weight_ += weight;
    }

    size_t approx_bytes() const;
    uint64_t dropped_samples() const { return dropped_; }
    uint64_t dropped_weight() const { return dropped_weight_; }

    const std::vector<std::string>& strings() const { return strings_; }
    const std::vector<FrameKey>& frames() const { return frames_; }
    uint32_t frame_name(uint32_t frame) const { return frames_[frame].name; }
    // stacks_[id] = (parent stack id, frame id); stacks_[0] is the root.
    const std::vector<std::pair<uint32_t, uint32_t>>& stacks() const { return stacks_; }
    const std::vector<SampleRecord>& samples() const { return samples_; }

    void clear();

private:
    struct FrameHash {
        size_t operator()(const FrameKey& k) const {
            return (size_t{k.name} * 0x9E3779B97F4A7C15ull) ^ (size_t{k.file} << 20) ^
                   static_cast<size_t>(static_cast<uint32_t>(k.line)) ^ (size_t{k.module} << 40);
        }
    };
    std::vector<std::string> strings_;
    std::unordered_map<std::string, uint32_t> string_ids_;
    std::vector<FrameKey> frames_;
    std::unordered_map<FrameKey, uint32_t, FrameHash> frame_ids_;
    std::vector<std::pair<uint32_t, uint32_t>> stacks_;
    std::unordered_map<uint64_t, uint32_t> stack_ids_;  // (parent << 32 | frame)
    std::vector<SampleRecord> samples_;
    size_t string_bytes_ = 0;
    uint64_t dropped_ = 0;
    uint64_t dropped_weight_ = 0;
};

}  // namespace spprof
