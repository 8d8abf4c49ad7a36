#include "thread_names.h"

#include "os_clock.h"

namespace spprof {

namespace {
// Names are refreshed when new threads appear, and at least this often.
constexpr int64_t kRefreshNs = 500'000'000;

// An attribute stored on a plain object, read without running Python code:
// only through the generic attribute lookup, and only if the class does not
// define it as a descriptor (a property would run code). New reference or
// nullptr (never an exception left set).
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
    seen_created_ = ~uint64_t{0};
    updated_ns_ = 0;
}

void ThreadNames::refresh(uint64_t timers_created, bool force) {
    if (force || timers_created != seen_created_ || monotonic_now_ns() - updated_ns_ > kRefreshNs) {
        seen_created_ = timers_created;
        update();
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
                names_[static_cast<pid_t>(tid)].assign(name, static_cast<size_t>(n));
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
