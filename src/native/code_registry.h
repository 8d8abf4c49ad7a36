// code_registry.h: what we know about the code objects samples point at.
//
// Samples hold raw code object addresses, not references (the handler
// cannot touch reference counts). A code object can die between capture and
// resolution and its address can be reused by a new one, so:
//   - while profiling we are told when a code object is about to die
//     (compat::install_code_death_hook); before it goes we keep a snapshot of
//     it (a "tombstone": names, first line and a copy of its line table),
//     stamped with the code-death epoch at which it died;
//   - each sample carries the epoch it was captured at. A frame captured at
//     epoch e with address A means the code object that lived at A at e: the
//     tombstone of A with the smallest death epoch > e if there is one (it
//     died after the capture), or else the object living at A now (no death
//     since the capture, so it is the same object, still alive).
// Lines are computed from our copy of the line table, so a dead object
// resolves exactly like a live one.
#pragma once

#include <Python.h>

#include <cstdint>
#include <cstddef>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace spprof {

struct CodeInfo {
    std::string qualname;
    std::string filename;
    int firstlineno = 0;
    std::vector<std::pair<int32_t, int32_t>> ranges;  // (start code unit, line)
    uint32_t id = 0;                                  // unique per session

    // The line executing at instruction index `instr` (-1: not started,
    // which reports the first line).
    int line_for(int32_t instr) const;
};

// Decode CPython's location table (3.11+ format, Objects/locations.md) into
// sorted (start code unit, line) ranges. Exposed for tests.
std::vector<std::pair<int32_t, int32_t>> decode_line_table(const uint8_t* data, size_t size,
                                                           int firstlineno);

class CodeRegistry {
public:
    // GIL held. The info for the code object captured at `address` and
    // `epoch`, or nullptr if it cannot be resolved. A new snapshot is only
    // taken if it fits in `room` bytes; otherwise nullptr and *over = true.
    // May throw std::bad_alloc.
    const CodeInfo* lookup(uintptr_t address, uint64_t epoch, size_t room = SIZE_MAX,
                           bool* over = nullptr);

    // GIL held, called by the death hook before `code` is freed.
    // `death_epoch` is the epoch value after the increment for this death.
    // A snapshot is taken only within `room` bytes (else samples of it
    // resolve as <unknown>). Never throws.
    void on_code_death(PyCodeObject* code, uint64_t death_epoch, size_t room = SIZE_MAX);

    // Forget tombstones that no capture still in flight can refer to:
    // every capture from now on reads an epoch >= `safe_epoch`.
    void prune_tombstones(uint64_t safe_epoch);

    void clear();
    size_t live_entries() const { return live_.size(); }
    size_t tombstone_count() const { return tombstone_count_; }
    size_t approx_bytes() const { return bytes_; }
    uint64_t lost_deaths() const { return lost_deaths_; }

private:
    std::shared_ptr<CodeInfo> snapshot(PyCodeObject* code);
    static size_t snapshot_estimate(PyCodeObject* code);

    struct Tombstone {
        uint64_t death_epoch;
        std::shared_ptr<CodeInfo> info;
    };
    std::unordered_map<uintptr_t, std::shared_ptr<CodeInfo>> live_;
    std::unordered_map<uintptr_t, std::vector<Tombstone>> dead_;
    size_t tombstone_count_ = 0;
    uint64_t lost_deaths_ = 0;  // deaths not recorded for lack of memory
    uint64_t lost_epoch_ = 0;   // epoch of the last of them
    size_t bytes_ = 0;
    uint32_t next_id_ = 1;
};

}  // namespace spprof
