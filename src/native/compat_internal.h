// compat_internal.h: the few fields of CPython's internal state that the
// wall-clock reader (wall_reader.h) and the signal handler need and no
// public header has: where the GIL is and who holds it. Implemented in C (compat_internal.c),
// compiled with Py_BUILD_CORE against the interpreter's own internal
// headers, so the layout is the one of the version built for (the internal
// headers pull C11 atomics a C++ translation unit cannot include). Part of
// the compat layer: the version differences are there and in compat.h.
#pragma once

#include <Python.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

// The GIL of `interp` (3.11: the runtime's one; 3.12+: the interpreter's)
// and its size in bytes: a thread waiting for the GIL sleeps on a futex
// inside it. GIL held.
const void* spprof_gil_address(PyInterpreterState* interp);
size_t spprof_gil_size(void);

// Where, inside that GIL, the word saying it is taken (an int, non-zero
// while some thread holds it) and the pointer to the thread state that
// took it last (kept after it is released) are: a thread holds the GIL
// when both say so. Read with plain aligned loads, they are
// async-signal-safe (signal_handler.h, wall_reader.h).
size_t spprof_gil_locked_offset(void);
size_t spprof_gil_holder_offset(void);

#ifdef __cplusplus
}
#endif
