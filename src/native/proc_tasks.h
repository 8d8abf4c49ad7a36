// proc_tasks.h: the process's kernel threads, as /proc/self/task lists
// them, and the rule for opening such files at all.
//
// spprof opens /proc files only briefly and off the signal path. A program
// that closes one of its standard descriptors (0-2) and opens a file in its
// place expects that file to get the lowest number; a descriptor of ours
// taken in between would take it. So nothing is opened while one of 0-2 is
// closed: the caller tries again later.
#pragma once

#include <sys/types.h>

#include <vector>

namespace spprof {

// Whether descriptors 0, 1 and 2 are all open now.
bool standard_descriptors_open();

// Every thread of this process now, in `out` (cleared first). False when
// it could not be listed (a standard descriptor closed, no descriptor or
// memory left): `out` is then empty.
bool list_process_threads(std::vector<pid_t>* out);

}  // namespace spprof
