// unwinder_pipe.h: libunwind's memory-validation pipe, out of the
// program's way.
//
// libunwind 1.6.2 opens a pipe at its first unwind (tdep_init) and keeps
// the two descriptors in a static array: where a DWARF step fails it
// validates addresses by writing a byte of them into that pipe. pipe2()
// gives the lowest free numbers, 3 and 4 in most programs: a program that
// expects its next open() to get 3 would get 5, and one that closes
// everything (a daemonizer) would have libunwind, on its next read error,
// close the numbers again, whatever the program reopened there. So the
// pipe is moved, once, right after that first unwind: its descriptors are
// duplicated to high numbers (from min(RLIMIT_NOFILE / 2, 1024), as every
// descriptor of spprof), written into libunwind's array in place of the
// low ones, and the low ones closed. The array is found without symbols:
// the 4-byte-aligned pairs of its writable data that read {-1, -1} before
// the first unwind, of which exactly one must read as the two ends of one
// new pipe after it. Where that is not so (another libunwind), nothing is
// moved and relocate() says why.
//
// intact() tells whether the descriptors are still that pipe (the program
// may close or replace any descriptor): if not, libunwind would close and
// reopen numbers that are the program's now, so the session stops
// recording native frames (Session's service tick).
#pragma once

#include <sys/types.h>

#include <string>

namespace spprof::native {

// Before libunwind's first unwind; `lib` is its dlopen handle.
void find_pipe_candidates(void* lib);

// After it. True when the pipe was moved (or is already high); else `why`.
bool relocate_pipe(std::string* why);

// Whether libunwind's array still holds the pipe it opened (moved or not).
// Not async-signal-safe concerns: plain fstat calls; any thread.
bool pipe_intact();

}  // namespace spprof::native
