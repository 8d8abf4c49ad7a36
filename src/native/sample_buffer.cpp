#include "sample_buffer.h"

#include <sys/mman.h>

#include <new>

namespace spprof {

SampleBuffer::~SampleBuffer() { release_memory(); }

bool SampleBuffer::init(size_t min_slots, bool native) {
    release_memory();
    // Largest power of two not above the request (the budget is a cap), 16 at least.
    size_t cap = 16;
    while (cap * 2 <= min_slots) cap <<= 1;
    // mmap rather than new[]: zeroed, page-aligned, and returned to the OS in
    // full on release instead of fragmenting the heap.
    void* mem = mmap(nullptr, cap * slot_bytes(native), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return false;
    slots_ = static_cast<SampleSlot*>(mem);
    traces_ = native ? reinterpret_cast<NativeTrace*>(slots_ + cap) : nullptr;
    mask_ = cap - 1;
    for (size_t i = 0; i < cap; ++i) {
        new (&slots_[i].seq) std::atomic<uint64_t>(i);
    }
    enqueue_pos_.store(0, std::memory_order_relaxed);
    dequeue_pos_ = 0;
    return true;
}

void SampleBuffer::release_memory() {
    if (slots_ != nullptr) {
        munmap(slots_, bytes());
        slots_ = nullptr;
        traces_ = nullptr;
        mask_ = 0;
    }
}

SampleSlot* SampleBuffer::try_claim() {
    if (slots_ == nullptr) return nullptr;
    uint64_t pos = enqueue_pos_.load(std::memory_order_relaxed);
    for (int attempt = 0; attempt < 64; ++attempt) {
        SampleSlot* slot = &slots_[pos & mask_];
        uint64_t seq = slot->seq.load(std::memory_order_acquire);
        auto diff = static_cast<int64_t>(seq) - static_cast<int64_t>(pos);
        if (diff == 0) {
            if (enqueue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                return slot;
            }
            // pos was reloaded by the failed CAS
        } else if (diff < 0) {
            return nullptr;  // full: the consumer has not freed this slot yet
        } else {
            pos = enqueue_pos_.load(std::memory_order_relaxed);
        }
    }
    return nullptr;
}

void SampleBuffer::publish(SampleSlot* slot) {
    uint64_t claimed = slot->seq.load(std::memory_order_relaxed);
    slot->seq.store(claimed + 1, std::memory_order_release);
}

size_t SampleBuffer::approx_size() const {
    uint64_t enq = enqueue_pos_.load(std::memory_order_relaxed);
    uint64_t deq = __atomic_load_n(&dequeue_pos_, __ATOMIC_RELAXED);
    return enq > deq ? static_cast<size_t>(enq - deq) : 0;
}

const SampleSlot* SampleBuffer::peek() {
    if (slots_ == nullptr) return nullptr;
    SampleSlot* slot = &slots_[dequeue_pos_ & mask_];
    uint64_t seq = slot->seq.load(std::memory_order_acquire);
    return seq == dequeue_pos_ + 1 ? slot : nullptr;
}

void SampleBuffer::pop() {
    SampleSlot* slot = &slots_[dequeue_pos_ & mask_];
    slot->seq.store(dequeue_pos_ + mask_ + 1, std::memory_order_release);
    __atomic_store_n(&dequeue_pos_, dequeue_pos_ + 1, __ATOMIC_RELAXED);
}

bool SampleBuffer::empty_for_consumer() const {
    return enqueue_pos_.load(std::memory_order_acquire) == __atomic_load_n(&dequeue_pos_, __ATOMIC_RELAXED);
}

}  // namespace spprof
