#include "thread_names.h"

#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <new>

#include "os_clock.h"
#include "proc_tasks.h"

namespace spprof {

namespace {
// Names are refreshed when new threads appear, and at least this often.
constexpr int64_t kRefreshNs = 500'000'000;

// An attribute stored on a plain object, read without running Python code:
// only through the generic attribute lookup, and only if the class does not
// define it as a descriptor (a property would run code). New reference or
// nullptr (never an exception left set).
// The kernel's name of a thread of this process ("" if it has ended).
std::string kernel_thread_name(pid_t tid) {
    char path[64];
    std::snprintf(path, sizeof path, "/proc/self/task/%d/comm", static_cast<int>(tid));
    ProcFile file;  // out of the program's way (proc_tasks.h)
    if (!file.open(path, O_RDONLY)) return {};
    char buf[64];
    ssize_t n = -1;
    int fd;
    while ((fd = file.fd()) >= 0) {
        n = ::read(fd, buf, sizeof buf);
        if (n >= 0 || errno != EINTR) break;
    }
    if (n <= 0) return {};
    std::string name(buf, static_cast<size_t>(n));
    while (!name.empty() && (name.back() == '\n' || name.back() == '\0')) name.pop_back();
    return name;
}

PyObject* plain_attribute(PyObject* obj, PyObject* name) {
    PyTypeObject* type = Py_TYPE(obj);
    if (type->tp_getattro != PyObject_GenericGetAttr) return nullptr;
    PyObject* descr = _PyType_Lookup(type, name);  // borrowed, no code runs
    if (descr != nullptr && Py_TYPE(descr)->tp_descr_get != nullptr) return nullptr;
    PyObject* value = PyObject_GenericGetAttr(obj, name);
    if (value == nullptr) PyErr_Clear();  // our own lookup's AttributeError
    return value;
}
}  // namespace


bool ThreadNames::intern() {
    if (threading_ != nullptr) return true;
    threading_ = PyUnicode_InternFromString("threading");
    active_ = PyUnicode_InternFromString("_active");
    native_id_ = PyUnicode_InternFromString("_native_id");
    name_ = PyUnicode_InternFromString("_name");
    if (!threading_ || !active_ || !native_id_ || !name_) {
        Py_CLEAR(threading_);
        Py_CLEAR(active_);
        Py_CLEAR(native_id_);
        Py_CLEAR(name_);
        return false;
    }
    return true;
}

void ThreadNames::clear() {
    names_.clear();
    asked_kernel_.clear();
    seen_created_ = ~uint64_t{0};
    updated_ns_ = 0;
}

void ThreadNames::refresh(ThreadRegistry& registry, bool force) {
    const uint64_t timers_created = registry.counters().timers_created;
    if (force || timers_created != seen_created_ || monotonic_now_ns() - updated_ns_ > kRefreshNs) {
        seen_created_ = timers_created;
        update();
        // Kernel names are a nicety: out of memory (stop() runs where the
        // address space may be exhausted), threads just stay unnamed.
        try {
            for (pid_t tid : registry.thread_ids()) {
                if (names_.count(tid) != 0 || !asked_kernel_.insert(tid).second) continue;
                std::string comm = kernel_thread_name(tid);
                if (!comm.empty()) names_.emplace(tid, std::move(comm));
            }
        } catch (const std::bad_alloc&) {
        }
    }
}

void ThreadNames::note_starting(pid_t tid, PyObject* function) {
    if (name_ == nullptr) return;
    PyObject* name_obj = PyMethod_Check(function) ? plain_attribute(PyMethod_GET_SELF(function), name_) : nullptr;
    bool named = false;
    if (name_obj != nullptr && PyUnicode_Check(name_obj)) {
        Py_ssize_t n = 0;
        const char* name = PyUnicode_AsUTF8AndSize(name_obj, &n);
        if (name != nullptr) {
            names_[tid].assign(name, static_cast<size_t>(n));
            named = true;
        }
    }
    if (PyErr_Occurred()) PyErr_Clear();  // our own conversion's error
    Py_XDECREF(name_obj);
    if (!named && names_.count(tid) == 0) {
        // No threading.Thread (a bare _thread start): the kernel's name of
        // this thread, which is the one starting.
        char comm[17] = {};
        try {
            if (prctl(PR_GET_NAME, comm, 0, 0, 0) == 0 && comm[0] != '\0') names_.emplace(tid, comm);
            asked_kernel_.insert(tid);
        } catch (const std::bad_alloc&) {
        }
    }
}

void ThreadNames::update() {
    // Names come from threading's table of running threads. This runs on the
    // service thread too, so it must not run Python code or create container
    // objects (that could start a garbage collection there): plain dict and
    // attribute reads only, with names interned at start().
    if (active_ == nullptr) return;
    PyObject* modules = PyImport_GetModuleDict();  // borrowed
    PyObject* threading = modules ? PyDict_GetItemWithError(modules, threading_) : nullptr;
    if (threading == nullptr || !PyModule_Check(threading)) {
        PyErr_Clear();
        return;
    }
    PyObject* active = PyDict_GetItemWithError(PyModule_GetDict(threading), active_);
    if (active == nullptr || !PyDict_CheckExact(active)) {
        PyErr_Clear();
        return;
    }
    Py_INCREF(active);
    PyObject *key, *thread;
    Py_ssize_t pos = 0;
    while (PyDict_Next(active, &pos, &key, &thread)) {
        PyObject* tid_obj = plain_attribute(thread, native_id_);
        PyObject* name_obj = tid_obj ? plain_attribute(thread, name_) : nullptr;
        if (tid_obj != nullptr && name_obj != nullptr && PyLong_CheckExact(tid_obj) &&
            PyUnicode_Check(name_obj)) {
            long tid = PyLong_AsLong(tid_obj);
            Py_ssize_t n = 0;
            const char* name = PyUnicode_AsUTF8AndSize(name_obj, &n);
            if (tid > 0 && name != nullptr) {
                try {
                    names_[static_cast<pid_t>(tid)].assign(name, static_cast<size_t>(n));
                } catch (const std::bad_alloc&) {
                    // Out of memory (stop() under an exhausted address
                    // space): the thread keeps the name it had, or none.
                }
            }
            if (PyErr_Occurred()) PyErr_Clear();  // our own conversion's error
        }
        Py_XDECREF(tid_obj);
        Py_XDECREF(name_obj);
    }
    Py_DECREF(active);
    updated_ns_ = monotonic_now_ns();
}

}  // namespace spprof
