// unwind_tables.h: the loaded objects' unwind tables, registered with
// libunwind so that an unwind in the SIGPROF handler never reaches the
// loader lock (docs/design/native-frames.md, "The loader lock").
//
// libunwind 1.6.2 looks an instruction's unwind info up with
// dl_iterate_phdr on every cache miss, and dl_iterate_phdr takes the
// loader's lock, which the interrupted thread may hold (inside dlopen,
// dlclose or another dl_iterate_phdr): the handler would wait forever
// (reproduced). libunwind consults its list of dynamic unwind info first,
// without that lock. So, off the signal path, every loaded object's
// .eh_frame_hdr search table is put in that list (_U_dyn_register), and
// before each unwind step the handler checks covers(): the instruction is
// in a registered object, an FDE of that object covers it (else libunwind
// would fall back to dl_iterate_phdr), and the loader still maps that very
// object there (_dl_find_object, lock-free and async-signal-safe, glibc
// 2.35+), so a table of an unloaded library is never read. A step that
// fails the check ends the unwind.
//
// Objects loaded later are registered by refresh() (the service thread, on
// a change of the loader's counters); the handler only reads the table.
// Registrations are never freed while the process runs (a handler may be
// reading one): unloaded objects are cancelled and marked dead.
#pragma once

#include <cstdint>

namespace spprof::native {

// For start(native=True): libunwind loaded (load_unwinder()) and every
// loaded object's table registered. nullptr, or why not.
const char* prepare_native_unwinding();

// The service thread's tick: objects loaded since get their tables, so
// that unwinds go through them (until then an unwind stops at their
// frames, counted as native_uncovered). False when libunwind's pipe is no
// longer its own (unwinder_pipe.h): native frames must stop then.
bool keep_unwind_tables_current();

// Register every loaded object not registered yet (and cancel those gone).
// Needs libunwind loaded (load_unwinder()). Not async-signal-safe: takes
// the loader's lock and allocates; call with SIGPROF handlers unable to
// deadlock on it (it blocks SIGPROF in the calling thread meanwhile).
// Returns the number of objects registered now.
int refresh_unwind_tables();

// Cheap: whether objects were loaded or unloaded since the last refresh
// (the loader's adds/subs counters, read with dl_iterate_phdr's first
// callback). Not async-signal-safe.
bool unwind_tables_stale();

// ASYNC-SIGNAL-SAFE. Whether libunwind can step from `ip` without the
// loader lock (see above). `ip` is the instruction itself (a return address
// minus one).
bool unwind_tables_cover(uintptr_t ip);

// ASYNC-SIGNAL-SAFE. Whether `ip` is in the interpreter's evaluation loop
// (_PyEval_EvalFrameDefault): where a run of Python frames executes.
bool in_eval_loop(uintptr_t ip);

// The loaded object holding the evaluation loop (libpython, or the
// program when it is linked statically): frames there are the
// interpreter's. [lo, hi) of its executable mapping; 0, 0 if unknown.
void interpreter_range(uintptr_t* lo, uintptr_t* hi);

}  // namespace spprof::native
