// symbolizer.cpp: address -> function name from each loaded object's own
// ELF symbol table (see symbolizer.h). Measured (native-frames.md, "3."):
// dladdr scans .dynsym linearly (17-67 us an address) and names only
// exported functions, reporting the nearest one however far away; a table
// of our own, sorted once (1-2 ms an object), answers in ~0.1 us and knows
// .symtab's static functions too.
#include "symbolizer.h"

#include <cxxabi.h>
#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "native_unwind.h"

namespace spprof::native {
namespace {

struct Function {
    uintptr_t start;  // address in the file (st_value)
    uint64_t size;
    uint32_t name;  // offset into Table::names
    uint8_t rank;   // 0 global, 1 weak, 2 local: which alias names a start
};

struct Table {
    std::vector<Function> functions;  // sorted by start, one per start
    std::string names;
};

struct Object {
    std::string path;  // as the loader names it
    std::string file;  // what we read
    uintptr_t bias = 0;
    uintptr_t lo = 0, hi = 0;  // the span of its PT_LOAD segments
    std::string build_id;      // from its notes in memory; "" if none
    std::shared_ptr<const Table> table;
    bool table_tried = false;
};

// One mapped file, unmapped when done.
class Mapping {
public:
    explicit Mapping(const std::string& path) {
        int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return;
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= (off_t)sizeof(Elf64_Ehdr)) {
            void* p = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
            if (p != MAP_FAILED) {
                data_ = static_cast<const char*>(p);
                size_ = static_cast<size_t>(st.st_size);
            }
        }
        close(fd);
    }
    ~Mapping() {
        if (data_ != nullptr) munmap(const_cast<char*>(data_), size_);
    }
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    // `count` items of T at `offset`, or nullptr if they are not all inside.
    template <typename T>
    const T* at(uint64_t offset, uint64_t count = 1) const {
        if (data_ == nullptr || offset > size_ || count > (size_ - offset) / sizeof(T)) return nullptr;
        return reinterpret_cast<const T*>(data_ + offset);
    }
    size_t size() const { return size_; }

private:
    const char* data_ = nullptr;
    size_t size_ = 0;
};

// The GNU build id in a run of ELF notes, "" if none.
std::string build_id(const char* notes, size_t size) {
    size_t at = 0;
    while (size - at >= sizeof(Elf64_Nhdr)) {
        Elf64_Nhdr h;
        std::memcpy(&h, notes + at, sizeof h);
        size_t name = at + sizeof h, desc = name + ((h.n_namesz + 3u) & ~size_t{3});
        size_t next = desc + ((h.n_descsz + 3u) & ~size_t{3});
        if (h.n_namesz > size || h.n_descsz > size || next > size) return "";
        if (h.n_type == NT_GNU_BUILD_ID && h.n_namesz == 4 && std::memcmp(notes + name, "GNU", 4) == 0) {
            return std::string(notes + desc, h.n_descsz);
        }
        at = next;
    }
    return "";
}

// The functions of one ELF file: .symtab when it has one (static functions
// too), else .dynsym. nullptr when the file is not a readable ELF64 file,
// or not the one that was loaded: its build id differs from `loaded_id`
// (the library was replaced on disk since it was loaded).
std::shared_ptr<const Table> read_table(const std::string& file, const std::string& loaded_id) {
    Mapping m(file);
    const auto* eh = m.at<Elf64_Ehdr>(0);
    if (eh == nullptr || std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 ||
        eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_shentsize != sizeof(Elf64_Shdr)) {
        return nullptr;
    }
    if (!loaded_id.empty()) {
        std::string id;
        const auto* ph = eh->e_phentsize == sizeof(Elf64_Phdr) ? m.at<Elf64_Phdr>(eh->e_phoff, eh->e_phnum) : nullptr;
        for (unsigned i = 0; ph != nullptr && i < eh->e_phnum && id.empty(); ++i) {
            const char* notes = ph[i].p_type == PT_NOTE ? m.at<char>(ph[i].p_offset, ph[i].p_filesz) : nullptr;
            if (notes != nullptr) id = build_id(notes, ph[i].p_filesz);
        }
        if (id != loaded_id) return nullptr;
    }
    const auto* sections = m.at<Elf64_Shdr>(eh->e_shoff, eh->e_shnum);
    if (sections == nullptr) return nullptr;
    const Elf64_Shdr* symbols = nullptr;
    for (int pass = 0; pass < 2 && symbols == nullptr; ++pass) {
        for (unsigned i = 0; i < eh->e_shnum; ++i) {
            if (sections[i].sh_type == (pass == 0 ? SHT_SYMTAB : SHT_DYNSYM)) symbols = &sections[i];
        }
    }
    if (symbols == nullptr || symbols->sh_entsize != sizeof(Elf64_Sym) || symbols->sh_link >= eh->e_shnum) {
        return nullptr;
    }
    const Elf64_Shdr& strings = sections[symbols->sh_link];
    const auto* syms = m.at<Elf64_Sym>(symbols->sh_offset, symbols->sh_size / sizeof(Elf64_Sym));
    const auto* strs = m.at<char>(strings.sh_offset, strings.sh_size);
    if (syms == nullptr || strs == nullptr) return nullptr;
    auto table = std::make_shared<Table>();
    size_t n = symbols->sh_size / sizeof(Elf64_Sym);
    for (size_t i = 0; i < n; ++i) {
        const Elf64_Sym& s = syms[i];
        int type = ELF64_ST_TYPE(s.st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s.st_shndx == SHN_UNDEF || s.st_value == 0 ||
            s.st_name >= strings.sh_size) {
            continue;
        }
        const char* name = strs + s.st_name;
        size_t len = strnlen(name, strings.sh_size - s.st_name);
        if (len == 0 || len == strings.sh_size - s.st_name || table->names.size() > UINT32_MAX - len - 1) {
            continue;
        }
        int bind = ELF64_ST_BIND(s.st_info);
        uint8_t rank = bind == STB_GLOBAL ? 0 : bind == STB_WEAK ? 1 : 2;
        table->functions.push_back({s.st_value, s.st_size, static_cast<uint32_t>(table->names.size()), rank});
        table->names.append(name, len + 1);
    }
    auto& f = table->functions;
    std::sort(f.begin(), f.end(), [](const Function& a, const Function& b) {
        if (a.start != b.start) return a.start < b.start;
        if ((a.size == 0) != (b.size == 0)) return a.size != 0;
        return a.rank < b.rank;
    });
    f.erase(std::unique(f.begin(), f.end(), [](const Function& a, const Function& b) { return a.start == b.start; }),
            f.end());
    f.shrink_to_fit();
    return table;
}

// The function of `table` that contains file address `addr`, or nullptr.
// Functions do not overlap but for odd aliases: a few neighbours are tried.
const Function* find(const Table& table, uintptr_t addr) {
    const auto& f = table.functions;
    auto it = std::upper_bound(f.begin(), f.end(), addr, [](uintptr_t a, const Function& fn) { return a < fn.start; });
    for (int tries = 0; tries < 4 && it != f.begin(); ++tries) {
        --it;
        if (it->size > 0 && addr - it->start < it->size) return &*it;
    }
    return nullptr;
}

struct Cached {
    std::string name;
    std::string object;
    uintptr_t base = 0;  // function start (resolved) or load bias
    bool resolved = false;
    bool in_object = false;
};

class State {
public:
    std::mutex mu;

