#include "gc_marker.h"

#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "signal_handler.h"

namespace spprof {

namespace {
// gc.callbacks entry: tells the signal handler which thread is collecting
// and from which frame, so its samples get a <gc> frame there. Runs on the
// collecting thread with the GIL; creates no objects.
//
// CPython calls the entries by index, reading the list's length as it goes:
// an entry before ours that removes itself during "stop" (a one-shot
// callback) would make it skip ours, and the thread would stay marked as
// collecting. So ours is kept first: inserted at the front, and moved back
// there at each "start" if the program inserted before it (moving the
// current entry to the front changes no position after it, so CPython's
// walk neither skips nor repeats an entry).
PyObject* g_gc_list = nullptr;  // gc.callbacks while ours is in it
PyObject* g_gc_self = nullptr;  // our entry

void keep_entry_first() {
    PyObject* list = g_gc_list;
    if (list == nullptr || !PyList_Check(list)) return;
    for (Py_ssize_t i = 1; i < PyList_GET_SIZE(list); ++i) {
        if (PyList_GET_ITEM(list, i) != g_gc_self) continue;
        Py_INCREF(g_gc_self);
        if (PyList_SetSlice(list, i, i + 1, nullptr) < 0 || PyList_Insert(list, 0, g_gc_self) < 0) {
            PyErr_Clear();  // out of memory: left where it is
        }
        Py_DECREF(g_gc_self);
        return;
    }
}

PyObject* gc_phase(PyObject*, PyObject* const* args, Py_ssize_t nargs) {
    HandlerState& st = handler_state();
    if (nargs >= 1 && PyUnicode_Check(args[0])) {
        if (PyUnicode_CompareWithASCIIString(args[0], "start") == 0) {
            keep_entry_first();
            static thread_local pid_t tid = 0;
            if (tid == 0) tid = static_cast<pid_t>(syscall(SYS_gettid));
            PyThreadState* ts = PyThreadState_Get();
            st.gc_frame.store(compat::current_frame(ts), std::memory_order_release);
            st.gc_tid.store(tid, std::memory_order_release);
        } else {
            st.gc_tid.store(0, std::memory_order_release);
        }
    }
    Py_RETURN_NONE;
}

PyMethodDef g_gc_phase_def = {"_spprof_gc_phase", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(gc_phase)),
                              METH_FASTCALL, "spprof: marks garbage collections for the sampler."};

// The gc module, imported when the extension is (an import later, inside
// start(), would run importlib's Python code, where a Ctrl-C can land and
// would then be lost with our own error).
PyObject* g_gc_module = nullptr;

PyObject* gc_callbacks_list() {
    // New reference to gc.callbacks, or nullptr (no exception) when absent.
    // A module attribute read: no Python code runs.
    PyObject* list = g_gc_module ? PyObject_GetAttrString(g_gc_module, "callbacks") : nullptr;
    if (list == nullptr || !PyList_Check(list)) {
        PyErr_Clear();
        Py_XDECREF(list);
        return nullptr;
    }
    return list;
}
}  // namespace

bool GcMarker::import_gc() {
    if (g_gc_module == nullptr) g_gc_module = PyImport_ImportModule("gc");
    return g_gc_module != nullptr;
}

bool GcMarker::install() {
    if (entry_ == nullptr) {
        entry_ = PyCFunction_New(&g_gc_phase_def, nullptr);
        if (entry_ == nullptr) return false;
    }
    PyObject* list = gc_callbacks_list();
    if (list == nullptr) return true;  // no gc.callbacks: GC simply is not marked
    int rc = PyList_Insert(list, 0, entry_);
    if (rc < 0) {
        Py_DECREF(list);
        return false;
    }
    g_gc_list = list;  // our reference
    g_gc_self = entry_;
    installed_ = true;
    return true;
}

void GcMarker::keep() {
    // The program may edit gc.callbacks at any time (clear it, remove our
    // entry, replace the list's contents), also during a collection, when
    // our "stop" would then never come. Not in the list any more: whatever
    // collection we saw start is not ours to mark, and the entry goes back
    // in front. GIL held (service thread).
    if (!installed_ || g_gc_list == nullptr || !PyList_Check(g_gc_list)) return;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(g_gc_list); ++i) {
        if (PyList_GET_ITEM(g_gc_list, i) == entry_) return;
    }
    handler_state().gc_tid.store(0, std::memory_order_release);
    if (PyList_Insert(g_gc_list, 0, entry_) < 0) PyErr_Clear();
}

void GcMarker::remove() {
    handler_state().gc_tid.store(0);
    if (!installed_) return;
    installed_ = false;
    Py_CLEAR(g_gc_list);
    g_gc_self = nullptr;
    PyObject* list = gc_callbacks_list();
    if (list == nullptr) return;
    for (Py_ssize_t i = PyList_GET_SIZE(list) - 1; i >= 0; --i) {
        if (PyList_GET_ITEM(list, i) == entry_) {
            if (PyList_SetSlice(list, i, i + 1, nullptr) < 0) PyErr_Clear();
            break;
        }
    }
    Py_DECREF(list);
}

}  // namespace spprof
