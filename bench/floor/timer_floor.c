/*
 * timer_floor: the bare-kernel floor of spprof's sampling overhead, for
 * `make bench` (bench/bench_overhead.py builds it into build/bench/ and runs
 * it; it is not part of the package).
 *
 * What it is: a program that embeds CPython and behaves like `python` (so
 * bench_overhead.py runs the very workload it gives spprof with
 * `timer_floor -c CODE ARGS...`), plus a built-in module `_timer_floor`
 * whose arm() sets up, on the calling thread, the same kind of timer spprof
 * uses, delivering SIGPROF to a handler that only counts:
 *
 *   perf_event    a task-clock software event of the thread
 *                 (PERF_COUNT_SW_TASK_CLOCK, period = the interval, kernel
 *                 time included where allowed as spprof does), O_ASYNC with
 *                 F_SETSIG SIGPROF and F_SETOWN_EX to the thread;
 *   timer_create  a POSIX timer on the thread's CPU clock
 *                 (CLOCK_THREAD_CPUTIME_ID) with SIGEV_THREAD_ID SIGPROF.
 *
 * With wall=True it also starts a thread that wakes on CLOCK_MONOTONIC
 * every interval and does nothing else: the kernel's part of spprof's wall
 * mode sampler thread (which sleeps to an absolute monotonic deadline each
 * tick).
 *
 * So the difference between the workload's wall time here and spprof's is
 * spprof's own work (the stack walk in the handler, the service and sampler
 * threads); what is left here is signal delivery and timer upkeep alone.
 *
 * Why embedding, not a ctypes-loaded shared object: the workload then runs
 * in a real `python -c` (same interpreter library, same start-up, same
 * sys.argv), and the timer code is plain C with no Python in the way. It
 * links against the venv interpreter's libpython (python3-config --embed);
 * this works for a shared-library build (Py_ENABLE_SHARED=1, the case of the
 * pyenv 3.11 used here; an rpath to its LIBDIR is added) and a static one
 * (the libpython archive, with the program's symbols exported so extension
 * modules resolve them). FLOOR_PYTHON, set at build time to the venv's
 * python, is the program name CPython computes its paths from: sys.prefix,
 * the stdlib and site-packages are that interpreter's.
 *
 * Only the thread that calls arm() is timed (the workload is single-threaded
 * and calls it itself); the wall-mode ticker blocks SIGPROF.
 */
#define _GNU_SOURCE 1
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#ifndef FLOOR_PYTHON
#error "build with -DFLOOR_PYTHON=\"/path/to/venv/bin/python\""
#endif

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* The handler's only work: two relaxed additions. */
static atomic_ulong g_signals;
static atomic_ulong g_overruns;

static void on_sigprof(int signo, siginfo_t* info, void* uc) {
    (void)signo;
    (void)uc;
    atomic_fetch_add_explicit(&g_signals, 1, memory_order_relaxed);
    if (info != NULL && info->si_code == SI_TIMER && info->si_overrun > 0) {
        atomic_fetch_add_explicit(&g_overruns, (unsigned long)info->si_overrun,
                                  memory_order_relaxed);
    }
}

enum backend { NONE, PERF_EVENT, TIMER_CREATE };

static enum backend g_backend = NONE;
static int g_perf_fd = -1;
static int g_perf_kernel = 0; /* kernel time counted (as spprof, where allowed) */
static timer_t g_timer;

static int g_wall = 0;
static pthread_t g_ticker;
static int64_t g_interval_ns;
static atomic_int g_ticker_stop;
static atomic_ulong g_ticks;

static int open_task_clock(pid_t tid, uint64_t period_ns, int exclude_kernel) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.sample_period = period_ns;
    attr.disabled = 1;
    attr.exclude_kernel = exclude_kernel ? 1 : 0;
    attr.exclude_hv = 1;
    attr.wakeup_events = 1;
    return (int)syscall(SYS_perf_event_open, &attr, tid, -1, -1, PERF_FLAG_FD_CLOEXEC);
}

/* Returns 0 or an errno value; *what names the failing step. */
static int arm_perf_event(pid_t tid, int64_t interval_ns, const char** what) {
    *what = "perf_event_open";
    int fd = open_task_clock(tid, (uint64_t)interval_ns, 0);
    g_perf_kernel = fd >= 0;
    if (fd < 0 && (errno == EACCES || errno == EPERM)) {
        fd = open_task_clock(tid, (uint64_t)interval_ns, 1);
    }
    if (fd < 0) return errno;
    struct f_owner_ex owner = {F_OWNER_TID, tid};
    int flags = fcntl(fd, F_GETFL);
    if (fcntl(fd, F_SETSIG, SIGPROF) != 0 || fcntl(fd, F_SETOWN_EX, &owner) != 0 || flags < 0 ||
        fcntl(fd, F_SETFL, flags | O_ASYNC | O_NONBLOCK) != 0) {
        int err = errno;
        *what = "fcntl on the perf event";
        close(fd);
        return err;
    }
    if (ioctl(fd, PERF_EVENT_IOC_RESET, 0) != 0 || ioctl(fd, PERF_EVENT_IOC_ENABLE, 0) != 0) {
        int err = errno;
        *what = "enabling the perf event";
        close(fd);
        return err;
    }
    g_perf_fd = fd;
    return 0;
}

static int arm_timer_create(pid_t tid, int64_t interval_ns, const char** what) {
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = SIGPROF;
    sev.sigev_notify_thread_id = tid;
    *what = "timer_create";
    if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &g_timer) != 0) return errno;
    struct itimerspec spec;
    memset(&spec, 0, sizeof spec);
    spec.it_interval.tv_sec = interval_ns / 1000000000;
    spec.it_interval.tv_nsec = interval_ns % 1000000000;
    spec.it_value = spec.it_interval;
    if (timer_settime(g_timer, 0, &spec, NULL) != 0) {
        int err = errno;
        *what = "timer_settime";
        timer_delete(g_timer);
        return err;
    }
    return 0;
}

