/* compat_internal.c: the one place spprof reads CPython's internal headers.
 *
 * Where no public API exposes what the signal handler needs, this C file is
 * compiled against the interpreter's internal headers (Py_BUILD_CORE) and
 * exports the field offsets as constants, so the rest of spprof (C++, which
 * cannot include those headers) reads the fields through compat.h. The
 * offsets are those of the exact CPython build spprof is compiled for.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stddef.h>

#include "internal/pycore_interp.h"

/* PyInterpreterState.gc.collecting: nonzero while a collection runs. */
const size_t spprof_gc_collecting_offset = offsetof(PyInterpreterState, gc.collecting);
