// symbolizer.h: native instruction addresses -> function names, off the
// signal path (docs/design/native-frames.md, "Symbolization").
//
// Names come from our own sorted table per loaded object, read once from
// the object's file: its ELF .symtab, else its .dynsym (functions only,
// with their sizes, so an address is named only by a function that
// contains it), if its build id is the loaded object's. dladdr is the
// fallback for objects whose file cannot be read (the vDSO) or was
// replaced since it was loaded, with the same size check. C++ and Rust (legacy) names
// are demangled. Results are cached per address until an object is
// unloaded. Not async-signal-safe: allocates and takes a mutex.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace spprof::native {

struct NativeStack;

struct Symbol {
    uintptr_t ip = 0;
    // The function's name, demangled; "0x<ip>" when no symbol covers ip.
    std::string name;
    // The loaded object (shared library or program) holding ip, as the
    // loader names it (the program: its real path); "" when in none.
    std::string object;
    // ip minus the function's start when resolved; else ip minus the
    // object's load bias (the address in the file, as addr2line takes it),
    // or 0 when in no object.
    uintptr_t offset = 0;
    bool resolved = false;
};

// Symbols of stack.ip[first..depth), in the stack's order. A return
// address is looked up one byte back (inside the call instruction).
std::vector<Symbol> symbolize(const NativeStack& stack, int first = 0);

// Symbols of a sample's native trace (sample_buffer.h NativeTrace): ip[0]
// the interrupted instruction, the others return addresses.
std::vector<Symbol> symbolize_trace(const uintptr_t* ip, int depth);

// The path of the loaded object holding `address`, "" if none (used to
// skip spprof's own frames).
std::string object_of(uintptr_t address);

// A symbol name made readable: C++ and Rust legacy names demangled (Rust's
// hash suffix dropped); the C functions Cython and mypyc generate named
// after the Python function they compile ("module.Class.method (Cython)",
// "module.func (mypyc)"); anything else unchanged.
std::string demangle(const char* name);

}  // namespace spprof::native
