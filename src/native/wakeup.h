// wakeup.h: how the signal handler wakes the service thread, without a
// file descriptor.
//
// A futex word in the handler state: the handler sets it to 1 and wakes
// one waiter; the service thread waits while it is 0, with a timeout, and
// clears it. No descriptor means nothing the program can close, reuse or
// dup2 over: an eventfd used for this was written into and closed after a
// program (a daemonizer's closerange) had reused its number for a file or a
// socket. ASYNC-SIGNAL-SAFE where marked (a raw system call, no lock).
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

namespace spprof {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t));

// ASYNC-SIGNAL-SAFE.
inline void wakeup_signal(std::atomic<uint32_t>* word) {
    word->store(1, std::memory_order_release);
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

// Wait until `word` is set or `timeout_ms` passed; clear it. Whether it was
// set.
inline bool wakeup_wait(std::atomic<uint32_t>* word, int timeout_ms) {
    if (word->load(std::memory_order_acquire) == 0) {
        timespec ts{timeout_ms / 1000, static_cast<long>(timeout_ms % 1000) * 1000000L};
        syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, 0, &ts, nullptr, 0);
    }
    return word->exchange(0, std::memory_order_acq_rel) != 0;
}

}  // namespace spprof
