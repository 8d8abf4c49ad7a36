/* compat_internal.c: see compat_internal.h. */
#define Py_BUILD_CORE 1
#include <Python.h>

#include "internal/pycore_gil.h"
#include "internal/pycore_interp.h"
#include "internal/pycore_runtime.h"

#include "compat_internal.h"

#include <stddef.h>

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

/* 3.11/3.12: _Py_atomic_int / _Py_atomic_address are structs of one atomic
   member; 3.13: a plain int and pointer read with atomic builtins. Either
   way the value is at the field's offset. */
size_t spprof_gil_locked_offset(void) { return offsetof(struct _gil_runtime_state, locked); }
size_t spprof_gil_holder_offset(void) { return offsetof(struct _gil_runtime_state, last_holder); }
