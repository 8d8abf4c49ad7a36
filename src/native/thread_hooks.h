// thread_hooks.h: the thread-start hook, in C so the program cannot tell
// it is there.
//
// While a session runs, spprof/_threads.py replaces _thread.start_new_thread
// (and 3.13's start_joinable_thread) with the wrappers made here. A wrapper
// checks its arguments exactly as the original does (same messages), then
// starts the thread through the original with thread_bootstrap as its
// function: the new thread gets its timer before its first instruction of
// Python, runs the real target, and gives its timer back when it ends.
// Nothing of this is Python code, so it adds no frame to any sample, and an
// uncaught exception is reported naming the user's function, as _thread
// does.
#pragma once

#include <Python.h>

namespace spprof {

// Make the module-level objects the wrappers need. False with a Python
// exception set.
bool thread_hooks_init();

// A wrapper of `original` (_thread.start_new_thread), a new reference.
PyObject* wrap_start_new_thread(PyObject* original);
// A wrapper of `original` (3.13's _thread.start_joinable_thread).
PyObject* wrap_start_joinable_thread(PyObject* original);

}  // namespace spprof
