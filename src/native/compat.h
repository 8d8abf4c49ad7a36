// compat.h: every CPython-version difference spprof depends on, in one place.
//
// spprof reads interpreter frames directly from the signal handler, so it
// needs the layout of `_PyInterpreterFrame`, which is internal. Including
// CPython's internal headers from C++ pulls in C11 atomics and
// Py_BUILD_CORE-only code, so instead this header mirrors the few fields we
// read, per version, taken from Include/internal/pycore_frame.h of that
// version. Public structs (PyThreadState, PyCodeObject) come from Python.h.
//
// Supported: CPython 3.11, 3.12, 3.13 (the GIL builds). 3.11 needs 3.11.1 or
// newer: earlier 3.11 releases cleared a frame before unlinking it
// (GH-99729), which would let the handler read a frame being torn down.
//
// Every accessor marked ASYNC-SIGNAL-SAFE only does plain loads and pointer
// arithmetic, and may be called from the SIGPROF handler.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstddef>
#include <cstdint>

#if PY_VERSION_HEX < 0x030B0100 || PY_VERSION_HEX >= 0x030E0000
#error "spprof supports CPython 3.11.1 to 3.13"
#endif
#ifdef Py_GIL_DISABLED
#error "spprof does not support free-threaded CPython builds yet"
#endif

