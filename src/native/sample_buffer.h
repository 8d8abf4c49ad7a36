// sample_buffer.h: the bounded lock-free queue between the signal handler
// (many producers, one per interrupted thread) and the resolver (one
// consumer holding the GIL).
//
// A fixed array of fixed-size slots, each with a sequence number (Dmitry
// Vyukov's bounded MPMC queue design). A producer claims a slot with one CAS
// on the enqueue counter, fills it, and publishes it by storing the slot's
// sequence with release order. When the queue is full the producer gives up
// at once: the sample is dropped and counted, never waited for.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace spprof {

inline constexpr int kMaxDepth = 128;  // frames kept per sample (innermost)

struct RawFrame {
    uintptr_t code;     // PyCodeObject* as captured (not a reference)
    int32_t instr;      // instruction index in code units, -1 = not started
    // Samples with native frames: 0, or this frame is the innermost of a
    // run of the evaluation loop (frame_walker.h EvalRuns) whose call of the
    // loop is the sample's native frame native_eval - 1 (-1: not found).
    int32_t native_eval;
};

// SampleSlot::flags
inline constexpr uint16_t kSampleSubinterpreter = 1;  // the thread ran another interpreter
inline constexpr uint16_t kSampleIncomplete = 2;      // the frame chain could not be read
inline constexpr uint16_t kSampleOffCpu = 4;          // wall mode: time off CPU (wall_reader.h)
inline constexpr uint16_t kSampleGilWait = 8;         // ... spent waiting for the GIL
inline constexpr uint16_t kSampleGilKnown = 16;       // whether the thread held the GIL is known:
inline constexpr uint16_t kSampleGilHeld = 32;        // ... it did (gil_view.h)
inline constexpr uint16_t kSampleNoThreadState = 64;  // the thread had no Python thread state

// The native frames of a sample (sessions with native frames only), in an
// array beside the slots: leaf first, ip[0] the interrupted instruction,
// the others return addresses (native_unwind.h).
inline constexpr int kMaxNativeDepth = 128;
struct NativeTrace {
    uint16_t depth;
    uint16_t flags;  // native::TraceFlags
    uint32_t reserved;
    uintptr_t ip[kMaxNativeDepth];
};

struct SampleSlot {
    std::atomic<uint64_t> seq;
    int64_t timestamp_ns;   // CLOCK_MONOTONIC at capture
    uint64_t code_epoch;    // code-death epoch read before the walk
    int32_t tid;            // kernel thread id
    uint32_t weight;        // 1 + timer overruns
    uint16_t depth;         // frames[0..depth) are valid, leaf first
    uint16_t truncated;     // the stack was deeper than kMaxDepth
    int16_t gc_pos;         // -1, or: taken in a garbage collection that frames[gc_pos] triggered
    uint16_t flags;         // kSampleSubinterpreter...
    RawFrame frames[kMaxDepth];
};

class SampleBuffer {
public:
    SampleBuffer() = default;
    SampleBuffer(const SampleBuffer&) = delete;
    SampleBuffer& operator=(const SampleBuffer&) = delete;
    ~SampleBuffer();

    // Allocate room for `min_slots` slots rounded DOWN to a power of two (at
    // least 16), each with a NativeTrace when `native`. Not signal-safe;
    // call before any producer can run.
    bool init(size_t min_slots, bool native = false);
    void release_memory();

    size_t capacity() const { return mask_ + 1; }
    static size_t slot_bytes(bool native) { return sizeof(SampleSlot) + (native ? sizeof(NativeTrace) : 0); }
    size_t bytes() const { return slots_ == nullptr ? 0 : capacity() * slot_bytes(traces_ != nullptr); }

    // ASYNC-SIGNAL-SAFE. The native trace of a claimed slot; nullptr when
    // the buffer has none (a session without native frames).
    NativeTrace* trace_of(const SampleSlot* slot) const {
        return traces_ == nullptr ? nullptr : &traces_[slot - slots_];
    }

    // ASYNC-SIGNAL-SAFE. A slot to fill, or nullptr when the queue is full
    // (or heavily contended: bounded retries keep the handler's work bounded).
    SampleSlot* try_claim();
    // ASYNC-SIGNAL-SAFE. Hand a filled slot to the consumer.
    void publish(SampleSlot* slot);
    // ASYNC-SIGNAL-SAFE. Approximate number of claimed, unconsumed slots.
    size_t approx_size() const;

    // Consumer side (one consumer at a time, GIL held).
    // The next published slot, or nullptr if none is ready yet.
    const SampleSlot* peek();
    // Return the slot from peek() to the producers.
    void pop();
    bool empty_for_consumer() const;

private:
    SampleSlot* slots_ = nullptr;
    NativeTrace* traces_ = nullptr;  // in the same mapping, after the slots
    size_t mask_ = 0;
    alignas(64) std::atomic<uint64_t> enqueue_pos_{0};
    alignas(64) uint64_t dequeue_pos_ = 0;
};

}  // namespace spprof
