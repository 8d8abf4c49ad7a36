// module.cpp: the private extension module spprof._native.
//
// Thin bindings over Session; argument checking that users see happens in
// the Python layer (spprof/_limits.py), these only guard against misuse.
#include <Python.h>

#include <pthread.h>
#include <signal.h>
#include <string.h>

#include <cstdlib>
#include <new>
#include <string>

#include "code_registry.h"
#include "compat.h"
#include "gc_marker.h"
#include "native_unwind.h"
#include "sampler.h"
#include "sigprof_disposition.h"
#include "session.h"
#include "symbolizer.h"
#include "thread_hooks.h"

namespace {

using spprof::Session;

PyObject* native_start(PyObject*, PyObject* args, PyObject* kwargs) {
    static const char* kwlist[] = {"interval_ns", "memory_limit_bytes", "take_over_sigprof",
                                   "warning_category", "backend", "mode", "native", nullptr};
    const char* backend = "auto";
    const char* mode = "cpu";
    long long interval_ns = 0;
    unsigned long long memory_limit = 0;
    int take_over = 0;
    PyObject* category = Py_None;
    int native = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "LK|pOssp", const_cast<char**>(kwlist), &interval_ns,
                                     &memory_limit, &take_over, &category, &backend, &mode, &native)) {
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
    opts.native = native != 0;
    opts.warning_category = category == Py_None ? nullptr : category;
    std::string b = backend;
    if (b == "auto") {
        opts.backend = spprof::StartOptions::Backend::automatic;
    } else if (b == "perf_event") {
        opts.backend = spprof::StartOptions::Backend::perf_event;
    } else if (b == "timer_create") {
        opts.backend = spprof::StartOptions::Backend::timer_create;
    } else {
        PyErr_Format(PyExc_ValueError, "backend must be 'auto', 'perf_event' or 'timer_create', got %R",
                     PyTuple_GET_SIZE(args) > 4 ? PyTuple_GET_ITEM(args, 4) : Py_None);
        return nullptr;
    }
    std::string m = mode;
    if (m == "cpu") {
        opts.mode = spprof::StartOptions::Mode::cpu;
    } else if (m == "wall") {
        opts.mode = spprof::StartOptions::Mode::wall;
    } else {
        PyErr_Format(PyExc_ValueError, "mode must be 'cpu' or 'wall', got '%s'", mode);
        return nullptr;
    }
    spprof::prepare_thread_for_exceptions();
    try {
        if (!Session::instance().start(opts)) return nullptr;
    } catch (const std::bad_alloc&) {
        return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}

// Entry points never let a C++ exception reach the interpreter: allocation
// failure becomes MemoryError (the session's own state stays consistent:
// each step that can fail is guarded inside).
template <typename F>
PyObject* guarded(F&& f) {
    spprof::prepare_thread_for_exceptions();
    try {
        return f();
    } catch (const std::bad_alloc&) {
        return PyErr_NoMemory();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
        return nullptr;
    }
}

PyObject* native_stop(PyObject*, PyObject*) {
    return guarded([] { return Session::instance().stop(); });
}

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

PyObject* native_stats(PyObject*, PyObject*) {
    return guarded([] { return Session::instance().stats(); });
}

PyObject* native_register_thread(PyObject*, PyObject*) {
    return guarded([] { return PyBool_FromLong(Session::instance().register_current_thread()); });
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

// Audit hook (runtime-wide, C, so it costs the program's other audited
// events a string comparison): os.execv and friends raise "os.exec" right
// before the system call, with the GIL held.
int audit_hook(const char* event, PyObject*, void*) {
    if (event[0] == 'o' && strcmp(event, "os.exec") == 0) Session::instance().before_exec();
    return 0;
}

PyObject* native_has_unbuilt_result(PyObject*, PyObject*) {
    return PyBool_FromLong(Session::instance().has_unbuilt_result());
}

PyObject* native_install_exec_hook(PyObject*, PyObject*) {
    static bool installed = false;
    if (!installed) {
        if (PySys_AddAuditHook(audit_hook, nullptr) < 0) return nullptr;
        installed = true;
    }
    Py_RETURN_NONE;
}

PyObject* native_wrap_start_new_thread(PyObject*, PyObject* original) {
    return spprof::wrap_start_new_thread(original);
}

PyObject* native_wrap_start_joinable_thread(PyObject*, PyObject* original) {
    return spprof::wrap_start_joinable_thread(original);
}

// SIGPROF stays the program's while we sample with it (spprof/_signals.py).
// `original` is Python's own _signal.signal: called with (signalnum,
// handler) it checks its arguments, runs pending Python handlers, installs
// the disposition and records the handler. Right after it, with no Python
// code in between, our handler goes back in its place and what the program
// installed becomes what foreign SIGPROFs get (reclaim_signal_handler).
// SIGPROF is blocked in this thread meanwhile, so this thread's own timer
// cannot meet the program's disposition. Returns (what `original` returned,
// whether our handler was put back).
PyObject* native_sigprof_program_signal(PyObject*, PyObject* args) {
    PyObject* original = nullptr;
    PyObject* signalnum = nullptr;
    PyObject* handler = nullptr;
    int believe_default = 0;
    if (!PyArg_ParseTuple(args, "OOOp:sigprof_program_signal", &original, &signalnum, &handler,
                          &believe_default)) {
        return nullptr;
    }
    sigset_t only, saved;
    sigemptyset(&only);
    sigaddset(&only, SIGPROF);
    pthread_sigmask(SIG_BLOCK, &only, &saved);
    PyObject* previous = PyObject_CallFunctionObjArgs(original, signalnum, handler, nullptr);
    // An error means nothing was installed (Python checks before it acts).
    bool reclaimed = previous != nullptr && spprof::reclaim_signal_handler(believe_default != 0);
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    if (previous == nullptr) return nullptr;
    return Py_BuildValue("(NO)", previous, reclaimed ? Py_True : Py_False);
}

// Whether the last stop() (or fork child) found our handler still
// installed and put the program's disposition back.
PyObject* native_sigprof_restored(PyObject*, PyObject*) {
    return PyBool_FromLong(spprof::restored_program_disposition());
}

PyObject* native_sigprof_disposition(PyObject*, PyObject*) {
    return PyUnicode_FromString(spprof::sigprof_disposition_name());
}

// In a fork child: the program's disposition back in place of our handler
// (idempotent; the session's own after-fork handling does it too).
PyObject* native_sigprof_release_after_fork(PyObject*, PyObject*) {
    spprof::restore_signal_handler_after_fork();
    return PyBool_FromLong(spprof::restored_program_disposition());
}

int run_pending_call(void* arg) {
    PyObject* function = static_cast<PyObject*>(arg);
    PyObject* result = PyObject_CallNoArgs(function);
    Py_DECREF(function);
    if (result == nullptr) return -1;  // raised in the main thread, like a signal handler's error
    Py_DECREF(result);
    return 0;
}

// Call `function()` soon in the main thread (a pending call). False if the
// queue of pending calls is full.
PyObject* native_call_in_main_thread(PyObject*, PyObject* function) {
    Py_INCREF(function);
    if (Py_AddPendingCall(run_pending_call, function) != 0) {
        Py_DECREF(function);
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

PyObject* native_before_fork(PyObject*, PyObject*) {
    Session::instance().before_fork();
    Py_RETURN_NONE;
}

PyObject* native_after_fork_in_parent(PyObject*, PyObject*) {
    Session::instance().after_fork_in_parent();
    Py_RETURN_NONE;
}

PyObject* native_gettid(PyObject*, PyObject*) { return PyLong_FromLong(spprof::current_tid()); }

// The memory checkers' self-test (tools/memcheck --inject-leak): each call
// leaks one 48-byte block from spprof's own code, stored in a volatile
// global so the compiler cannot drop the allocation; all but the last are
// unreachable ("definitely lost"). A checker that does not report it as
// spprof's cannot be trusted. spprof itself never calls this.
PyObject* native_leak_for_checkers(PyObject*, PyObject*) {
    static void* volatile injected_leak;
    injected_leak = std::malloc(48);
    Py_RETURN_NONE;
}

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

// -- native frames (native_unwind.h, symbolizer.h) --

// None when native unwinding can be used, else why not (loads libunwind on
// the first call).
PyObject* native_unwinding_unavailable_reason(PyObject*, PyObject*) {
    const char* reason = spprof::native::load_unwinder();
    if (reason == nullptr) Py_RETURN_NONE;
    return PyUnicode_FromString(reason);
}

// The calling thread's native stack, leaf first, as (ip, symbol, object,
// offset, resolved) tuples; spprof's own frames (this function) left out.
PyObject* native_capture_native_stack(PyObject*, PyObject*) {
    if (const char* reason = spprof::native::load_unwinder()) {
        PyErr_SetString(PyExc_RuntimeError, reason);
        return nullptr;
    }
    spprof::native::NativeStack stack;
    spprof::native::unwind_current_thread(stack);
    return guarded([&]() -> PyObject* {
        auto symbols = spprof::native::symbolize(stack);
        static const std::string ours =
            spprof::native::object_of(reinterpret_cast<uintptr_t>(&native_capture_native_stack));
        size_t first = 0;
        while (first < symbols.size() && !ours.empty() && symbols[first].object == ours) ++first;
        PyObject* out = PyList_New(0);
        for (size_t i = first; out != nullptr && i < symbols.size(); ++i) {
            const auto& s = symbols[i];
            PyObject* name = PyUnicode_DecodeUTF8(s.name.data(), static_cast<Py_ssize_t>(s.name.size()), "replace");
            PyObject* file = name != nullptr ? PyUnicode_DecodeFSDefault(s.object.c_str()) : nullptr;
            PyObject* item = file == nullptr ? nullptr
                                             : Py_BuildValue("(KOOKO)", static_cast<unsigned long long>(s.ip), name,
                                                             file, static_cast<unsigned long long>(s.offset),
                                                             s.resolved ? Py_True : Py_False);
            Py_XDECREF(name);
            Py_XDECREF(file);
            if (item == nullptr || PyList_Append(out, item) < 0) Py_CLEAR(out);
            Py_XDECREF(item);
        }
        return out;
    });
}

// Test entry point: a symbol name as capture_native_stack shows it.
PyObject* native_demangle(PyObject*, PyObject* arg) {
    const char* name = PyUnicode_AsUTF8(arg);
    if (name == nullptr) return nullptr;
    return guarded([&] {
        std::string s = spprof::native::demangle(name);
        return PyUnicode_FromStringAndSize(s.data(), static_cast<Py_ssize_t>(s.size()));
    });
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
    {"has_unbuilt_result", native_has_unbuilt_result, METH_NOARGS,
     "Whether the last stop() ran out of memory and kept the samples for a retry."},
    {"install_exec_hook", native_install_exec_hook, METH_NOARGS,
     "Install the audit hook that makes os.exec* safe during a session (once)."},
    {"wrap_start_new_thread", native_wrap_start_new_thread, METH_O,
     "The thread-start hook around _thread.start_new_thread (thread_hooks.h)."},
    {"wrap_start_joinable_thread", native_wrap_start_joinable_thread, METH_O,
     "The thread-start hook around _thread.start_joinable_thread (3.13)."},
    {"sigprof_program_signal", native_sigprof_program_signal, METH_VARARGS,
     "Install the program's SIGPROF disposition through Python's signal.signal, keeping ours."},
    {"sigprof_restored", native_sigprof_restored, METH_NOARGS, nullptr},
    {"sigprof_disposition", native_sigprof_disposition, METH_NOARGS,
     "The kernel's SIGPROF disposition: spprof, default, ignore or handler."},
    {"sigprof_release_after_fork", native_sigprof_release_after_fork, METH_NOARGS, nullptr},
    {"call_in_main_thread", native_call_in_main_thread, METH_O, nullptr},
    {"before_fork", native_before_fork, METH_NOARGS, "os.fork() hook: pause the service thread."},
    {"after_fork_in_parent", native_after_fork_in_parent, METH_NOARGS,
     "os.fork() hook in the parent: restart the service thread."},
    {"gettid", native_gettid, METH_NOARGS, "Kernel thread id of the calling thread."},
    {"native_unwinding_unavailable_reason", native_unwinding_unavailable_reason, METH_NOARGS,
     "None when native unwinding is available, else why not."},
    {"capture_native_stack", native_capture_native_stack, METH_NOARGS,
     "The calling thread's native stack, leaf first: (ip, symbol, object, offset, resolved)."},
    {"_demangle", native_demangle, METH_O, "Test entry point: a symbol name demangled."},
    {"_line_ranges", native_line_ranges, METH_O, "Test entry point: decoded line table."},
    {"_leak_for_checkers", native_leak_for_checkers, METH_NOARGS,
     "Memory checkers' self-test: leaks 48 bytes per call (tools/memcheck)."},
    {nullptr, nullptr, 0, nullptr},
};

PyModuleDef kModule = {
    PyModuleDef_HEAD_INIT, "spprof._native", "spprof's native sampler (private).", -1, kMethods,
    nullptr, nullptr, nullptr, nullptr,
};

}  // namespace

PyMODINIT_FUNC PyInit__native() {
    spprof::prepare_thread_for_exceptions();
    if (!spprof::thread_hooks_init() || !spprof::GcMarker::import_gc()) return nullptr;
    PyObject* m = PyModule_Create(&kModule);
    if (m == nullptr) return nullptr;
    if (PyModule_AddIntConstant(m, "MAX_DEPTH", spprof::kMaxDepth) < 0) {
        Py_DECREF(m);
        return nullptr;
    }
    return m;
}
