#include "messages.h"

namespace spprof {

void set_profiler_error(const std::string& message) {
    PyObject* module = PyImport_ImportModule("spprof._errors");
    PyObject* cls = module ? PyObject_GetAttrString(module, "ProfilerError") : nullptr;
    Py_XDECREF(module);
    if (cls == nullptr) {
        // The import may run Python code: a Ctrl-C landing there is the
        // program's and is kept; our own failure falls back to RuntimeError.
        if (PyErr_Occurred() && !PyErr_ExceptionMatches(PyExc_Exception)) return;
        PyErr_Clear();
        cls = Py_NewRef(PyExc_RuntimeError);
    }
    PyErr_SetString(cls, message.c_str());
    Py_DECREF(cls);
}

WarningQueue& WarningQueue::instance() {
    static WarningQueue* q = new WarningQueue();  // never destroyed: pending calls outlive atexit
    return *q;
}

void WarningQueue::set_category(PyObject* category) {
    if (category != nullptr && category_ == nullptr) category_ = Py_NewRef(category);
}

void WarningQueue::push(const std::string& message, bool from_service_thread) {
    {
        std::lock_guard<std::mutex> lock(mu_);
        if (pending_.size() >= 64) return;
        pending_.push_back(message);
    }
    if (from_service_thread && !flush_scheduled_.exchange(true)) {
        // issued by the main thread at its next check for pending calls
        if (Py_AddPendingCall(&WarningQueue::pending_flush, nullptr) != 0) flush_scheduled_.store(false);
    }
}

int WarningQueue::pending_flush(void*) {
    instance().flush_scheduled_.store(false);
    return instance().flush();
}

int WarningQueue::flush() {
    std::vector<std::string> messages;
    {
        std::lock_guard<std::mutex> lock(mu_);
        messages.swap(pending_);
    }
    PyObject* category = category_ ? category_ : PyExc_RuntimeWarning;
    for (const std::string& m : messages) {
        if (PyErr_WarnEx(category, m.c_str(), 1) == 0) continue;
        if (PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear();  // our warning, made an error by a filter: never break the program for it
            continue;
        }
        return -1;  // KeyboardInterrupt, SystemExit...: the program's, propagate
    }
    return 0;
}

}  // namespace spprof
