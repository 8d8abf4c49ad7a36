// gc_marker.h: tells the sampler which thread is collecting garbage.
//
// An entry in gc.callbacks records, at a collection's "start", the
// collecting thread and its current frame in the handler state (the
// handler then puts a <gc> frame there), and clears it at "stop". The entry
// is kept first in the list and survives any edit of gc.callbacks by the
// program. GIL held for every call.
#pragma once

#include <Python.h>

namespace spprof {

class GcMarker {
public:
    // When the extension is imported: import gc (false with the exception
    // set). Kept for the process.
    static bool import_gc();
    // Put our entry at the front of gc.callbacks. False with an exception
    // set on failure; true (and nothing marked) without gc.callbacks.
    bool install();
    // Service tick: our entry back in front if the program removed it (a
    // collection seen starting then is forgotten: its "stop" may never come).
    void keep();
    // Take our entry out (the entry object itself is kept for the process).
    void remove();

private:
    PyObject* entry_ = nullptr;
    bool installed_ = false;
};

}  // namespace spprof
