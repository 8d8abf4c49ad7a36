#include "session_thread.h"

#include <Python.h>
#include <time.h>

#include "os_clock.h"
#include "wakeup.h"

namespace spprof {

int SessionThread::start(void* (*body)(void*), void* arg, size_t stack_bytes) {
    stop_.store(false);
    tid_.store(0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, stack_bytes);
    int err = pthread_create(&thread_, &attr, body, arg);
    pthread_attr_destroy(&attr);
    if (err == 0) running_ = true;
    return err;
}

void SessionThread::stop(std::atomic<uint32_t>* wake) {
    stopped_for_fork_ = false;
    if (!running_) return;
    stop_.store(true, std::memory_order_release);
    wakeup_signal(wake);
    Py_BEGIN_ALLOW_THREADS pthread_join(thread_, nullptr);
    Py_END_ALLOW_THREADS running_ = false;
    tid_.store(0);
}

void SessionThread::stop_for_fork(std::atomic<uint32_t>* wake) {
    if (!running_) return;
    stop(wake);
    stopped_for_fork_ = true;  // after stop(), which clears it
}

bool SessionThread::take_stopped_for_fork() {
    const bool was = stopped_for_fork_;
    stopped_for_fork_ = false;
    return was;
}

void SessionThread::note_started() { tid_.store(current_tid()); }

void SessionThread::note_ending() { ended_cpu_ns_.fetch_add(thread_cpu_now_ns()); }

int64_t SessionThread::cpu_ns() const {
    int64_t total = ended_cpu_ns_.load();
    if (running_ && tid_.load() != 0) {
        clockid_t clock;
        timespec ts;
        if (pthread_getcpuclockid(thread_, &clock) == 0 && clock_gettime(clock, &ts) == 0) {
            total += int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
        }
    }
    return total;
}

}  // namespace spprof
