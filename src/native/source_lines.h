// source_lines.h: native instruction addresses -> source file and line,
// from the DWARF line tables of the objects that have them, read with
// elfutils' libdw (docs/design/native-frames.md, "Symbolization").
//
// libdw is loaded at run time (dlopen of libdw.so.1: nothing binds to it,
// a machine without it just has no lines), and only its headers are used
// at build time (Debian's libdw-dev; without them this unit builds to
// "no lines"). Only an object's own DWARF is read (a library built with
// -g), never a separate debug file: those are large (libc's: ~65 ms and
// tens of MB) and may be fetched over the network (debuginfod). The
// interpreter's own objects (the python program, libpython, the standard
// library's extension modules in lib-dynload) are left out too: their
// debug information is the 38 MiB case and their lines name CPython's
// sources, not the program's. What libdw read is kept for the process's
// life (the objects with line tables of their own are few and small; read
// again in every session, the standard library's took minutes of the
// ASan stress), and follows the loaded objects as they come and go.
//
// Not async-signal-safe: allocates and takes a mutex (resolver side only).
#pragma once

#include <cstdint>
#include <string>

namespace spprof::native {

// The file and line of the instruction at `address` (an exact address:
// a return address minus one). False when there is none: no libdw, no
// line table for that object, an interpreter object, or no row covers it.
bool source_line(uintptr_t address, std::string* file, int* line);

// Whether libdw could be loaded here (nullptr), else why not.
const char* source_lines_unavailable();

}  // namespace spprof::native