    // The loader's list of objects, reread when it changed (adds/subs).
    void refresh() {
        struct Seen {
            unsigned long long adds = 0, subs = 0;
            std::vector<Object> objects;
        } seen;
        dl_iterate_phdr(
            [](dl_phdr_info* info, size_t size, void* arg) -> int {
                auto* s = static_cast<Seen*>(arg);
                if (size >= offsetof(dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
                    s->adds = info->dlpi_adds;
                    s->subs = info->dlpi_subs;
                }
                Object o;
                o.path = info->dlpi_name != nullptr ? info->dlpi_name : "";
                o.bias = info->dlpi_addr;
                o.lo = UINTPTR_MAX;
                for (int i = 0; i < info->dlpi_phnum; ++i) {
                    const auto& ph = info->dlpi_phdr[i];
                    if (ph.p_type == PT_NOTE && o.build_id.empty()) {
                        o.build_id = build_id(reinterpret_cast<const char*>(info->dlpi_addr + ph.p_vaddr), ph.p_memsz);
                    }
                    if (ph.p_type != PT_LOAD) continue;
                    o.lo = std::min<uintptr_t>(o.lo, info->dlpi_addr + ph.p_vaddr);
                    o.hi = std::max<uintptr_t>(o.hi, info->dlpi_addr + ph.p_vaddr + ph.p_memsz);
                }
                if (o.lo < o.hi) s->objects.push_back(std::move(o));
                return 0;
            },
            &seen);
        if (primed_ && seen.adds == adds_ && seen.subs == subs_) return;
        for (auto& o : seen.objects) {
            if (o.path.empty()) o.path = program_path();
            o.file = o.path;
            for (const auto& old : objects_) {  // keep tables already read
                if (old.path == o.path && old.bias == o.bias && old.build_id == o.build_id) {
                    o.table = old.table;
                    o.table_tried = old.table_tried;
                }
            }
        }
        if (seen.subs != subs_) cache_.clear();  // an address may now be another object's
        objects_ = std::move(seen.objects);
        adds_ = seen.adds;
        subs_ = seen.subs;
        primed_ = true;
    }

    Object* object_at(uintptr_t addr) {
        for (auto& o : objects_) {
            if (addr >= o.lo && addr < o.hi) return &o;
        }
        return nullptr;
    }

    const Cached& lookup(uintptr_t addr) {
        auto it = cache_.find(addr);
        if (it != cache_.end()) return it->second;
        if (cache_.size() >= kCacheLimit) cache_.clear();
        return cache_.emplace(addr, resolve(addr)).first->second;
    }

    Cached resolve(uintptr_t addr) { return resolve_uncached(addr); }

private:
    static constexpr size_t kCacheLimit = 1 << 16;

    static std::string program_path() {
        char buf[4096];
        ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
        if (n <= 0) return "";
        buf[n] = '\0';
        return buf;
    }

    Cached resolve_uncached(uintptr_t addr) {
        Cached c;
        Object* o = object_at(addr);
        if (o != nullptr) {
            c.object = o->path;
            c.base = o->bias;
            c.in_object = true;
            if (!o->table_tried) {
                o->table_tried = true;
                o->table = read_table(o->file, o->build_id);
            }
            if (o->table) {
                if (const Function* f = find(*o->table, addr - o->bias)) {
                    c.name = demangle(o->table->names.c_str() + f->name);
                    c.base = f->start + o->bias;
                    c.resolved = true;
                }
                return c;
            }
        }
        // No table (no readable file: the vDSO, a deleted library): the
        // loader's exported symbols, if one really contains addr.
        Dl_info info;
        void* entry = nullptr;
        if (dladdr1(reinterpret_cast<void*>(addr), &info, &entry, RTLD_DL_SYMENT) != 0) {
            const auto* sym = static_cast<const ElfW(Sym)*>(entry);
            if (!c.in_object && info.dli_fname != nullptr) {
                c.object = info.dli_fname;
                c.base = reinterpret_cast<uintptr_t>(info.dli_fbase);
                c.in_object = true;
            }
            auto start = reinterpret_cast<uintptr_t>(info.dli_saddr);
            if (info.dli_sname != nullptr && sym != nullptr && sym->st_size > 0 && addr >= start &&
                addr - start < sym->st_size) {
                c.name = demangle(info.dli_sname);
                c.base = start;
                c.resolved = true;
            }
        }
        return c;
    }

    bool primed_ = false;
    unsigned long long adds_ = 0, subs_ = 0;
    std::vector<Object> objects_;
    std::unordered_map<uintptr_t, Cached> cache_;
};

State& state() {
    static State* s = new State();  // never destroyed: used until exit
    return *s;
}

// Rust's legacy mangling, after __cxa_demangle: "a::b::h<16 hex>" with
// $LT$-style escapes and ".." for "::" inside generic paths.
std::string rust_legacy(const std::string& s) {
    size_t n = s.size();
    if (n < 20 || s.compare(n - 19, 3, "::h") != 0) return s;
    for (size_t i = n - 16; i < n; ++i) {
        if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return s;
    }
    static const std::pair<const char*, const char*> kEscapes[] = {
        {"$LT$", "<"}, {"$GT$", ">"}, {"$RF$", "&"}, {"$BP$", "*"}, {"$C$", ","}, {"$SP$", "@"},
        {"$u20$", " "}, {"$u27$", "'"}, {"$u5b$", "["}, {"$u5d$", "]"}, {"$u7b$", "{"}, {"$u7d$", "}"},
        {"$u7e$", "~"}, {"..", "::"},
    };
    std::string in = s.substr(0, n - 19), out;
    for (size_t i = 0; i < in.size();) {
        // "_$" opens a path component that starts with an escape
        if (in.compare(i, 2, "_$") == 0 && (i == 0 || in[i - 1] == ':')) ++i;
        bool matched = false;
        for (const auto& [from, to] : kEscapes) {
            size_t len = std::strlen(from);
            if (in.compare(i, len, from) == 0) {
                out += to;
                i += len;
                matched = true;
                break;
            }
        }
        if (!matched) out += in[i++];
    }
    return out;
}

// Cython's names for a module's functions: a prefix, the scopes (module,
// classes) each as <length><name>, then "_" and the function's name,
// itself after an ordinal for Python-visible functions:
// __pyx_pw_5hotcy_8Pipeline_1run is hotcy.Pipeline.run, __pyx_f_5hotcy_mix
// (a cdef function) hotcy.mix. "" when `name` is not one.
std::string cython_name(const char* name) {
    static const char* const kPrefixes[] = {"__pyx_pw_", "__pyx_pf_", "__pyx_f_", "__pyx_gb_"};
    const char* p = nullptr;
    for (const char* prefix : kPrefixes) {
        if (std::strncmp(name, prefix, std::strlen(prefix)) == 0) {
            p = name + std::strlen(prefix);
            break;
        }
    }
    if (p == nullptr) return "";
    std::string out;
    for (;;) {
        // Another scope: <length><name> followed by "_".
        char* end = nullptr;
        const long n = std::isdigit(static_cast<unsigned char>(*p)) ? std::strtol(p, &end, 10) : -1;
        if (n <= 0 || static_cast<size_t>(n) > std::strlen(end) || end[n] != '_' || end[n + 1] == '\0') break;
        if (!out.empty()) out += '.';
        out.append(end, static_cast<size_t>(n));
        p = end + n + 1;
    }
    if (out.empty()) return "";
    while (std::isdigit(static_cast<unsigned char>(*p))) ++p;  // the ordinal
    if (*p == '\0') return "";
    return out + "." + p + " (Cython)";
}

// mypyc's: CPyDef_ (the native function) or CPyPy_ (its Python wrapper),
// then the module, classes and function joined by "___".
std::string mypyc_name(const char* name) {
    const char* p = nullptr;
    if (std::strncmp(name, "CPyDef_", 7) == 0) p = name + 7;
    if (std::strncmp(name, "CPyPy_", 6) == 0) p = name + 6;
    if (p == nullptr || *p == '\0') return "";
    std::string out;
    while (*p != '\0') {
        // A run of three or more underscores: the separator, then the rest
        // of the run starts the next name (a private one: "____f" is "._f").
        size_t run = std::strspn(p, "_");
        if (run >= 3 && !out.empty() && p[run] != '\0') {
            out += '.';
            out.append(run - 3, '_');
            p += run;
        } else {
            out.append(p, run == 0 ? 1 : run);
            p += run == 0 ? 1 : run;
        }
    }
    return out + " (mypyc)";
}

}  // namespace

std::string demangle(const char* name) {
    if (name[0] != '_' || name[1] != 'Z') {
        std::string compiled = cython_name(name);
        if (compiled.empty()) compiled = mypyc_name(name);
        return compiled.empty() ? std::string(name) : compiled;
    }
    int status = 0;
    char* out = abi::__cxa_demangle(name, nullptr, nullptr, &status);
    if (status != 0 || out == nullptr) {
        std::free(out);
        return name;
    }
    std::string s(out);
    std::free(out);
    return rust_legacy(s);
}

namespace {
Symbol symbol_at(State& s, uintptr_t ip, bool exact, bool cache = true) {
    // A return address may be one past its function (a call to a function
    // that does not return): look inside the call.
    const uintptr_t at = exact || ip == 0 ? ip : ip - 1;
    Cached uncached;
    if (!cache) uncached = s.resolve(at);
    const Cached& c = cache ? s.lookup(at) : uncached;
    Symbol sym;
    sym.ip = ip;
    sym.object = c.object;
    sym.resolved = c.resolved;
    sym.offset = c.resolved || c.in_object ? ip - c.base : 0;
    if (c.resolved) {
        sym.name = c.name;
    } else {
        char hex[2 + 16 + 1];
        std::snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(ip));
        sym.name = hex;
    }
    return sym;
}
}  // namespace

std::vector<Symbol> symbolize(const NativeStack& stack, int first) {
    std::vector<Symbol> out;
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    s.refresh();
    for (int i = std::max(first, 0); i < stack.depth; ++i) {
        out.push_back(symbol_at(s, stack.ip[i], stack.exact(i)));
    }
    return out;
}

std::vector<Symbol> symbolize_trace(const uintptr_t* ip, int depth) {
    std::vector<Symbol> out;
    out.reserve(static_cast<size_t>(depth));
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    s.refresh();
    // Not cached here: a profile's resolver keeps its own names for the
    // session, and the leaves of samples are too many distinct addresses.
    for (int i = 0; i < depth; ++i) out.push_back(symbol_at(s, ip[i], i == 0, false));
    return out;
}

std::string object_of(uintptr_t address) {
    State& s = state();
    std::lock_guard<std::mutex> lock(s.mu);
    s.refresh();
    Object* o = s.object_at(address);
    return o != nullptr ? o->path : std::string();
}

}  // namespace spprof::native
