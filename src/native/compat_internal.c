/* compat_internal.c: see compat_internal.h. */
#define Py_BUILD_CORE 1
#include <Python.h>

#include "internal/pycore_gil.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"

#include "compat_internal.h"

#ifdef Py_GIL_DISABLED
#error "spprof does not support free-threaded CPython builds yet"
#endif

const void* spprof_gil_address(PyInterpreterState* interp) {
#if PY_VERSION_HEX < 0x030C0000
    (void)interp;
    return &_PyRuntime.ceval.gil;
#else
    return interp->ceval.gil;
#endif
}

size_t spprof_gil_size(void) { return sizeof(struct _gil_runtime_state); }

/* `locked` is an _Py_atomic_int (3.11, 3.12) or an int (3.13), and
   `last_holder` an _Py_atomic_address or a PyThreadState*: the same bytes
   either way, read with relaxed atomic loads. */
int spprof_gil_locked(const void* gil) {
    const char* base = (const char*)gil;
    return __atomic_load_n((const int*)(base + offsetof(struct _gil_runtime_state, locked)),
                           __ATOMIC_RELAXED) > 0;
}

const void* spprof_gil_last_holder(const void* gil) {
    const char* base = (const char*)gil;
    return (const void*)__atomic_load_n(
        (const uintptr_t*)(base + offsetof(struct _gil_runtime_state, last_holder)),
        __ATOMIC_RELAXED);
}