namespace spprof::compat {

// -- interpreter frames ------------------------------------------------------

#if PY_VERSION_HEX < 0x030C0000  // 3.11
struct InterpreterFrame {
    PyObject* f_func;
    PyObject* f_globals;
    PyObject* f_builtins;
    PyObject* f_locals;
    PyCodeObject* f_code;
    PyObject* frame_obj;
    InterpreterFrame* previous;
    uint16_t* prev_instr;  // code unit *before* the next instruction
    int stacktop;
    uint8_t is_entry;  // a bool in CPython; read as a byte, the walk may meet garbage
    char owner;
};
#elif PY_VERSION_HEX < 0x030D0000  // 3.12
struct InterpreterFrame {
    PyCodeObject* f_code;
    InterpreterFrame* previous;
    PyObject* f_funcobj;
    PyObject* f_globals;
    PyObject* f_builtins;
    PyObject* f_locals;
    PyObject* frame_obj;
    uint16_t* prev_instr;
    int stacktop;
    uint16_t return_offset;
    char owner;
};
#else  // 3.13
struct InterpreterFrame {
    PyObject* f_executable;  // a code object, or None for some shim frames
    InterpreterFrame* previous;
    PyObject* f_funcobj;
    PyObject* f_globals;
    PyObject* f_builtins;
    PyObject* f_locals;
    PyObject* frame_obj;
    uint16_t* instr_ptr;  // instruction executing (or about to begin)
    int stacktop;
    uint16_t return_offset;
    char owner;
};
#endif

// Frame owners (enum in pycore_frame.h). Frames owned by the C stack are
// the eval loop's entry shims (3.12+), not Python code.
inline constexpr char kOwnedByThread = 0;
inline constexpr char kOwnedByGenerator = 1;
inline constexpr char kOwnedByFrameObject = 2;
inline constexpr char kOwnedByCStack = 3;
inline constexpr char kMaxOwner = PY_VERSION_HEX >= 0x030C0000 ? 3 : 2;

// The innermost executing frame of `tstate` (nullptr when it runs no Python
// code). ASYNC-SIGNAL-SAFE when `tstate` belongs to the calling thread.
inline InterpreterFrame* current_frame(PyThreadState* tstate) {
#if PY_VERSION_HEX < 0x030D0000
    _PyCFrame* cframe = tstate->cframe;
    return cframe ? reinterpret_cast<InterpreterFrame*>(cframe->current_frame) : nullptr;
#else
    return reinterpret_cast<InterpreterFrame*>(tstate->current_frame);
#endif
}

// The code object a frame executes, or nullptr if it is not a code object.
// ASYNC-SIGNAL-SAFE.
inline PyObject* frame_code(const InterpreterFrame* f) {
#if PY_VERSION_HEX < 0x030D0000
    return reinterpret_cast<PyObject*>(f->f_code);
#else
    return f->f_executable;
#endif
}

// The index (in code units) of the instruction a frame is executing, from
// the start of its bytecode. Negative for a frame that has not started.
// ASYNC-SIGNAL-SAFE.
inline int32_t frame_instr_index(const InterpreterFrame* f, PyObject* code) {
    auto* base = reinterpret_cast<const uint16_t*>(
        reinterpret_cast<PyCodeObject*>(code)->co_code_adaptive);
#if PY_VERSION_HEX < 0x030D0000
    const uint16_t* ip = f->prev_instr;
#else
    const uint16_t* ip = f->instr_ptr;
#endif
    return static_cast<int32_t>(ip - base);
}

// Where a frame is in its bytecode (the pointer frame_instr_index reads).
// ASYNC-SIGNAL-SAFE.
inline const void* frame_instr_pointer(const InterpreterFrame* f) {
#if PY_VERSION_HEX < 0x030D0000
    return f->prev_instr;
#else
    return f->instr_ptr;
#endif
}

// C frames (3.11/3.12). Each run of the eval loop links a _PyCFrame into
// tstate->cframe, and the first interpreter frame it runs (the "entry":
// is_entry on 3.11, the C-stack shim on 3.12) has as `previous` the
// enclosing loop's current frame. The loop links its C frame BEFORE it sets
// that C frame's current_frame, so a signal landing in between finds stack
// garbage there; the walker checks every entry frame against this link and,
// when the chain does not hold, walks from the enclosing loop instead.
// 3.13 keeps the current frame in the thread state itself, set in one store.
#if PY_VERSION_HEX < 0x030D0000
inline constexpr bool kHasCFrames = true;
using CFrame = _PyCFrame;
inline CFrame* top_cframe(PyThreadState* tstate) { return tstate->cframe; }
inline CFrame* cframe_previous(const CFrame* c) { return c->previous; }
inline InterpreterFrame* cframe_current(const CFrame* c) {
    return reinterpret_cast<InterpreterFrame*>(c->current_frame);
}
inline bool frame_is_entry(const InterpreterFrame* f) {
#if PY_VERSION_HEX < 0x030C0000
    return f->is_entry != 0;
#else
    return f->owner == kOwnedByCStack;
#endif
}
#else
inline constexpr bool kHasCFrames = false;
struct CFrame {};
inline CFrame* top_cframe(PyThreadState*) { return nullptr; }
inline CFrame* cframe_previous(const CFrame*) { return nullptr; }
inline InterpreterFrame* cframe_current(const CFrame*) { return nullptr; }
inline bool frame_is_entry(const InterpreterFrame*) { return false; }
#endif

// Whether a frame is a Python-code frame worth recording (not a C shim).
// ASYNC-SIGNAL-SAFE.
inline bool frame_is_python(const InterpreterFrame* f) {
    return f->owner != kOwnedByCStack;
}

// The own thread state of the calling thread, whether or not it holds the
// GIL: CPython keeps it in a pthread TSS slot that it clears BEFORE it frees
// the thread state. Never the GIL holder (that is another thread's state, or
// NULL while this thread runs with the GIL released). ASYNC-SIGNAL-SAFE: a
// pthread_getspecific() lookup, no locks, no allocation.
inline PyThreadState* own_thread_state() { return PyGILState_GetThisThreadState(); }

// The interpreter a thread state belongs to. ASYNC-SIGNAL-SAFE (a field).
inline void* thread_state_interp(PyThreadState* tstate) { return tstate->interp; }

// Kernel thread id of a thread state (0 while not yet bound to a thread).
inline unsigned long thread_state_native_id(PyThreadState* tstate) {
    return tstate->native_thread_id;
}

// A per-interpreter unique, increasing id of a thread state: tells a new
// thread state apart from an old one that had the same address or tid.
inline uint64_t thread_state_unique_id(PyThreadState* tstate) { return tstate->id; }

// -- threads -----------------------------------------------------------------

// Report the exception set (GIL held) the way _thread reports one that ends
// a thread started with `function`: "Exception ignored in thread started
// by <function>" through sys.unraisablehook. Clears it.
inline void report_uncaught_thread_exception(PyObject* function) {
#if PY_VERSION_HEX < 0x030D0000
    _PyErr_WriteUnraisableMsg("in thread started by", function);
#else
    PyErr_FormatUnraisable("Exception ignored in thread started by %R", function);
#endif
}

// -- code objects ------------------------------------------------------------

inline PyObject* code_qualname(PyCodeObject* co) { return co->co_qualname; }
inline PyObject* code_filename(PyCodeObject* co) { return co->co_filename; }
inline int code_firstlineno(PyCodeObject* co) { return co->co_firstlineno; }
inline PyObject* code_linetable(PyCodeObject* co) { return co->co_linetable; }

// Notification that a code object is about to be freed (runs with the GIL
// held, before the memory is released). 3.12+ has code watchers; 3.11 has
// none, so there we wrap PyCode_Type.tp_dealloc while profiling.
using CodeDeathCallback = void (*)(PyCodeObject*);
bool install_code_death_hook(CodeDeathCallback cb);  // GIL held
void remove_code_death_hook();                       // GIL held

}  // namespace spprof::compat
