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
