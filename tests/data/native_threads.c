/* Threads with no Python in them, for tests/test_native_threads.py: what a
 * BLAS library or a C++ extension starts. Called through ctypes. */
#define _GNU_SOURCE 1
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct job {
    double cpu_s;
    double sleep_s;
    char name[16];
    double used_s;
};

static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile unsigned long sink;

static void* body(void* arg) {
    struct job* job = arg;
    pthread_setname_np(pthread_self(), job->name);
    if (job->sleep_s > 0) {
        struct timespec ts = {(time_t)job->sleep_s, (long)((job->sleep_s - (time_t)job->sleep_s) * 1e9)};
        while (nanosleep(&ts, &ts) != 0) {
        }
    }
    double t0 = thread_cpu_s();
    unsigned long x = 1;
    while (thread_cpu_s() - t0 < job->cpu_s) {
        for (int i = 0; i < 10000; ++i) x = x * 6364136223846793005ul + 1442695040888963407ul;
    }
    sink = x;
    job->used_s = thread_cpu_s();  /* everything the thread used */
    return NULL;
}

/* Start a thread named `name` that sleeps `sleep_s`, then burns `cpu_s` of
 * CPU. Returns a handle for native_join. */
void* native_start(const char* name, double sleep_s, double cpu_s) {
    struct job* job = calloc(1, sizeof *job);
    pthread_t* t = calloc(1, sizeof *t + sizeof(struct job*));
    if (job == NULL || t == NULL) return NULL;
    job->cpu_s = cpu_s;
    job->sleep_s = sleep_s;
    strncpy(job->name, name, sizeof job->name - 1);
    if (pthread_create(t, NULL, body, job) != 0) return NULL;
    memcpy(t + 1, &job, sizeof job);
    return t;
}

/* Wait for it; the CPU seconds it used. */
double native_join(void* handle) {
    pthread_t* t = handle;
    struct job* job;
    memcpy(&job, t + 1, sizeof job);
    pthread_join(*t, NULL);
    double used = job->used_s;
    free(job);
    free(t);
    return used;
}
