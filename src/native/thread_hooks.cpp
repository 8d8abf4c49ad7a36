#include "thread_hooks.h"

#include <sys/types.h>
#include <unistd.h>

#include <exception>

#include "compat.h"
#include "native_unwind.h"
#include "session.h"

namespace spprof {

namespace {

// Whether this OS thread already ran a bootstrap. A library that turns
// threads into something else (gevent's greenlets, which all run on the
// thread that started them) calls the start function from a thread that
// exists already: only the first bootstrap on a new OS thread (never the
// main thread) owns that thread's timer and gives it back at the end.
thread_local bool t_bootstrapped = false;

// `birth_mark`: Session::thread_birth_mark() in the thread that started
// this one. A new OS thread born under the timers that still run has its
// CPU counted from its first instruction.
PyObject* run_target(PyObject* function, PyObject* args, PyObject* kwargs, uint64_t birth_mark) {
    const bool owner = !t_bootstrapped && current_tid() != getpid();
    t_bootstrapped = true;
    prepare_thread_for_exceptions();
    native::prepare_current_thread();
    try {
        Session::instance().register_current_thread(owner ? birth_mark : 0);
        Session::instance().name_starting_thread(function);
    } catch (const std::exception&) {
        // Out of memory: the thread runs unsampled rather than not at all.
    }
    PyObject* result = PyObject_Call(function, args, kwargs);
    if (owner) Session::instance().current_thread_exiting();  // no Python code
    if (result != nullptr) return result;
    // What _thread does with an exception that ends a thread, naming the
    // user's function rather than this one; _thread then sees a normal end.
    if (PyErr_ExceptionMatches(PyExc_SystemExit)) {
        PyErr_Clear();
    } else {
        compat::report_uncaught_thread_exception(function);
    }
    Py_RETURN_NONE;
}

// thread_bootstrap(function, args, kwargs or None, birth_mark): the new
// thread's function.
PyObject* bootstrap(PyObject*, PyObject* fargs) {
    PyObject* function = nullptr;
    PyObject* args = nullptr;
    PyObject* kwargs = nullptr;
    unsigned long long birth_mark = 0;
    if (!PyArg_ParseTuple(fargs, "OO!OK:thread_bootstrap", &function, &PyTuple_Type, &args,
                          &kwargs, &birth_mark)) {
        return nullptr;
    }
    return run_target(function, args, kwargs == Py_None ? nullptr : kwargs, birth_mark);
}

// The same for start_joinable_thread, whose function takes no arguments:
// `self` is (the user's function, birth_mark).
PyObject* bootstrap_noargs(PyObject* self, PyObject*) {
    PyObject* function = nullptr;
    unsigned long long birth_mark = 0;
    if (!PyArg_ParseTuple(self, "OK:thread_bootstrap", &function, &birth_mark)) return nullptr;
    PyObject* empty = PyTuple_New(0);
    if (empty == nullptr) return nullptr;
    PyObject* result = run_target(function, empty, nullptr, birth_mark);
    Py_DECREF(empty);
    return result;
}

PyMethodDef g_bootstrap_def = {"thread_bootstrap", bootstrap, METH_VARARGS,
                               "spprof: sample the new thread, then run its function."};
PyMethodDef g_bootstrap_noargs_def = {"thread_bootstrap", bootstrap_noargs, METH_NOARGS,
                                      "spprof: sample the new thread, then run its function."};
PyObject* g_bootstrap = nullptr;

// start_new_thread(function, args[, kwargs]), `self` the original. The
// checks and their messages are those of _thread.start_new_thread.
PyObject* start_new_thread(PyObject* self, PyObject* fargs) {
    PyObject* function = nullptr;
    PyObject* args = nullptr;
    PyObject* kwargs = nullptr;
    if (!PyArg_UnpackTuple(fargs, "start_new_thread", 2, 3, &function, &args, &kwargs)) {
        return nullptr;
    }
    if (!PyCallable_Check(function)) {
        PyErr_SetString(PyExc_TypeError, "first arg must be callable");
        return nullptr;
    }
    if (!PyTuple_Check(args)) {
        PyErr_SetString(PyExc_TypeError, "2nd arg must be a tuple");
        return nullptr;
    }
    if (kwargs != nullptr && !PyDict_Check(kwargs)) {
        PyErr_SetString(PyExc_TypeError, "optional 3rd arg must be a dictionary");
        return nullptr;
    }
    PyObject* mark = PyLong_FromUnsignedLongLong(Session::instance().thread_birth_mark());
    if (mark == nullptr) return nullptr;
    PyObject* boot_args =
        PyTuple_Pack(4, function, args, kwargs != nullptr ? kwargs : Py_None, mark);
    Py_DECREF(mark);
    if (boot_args == nullptr) return nullptr;
    PyObject* result = PyObject_CallFunctionObjArgs(self, g_bootstrap, boot_args, nullptr);
    Py_DECREF(boot_args);
    return result;
}

// start_joinable_thread(function, handle=None, daemon=True), `self` the
// original; the checks and messages of 3.13's _thread.
PyObject* start_joinable_thread(PyObject* self, PyObject* fargs, PyObject* fkwargs) {
    static const char* keywords[] = {"function", "handle", "daemon", nullptr};
    PyObject* function = nullptr;
    PyObject* handle = Py_None;
    int daemon = 1;
    if (!PyArg_ParseTupleAndKeywords(fargs, fkwargs, "O|Op:start_joinable_thread",
                                     const_cast<char**>(keywords), &function, &handle, &daemon)) {
        return nullptr;
    }
    if (!PyCallable_Check(function)) {
        PyErr_SetString(PyExc_TypeError, "thread function must be callable");
        return nullptr;
    }
    PyObject* boot_self = Py_BuildValue("(OK)", function, static_cast<unsigned long long>(
                                                              Session::instance().thread_birth_mark()));
    if (boot_self == nullptr) return nullptr;
    PyObject* boot = PyCFunction_New(&g_bootstrap_noargs_def, boot_self);
    Py_DECREF(boot_self);
    if (boot == nullptr) return nullptr;
    PyObject* call_args = PyTuple_Pack(1, boot);
    Py_DECREF(boot);
    if (call_args == nullptr) return nullptr;
    PyObject* kw = Py_BuildValue("{sOsO}", "handle", handle, "daemon", daemon ? Py_True : Py_False);
    PyObject* result = kw != nullptr ? PyObject_Call(self, call_args, kw) : nullptr;
    Py_XDECREF(kw);
    Py_DECREF(call_args);
    return result;
}

PyMethodDef g_start_new_thread_def = {
    "start_new_thread", start_new_thread, METH_VARARGS,
    "start_new_thread(function, args[, kwargs]): start a thread, as _thread does; "
    "while spprof profiles, the thread is sampled from its first instruction."};
PyMethodDef g_start_joinable_thread_def = {
    "start_joinable_thread",
    reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(start_joinable_thread)),
    METH_VARARGS | METH_KEYWORDS,
    "start_joinable_thread(function, handle=None, daemon=True): start a thread, as _thread "
    "does; while spprof profiles, the thread is sampled from its first instruction."};

}  // namespace

bool thread_hooks_init() {
    if (g_bootstrap == nullptr) g_bootstrap = PyCFunction_New(&g_bootstrap_def, nullptr);
    return g_bootstrap != nullptr;
}

PyObject* wrap_start_new_thread(PyObject* original) {
    if (!thread_hooks_init()) return nullptr;
    return PyCFunction_NewEx(&g_start_new_thread_def, original, nullptr);
}

PyObject* wrap_start_joinable_thread(PyObject* original) {
    if (!thread_hooks_init()) return nullptr;
    return PyCFunction_NewEx(&g_start_joinable_thread_def, original, nullptr);
}

}  // namespace spprof
