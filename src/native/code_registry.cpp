#include "code_registry.h"

#include <algorithm>

#include "compat.h"

namespace spprof {

namespace {

// Location table entries (CPython Objects/locations.md): a first byte with
// the top bit set holds a 4-bit code and (length - 1) in code units; the
// code says how the line changes and how many more bytes follow.
constexpr int kCodeNoColumns = 13;
constexpr int kCodeLong = 14;
constexpr int kCodeNone = 15;

struct Reader {
    const uint8_t* p;
    const uint8_t* end;
    bool ok = true;
    unsigned byte() {
        if (p >= end) {
            ok = false;
            return 0;
        }
        return *p++;
    }
    // Unsigned varint: 6-bit groups, least significant first, bit 6 = more.
    uint32_t varint() {
        unsigned b = byte();
        uint32_t value = b & 63u;
        unsigned shift = 0;
        while ((b & 64u) && ok && shift < 28) {
            b = byte();
            shift += 6;
            value |= static_cast<uint32_t>(b & 63u) << shift;
        }
        return value;
    }
    // Signed varint: the low bit is the sign.
    int32_t svarint() {
        uint32_t u = varint();
        return (u & 1u) ? -static_cast<int32_t>(u >> 1) : static_cast<int32_t>(u >> 1);
    }
};

std::string utf8_of(PyObject* s) {
    if (s == nullptr || !PyUnicode_Check(s)) return "<unknown>";
    Py_ssize_t n = 0;
    const char* data = PyUnicode_AsUTF8AndSize(s, &n);
    if (data == nullptr) {
        PyErr_Clear();
        return "<unknown>";
    }
    return std::string(data, static_cast<size_t>(n));
}

}  // namespace

std::vector<std::pair<int32_t, int32_t>> decode_line_table(const uint8_t* data, size_t size,
                                                           int firstlineno) {
    std::vector<std::pair<int32_t, int32_t>> out;
    Reader r{data, data + size};
    int32_t line = firstlineno;
    int32_t addr = 0;
    while (r.p < r.end && r.ok) {
        unsigned first = r.byte();
        if ((first & 0x80u) == 0) break;  // not an entry start: corrupt table
        int code = static_cast<int>((first >> 3) & 15u);
        int length = static_cast<int>(first & 7u) + 1;
        int32_t entry_line = line;
        if (code == kCodeNone) {
            entry_line = -1;
        } else if (code == kCodeLong) {
            line += r.svarint();
            entry_line = line;
            r.varint();  // end line delta
            r.varint();  // column + 1
            r.varint();  // end column + 1
        } else if (code == kCodeNoColumns) {
            line += r.svarint();
            entry_line = line;
        } else if (code >= 10) {  // one-line forms: delta 0..2, two column bytes
            line += code - 10;
            entry_line = line;
            r.byte();
            r.byte();
        } else {  // short forms: same line, one column byte
            r.byte();
        }
        if (out.empty() || out.back().second != entry_line) out.emplace_back(addr, entry_line);
        addr += length;
    }
    return out;
}

int CodeInfo::line_for(int32_t instr) const {
    if (instr < 0 || ranges.empty()) return firstlineno;
    auto it = std::upper_bound(ranges.begin(), ranges.end(), std::make_pair(instr, INT32_MAX));
    if (it == ranges.begin()) return firstlineno;
    --it;
    if (it->second >= 0) return it->second;
    // No location (artificial instructions): report the nearest earlier line.
    while (it != ranges.begin()) {
        --it;
        if (it->second >= 0) return it->second;
    }
    return firstlineno;
}

std::shared_ptr<CodeInfo> CodeRegistry::snapshot(PyCodeObject* code) {
    auto info = std::make_shared<CodeInfo>();
    info->qualname = utf8_of(compat::code_qualname(code));
    info->filename = utf8_of(compat::code_filename(code));
    info->firstlineno = compat::code_firstlineno(code);
    PyObject* table = compat::code_linetable(code);
    if (table != nullptr && PyBytes_Check(table)) {
        info->ranges = decode_line_table(reinterpret_cast<const uint8_t*>(PyBytes_AS_STRING(table)),
                                         static_cast<size_t>(PyBytes_GET_SIZE(table)),
                                         info->firstlineno);
    }
    info->id = next_id_++;
    bytes_ += sizeof(CodeInfo) + info->qualname.size() + info->filename.size() +
              info->ranges.size() * sizeof(info->ranges[0]) + 64;
    return info;
}

size_t CodeRegistry::snapshot_estimate(PyCodeObject* code) {
    // Names, path and decoded line table (at most one range per table byte).
    PyObject* table = compat::code_linetable(code);
    size_t table_bytes = table != nullptr && PyBytes_Check(table) ? static_cast<size_t>(PyBytes_GET_SIZE(table)) : 0;
    return sizeof(CodeInfo) + 512 + table_bytes * sizeof(std::pair<int32_t, int32_t>) + 64;
}

const CodeInfo* CodeRegistry::lookup(uintptr_t address, uint64_t epoch, size_t room, bool* over) {
    auto dead = dead_.find(address);
    if (dead != dead_.end()) {
        // Deaths at one address are appended in epoch order.
        for (const Tombstone& t : dead->second) {
            if (t.death_epoch > epoch) return t.info.get();  // null: died unrecorded
        }
    }
    auto live = live_.find(address);
    if (live != live_.end()) return live->second.get();
    if (epoch < lost_epoch_) return nullptr;  // a death since the capture may have gone unrecorded
    // No death at this address since the capture: the same object is alive.
    auto* code = reinterpret_cast<PyCodeObject*>(address);
    if (!PyCode_Check(reinterpret_cast<PyObject*>(code))) return nullptr;
    if (snapshot_estimate(code) > room) {
        if (over != nullptr) *over = true;
        return nullptr;
    }
    auto info = snapshot(code);
    const CodeInfo* raw = info.get();
    live_.emplace(address, std::move(info));
    return raw;
}

void CodeRegistry::on_code_death(PyCodeObject* code, uint64_t death_epoch, size_t room) {
    // Runs inside the program's deallocation of a code object: nothing may
    // escape from here, whatever the memory situation.
    try {
        auto address = reinterpret_cast<uintptr_t>(code);
        std::shared_ptr<CodeInfo> info;
        auto live = live_.find(address);
        if (live != live_.end()) {
            info = std::move(live->second);
            live_.erase(live);
        } else if (snapshot_estimate(code) <= room) {
            // Never resolved yet, but a sample still in the buffer may point at it.
            info = snapshot(code);
        }
        // A tombstone without info still tells later lookups that the code
        // at this address is not the one captured: <unknown>, never wrong.
        dead_[address].push_back(Tombstone{death_epoch, std::move(info)});
        ++tombstone_count_;
        bytes_ += 96;
    } catch (...) {
        // Could not record it: forget what we knew of that address, and
        // resolve no sample captured before this death from an object we
        // have not seen alive (it may be this one, freed).
        ++lost_deaths_;
        live_.erase(reinterpret_cast<uintptr_t>(code));
        lost_epoch_ = death_epoch;
    }
}

void CodeRegistry::prune_tombstones(uint64_t safe_epoch) {
    for (auto it = dead_.begin(); it != dead_.end();) {
        auto& list = it->second;
        auto keep = std::remove_if(list.begin(), list.end(), [&](const Tombstone& t) {
            return t.death_epoch <= safe_epoch;
        });
        tombstone_count_ -= static_cast<size_t>(list.end() - keep);
        bytes_ -= std::min(bytes_, static_cast<size_t>(list.end() - keep) * 96);
        list.erase(keep, list.end());
        it = list.empty() ? dead_.erase(it) : std::next(it);
    }
}

void CodeRegistry::clear() {
    live_.clear();
    dead_.clear();
    lost_deaths_ = 0;
    lost_epoch_ = 0;
    tombstone_count_ = 0;
    bytes_ = 0;
}

}  // namespace spprof