static void* ticker_main(void* arg) {
    (void)arg;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (!atomic_load_explicit(&g_ticker_stop, memory_order_acquire)) {
        int64_t ns = next.tv_nsec + g_interval_ns;
        next.tv_sec += ns / 1000000000;
        next.tv_nsec = ns % 1000000000;
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL) == EINTR) {
        }
        atomic_fetch_add_explicit(&g_ticks, 1, memory_order_relaxed);
    }
    return NULL;
}

static int start_ticker(const char** what) {
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &block, &old); /* inherited by the ticker */
    atomic_store(&g_ticker_stop, 0);
    int err = pthread_create(&g_ticker, NULL, ticker_main, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    *what = "pthread_create";
    return err;
}

static void disarm_timer(void) {
    if (g_backend == PERF_EVENT) {
        ioctl(g_perf_fd, PERF_EVENT_IOC_DISABLE, 0);
        close(g_perf_fd);
        g_perf_fd = -1;
    } else if (g_backend == TIMER_CREATE) {
        timer_delete(g_timer);
    }
    g_backend = NONE;
}

static PyObject* floor_arm(PyObject* self, PyObject* args) {
    (void)self;
    const char* name;
    long long interval_ns;
    int wall = 0;
    if (!PyArg_ParseTuple(args, "sL|p:arm", &name, &interval_ns, &wall)) return NULL;
    enum backend which;
    if (strcmp(name, "perf_event") == 0) {
        which = PERF_EVENT;
    } else if (strcmp(name, "timer_create") == 0) {
        which = TIMER_CREATE;
    } else {
        return PyErr_Format(PyExc_ValueError,
                            "backend must be 'perf_event' or 'timer_create', got '%s'", name);
    }
    if (interval_ns <= 0) return PyErr_Format(PyExc_ValueError, "interval_ns must be positive");
    if (g_backend != NONE) return PyErr_Format(PyExc_RuntimeError, "already armed");

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigprof;
    sa.sa_flags = SA_SIGINFO | SA_RESTART; /* as spprof's */
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &sa, NULL) != 0) return PyErr_SetFromErrno(PyExc_OSError);
    atomic_store(&g_signals, 0);
    atomic_store(&g_overruns, 0);
    atomic_store(&g_ticks, 0);

    pid_t tid = (pid_t)syscall(SYS_gettid);
    const char* what = "";
    int err = which == PERF_EVENT ? arm_perf_event(tid, interval_ns, &what)
                                  : arm_timer_create(tid, interval_ns, &what);
    if (err != 0) {
        errno = err;
        return PyErr_Format(PyExc_OSError, "%s failed: %s", what, strerror(err));
    }
    g_backend = which;
    g_interval_ns = interval_ns;
    g_wall = wall;
    if (wall && (err = start_ticker(&what)) != 0) {
        disarm_timer();
        g_wall = 0;
        return PyErr_Format(PyExc_OSError, "%s failed: %s", what, strerror(err));
    }
    Py_RETURN_NONE;
}

static PyObject* floor_disarm(PyObject* self, PyObject* unused) {
    (void)self;
    (void)unused;
    if (g_backend == NONE) return PyErr_Format(PyExc_RuntimeError, "not armed");
    const char* name = g_backend == PERF_EVENT ? "perf_event" : "timer_create";
    int perf_kernel = g_backend == PERF_EVENT && g_perf_kernel;
    disarm_timer();
    if (g_wall) {
        atomic_store_explicit(&g_ticker_stop, 1, memory_order_release);
        Py_BEGIN_ALLOW_THREADS
        pthread_join(g_ticker, NULL);
        Py_END_ALLOW_THREADS
        g_wall = 0;
    }
    /* A signal queued before the disarm may still arrive; the handler stays
       installed (the process ends soon after). */
    return Py_BuildValue("{s:s,s:k,s:k,s:k,s:O}", "backend", name, "signals",
                         atomic_load(&g_signals), "overruns", atomic_load(&g_overruns), "ticks",
                         atomic_load(&g_ticks), "perf_kernel", perf_kernel ? Py_True : Py_False);
}

static PyMethodDef floor_methods[] = {
    {"arm", floor_arm, METH_VARARGS,
     "arm(backend, interval_ns, wall=False): SIGPROF to an empty handler every interval of "
     "this thread's CPU time ('perf_event' or 'timer_create'); wall=True adds a thread "
     "waking every interval of real time."},
    {"disarm", floor_disarm, METH_NOARGS,
     "disarm() -> dict(backend, signals, overruns, ticks, perf_kernel)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef floor_module = {
    PyModuleDef_HEAD_INIT, "_timer_floor", "The bare-kernel floor of spprof's sampling.", -1,
    floor_methods, NULL, NULL, NULL, NULL,
};

static PyObject* PyInit__timer_floor(void) { return PyModule_Create(&floor_module); }

int main(int argc, char** argv) {
    if (PyImport_AppendInittab("_timer_floor", PyInit__timer_floor) != 0) {
        fprintf(stderr, "timer_floor: cannot register the _timer_floor module\n");
        return 1;
    }
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, FLOOR_PYTHON);
    if (!PyStatus_Exception(status)) status = PyConfig_SetBytesArgv(&config, argc, argv);
    if (!PyStatus_Exception(status)) status = Py_InitializeFromConfig(&config);
    PyConfig_Clear(&config);
    if (PyStatus_Exception(status)) {
        if (PyStatus_IsExit(status)) return status.exitcode;
        Py_ExitStatusException(status);
    }
    return Py_RunMain();
}
