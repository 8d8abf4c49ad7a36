// module.cpp: the private extension module spprof._native.
//
// Thin bindings over Session; argument checking that users see happens in
// the Python layer (spprof/_api.py), these only guard against misuse.
#include <Python.h>

#include <pthread.h>

#include "code_registry.h"
#include "compat.h"
#include "session.h"

namespace {

using spprof::Session;

PyObject* native_start(PyObject*, PyObject* args, PyObject* kwargs) {
    static const char* kwlist[] = {"interval_ns", "memory_limit_bytes", "take_over_sigprof",
                                   "warning_category", nullptr};
    long long interval_ns = 0;
    unsigned long long memory_limit = 0;
    int take_over = 0;
    PyObject* category = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LK|pO", const_cast<char**>(kwlist), &interval_ns,
                                     &memory_limit, &take_over, &category)) {
        return nullptr;
    }
    if (category != Py_None &&
        (!PyType_Check(category) || !PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(category),
                                                       reinterpret_cast<PyTypeObject*>(PyExc_Warning)))) {
        PyErr_SetString(PyExc_TypeError, "warning_category must be a Warning subclass");
        return nullptr;
    }
    if (interval_ns <= 0) {
        PyErr_SetString(PyExc_ValueError, "interval_ns must be positive");
        return nullptr;
    }
    spprof::StartOptions opts;
    opts.interval_ns = interval_ns;
    opts.memory_limit_bytes = static_cast<size_t>(memory_limit);
    opts.take_over_sigprof = take_over != 0;
    opts.warning_category = category == Py_None ? nullptr : category;
    if (!Session::instance().start(opts)) return nullptr;
    Py_RETURN_NONE;
}

PyObject* native_stop(PyObject*, PyObject*) { return Session::instance().stop(); }

PyObject* native_is_active(PyObject*, PyObject*) {
    return PyBool_FromLong(Session::instance().active());
}

PyObject* native_is_paused(PyObject*, PyObject*) {
    return PyBool_FromLong(Session::instance().paused());
}

PyObject* native_pause(PyObject*, PyObject*) { return PyBool_FromLong(Session::instance().pause()); }

PyObject* native_resume(PyObject*, PyObject*) {
    return PyBool_FromLong(Session::instance().resume());
}

PyObject* native_stats(PyObject*, PyObject*) { return Session::instance().stats(); }

PyObject* native_register_thread(PyObject*, PyObject*) {
    return PyBool_FromLong(Session::instance().register_current_thread());
}

PyObject* native_unregister_thread(PyObject*, PyObject*) {
    return PyBool_FromLong(Session::instance().unregister_current_thread());
}

PyObject* native_is_thread_registered(PyObject*, PyObject*) {
    return PyBool_FromLong(Session::instance().current_thread_registered());
}

PyObject* native_after_fork_in_child(PyObject*, PyObject*) {
    Session::after_fork_in_child();
    Py_RETURN_NONE;
}

PyObject* native_gettid(PyObject*, PyObject*) { return PyLong_FromLong(spprof::current_tid()); }

// Test entry point: our decoding of a code object's line table, as a list
// of (start instruction index, line) ranges.
PyObject* native_line_ranges(PyObject*, PyObject* arg) {
    if (!PyCode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "expected a code object");
        return nullptr;
    }
    auto* co = reinterpret_cast<PyCodeObject*>(arg);
    PyObject* table = spprof::compat::code_linetable(co);
    if (!PyBytes_Check(table)) {
        PyErr_SetString(PyExc_TypeError, "code object has no byte line table");
        return nullptr;
    }
    auto ranges = spprof::decode_line_table(reinterpret_cast<const uint8_t*>(PyBytes_AS_STRING(table)),
                                            static_cast<size_t>(PyBytes_GET_SIZE(table)),
                                            spprof::compat::code_firstlineno(co));
    PyObject* out = PyList_New(0);
    for (const auto& [start, line] : ranges) {
        PyObject* item = Py_BuildValue("(ii)", start, line);
        if (item == nullptr || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return nullptr;
        }
        Py_DECREF(item);
    }
    return out;
}

PyMethodDef kMethods[] = {
    {"start", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(native_start)),
     METH_VARARGS | METH_KEYWORDS, "Start a session (see spprof.start)."},
    {"stop", native_stop, METH_NOARGS, "Stop the session and return the raw result dict."},
    {"is_active", native_is_active, METH_NOARGS, nullptr},
    {"is_paused", native_is_paused, METH_NOARGS, nullptr},
    {"pause", native_pause, METH_NOARGS, nullptr},
    {"resume", native_resume, METH_NOARGS, nullptr},
    {"stats", native_stats, METH_NOARGS, nullptr},
    {"register_thread", native_register_thread, METH_NOARGS, nullptr},
    {"unregister_thread", native_unregister_thread, METH_NOARGS, nullptr},
    {"is_thread_registered", native_is_thread_registered, METH_NOARGS, nullptr},
    {"after_fork_in_child", native_after_fork_in_child, METH_NOARGS, nullptr},
    {"gettid", native_gettid, METH_NOARGS, "Kernel thread id of the calling thread."},
    {"_line_ranges", native_line_ranges, METH_O, "Test entry point: decoded line table."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT, "spprof._native", "spprof's native sampler (private).", -1, kMethods,
    nullptr, nullptr, nullptr, nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit__native() {
    PyObject* m = PyModule_Create(&kModule);
    if (m == nullptr) return nullptr;
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", spprof::kMaxDepth) < 0 ||
        PyModule_AddStringConstant(m, "BACKEND", "timer_create") < 0) {
        Py_DECREF(m);
        return nullptr;
    }
    return m;
}
