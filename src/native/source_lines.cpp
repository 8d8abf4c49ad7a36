#include "source_lines.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <unordered_map>

#include "unwind_tables.h"

#if __has_include(<elfutils/libdwfl.h>)
#include <elfutils/libdwfl.h>
#define SPPROF_HAVE_LIBDW_HEADERS 1
#endif

namespace spprof::native {

#ifdef SPPROF_HAVE_LIBDW_HEADERS
namespace {

// The libdw entry points used, bound by name from the library dlopen'ed.
struct DwApi {
    decltype(&dwfl_begin) begin = nullptr;
    decltype(&dwfl_end) end = nullptr;
    decltype(&dwfl_report_begin) report_begin = nullptr;
    decltype(&dwfl_report_end) report_end = nullptr;
    decltype(&dwfl_linux_proc_report) proc_report = nullptr;
    decltype(&dwfl_addrmodule) addrmodule = nullptr;
    decltype(&dwfl_module_getsrc) getsrc = nullptr;
    decltype(&dwfl_module_getdwarf) getdwarf = nullptr;
    decltype(&elf_memory) elf_from_memory = nullptr;  // libelf's, through libdw
    decltype(&dwfl_lineinfo) lineinfo = nullptr;
};

std::mutex g_mu;
DwApi g_api;
bool g_tried = false;
const char* g_unavailable = nullptr;
Dwfl* g_dwfl = nullptr;
// Whether each module has line tables of its own: libdw looks for them
// again at every lookup in a module without (2-4 ms each in OpenBLAS).
std::unordered_map<Dwfl_Module*, bool> g_has_dwarf;
Dwfl_Callbacks g_callbacks{};
char* g_debuginfo_path = nullptr;

template <typename F>
bool bind(void* lib, const char* name, F& out) {
    out = reinterpret_cast<F>(dlsym(lib, name));
    return out != nullptr;
}

// Only an object's own DWARF is read, never a separate debug file
// (/usr/lib/debug, or a debuginfod server when DEBUGINFOD_URLS is set):
// libc's (Debian's libc6-dbg) alone takes ~65 ms and tens of MB to read,
// again in every session, and a profiler must not start fetching files
// over the network.
int no_separate_debuginfo(Dwfl_Module*, void**, const char*, Dwarf_Addr, const char*, const char*,
                          GElf_Word, char**) {
    return -1;
}

// Each object's file, mapped (read-only, copy-on-write) for libdw to read
// from memory: libdw would otherwise keep a descriptor open per object, at
// the lowest free numbers, for the process's life. The descriptor used to
// map it is closed at once. Mappings are kept (libdw gives no word when it
// lets go of an object) and reused for the same file: one per object file
// ever reported.
struct Mapped {
    dev_t dev;
    ino_t ino;
    void* data;
    size_t size;
};
std::unordered_map<std::string, Mapped> g_mapped;

int find_elf_mapped(Dwfl_Module*, void**, const char* modname, Dwarf_Addr, char**, Elf** elfp) {
    *elfp = nullptr;
    if (modname == nullptr || modname[0] != '/') return -1;  // [vdso], anonymous memory
    struct stat st;
    if (stat(modname, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) return -1;
    auto it = g_mapped.find(modname);
    if (it == g_mapped.end() || it->second.dev != st.st_dev || it->second.ino != st.st_ino) {
        const int fd = open(modname, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return -1;
        struct stat got;
        void* data = MAP_FAILED;
        if (fstat(fd, &got) == 0 && got.st_dev == st.st_dev && got.st_ino == st.st_ino) {
            data = mmap(nullptr, static_cast<size_t>(got.st_size), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
        }
        close(fd);
        if (data == MAP_FAILED) return -1;
        if (it != g_mapped.end()) munmap(it->second.data, it->second.size);  // a file replaced on disk
        it = g_mapped.insert_or_assign(modname, Mapped{got.st_dev, got.st_ino, data, static_cast<size_t>(got.st_size)}).first;
    }
    *elfp = g_api.elf_from_memory(static_cast<char*>(it->second.data), it->second.size);
    return -1;  // no descriptor for libdw to keep
}

bool load_locked() {
    if (g_tried) return g_unavailable == nullptr;
    g_tried = true;
    void* lib = dlopen("libdw.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) {
        g_unavailable = "cannot load libdw.so.1 (Debian's libdw1)";
        return false;
    }
    DwApi& a = g_api;
    if (!bind(lib, "dwfl_begin", a.begin) || !bind(lib, "dwfl_end", a.end) ||
        !bind(lib, "dwfl_report_begin", a.report_begin) || !bind(lib, "dwfl_report_end", a.report_end) ||
        !bind(lib, "dwfl_linux_proc_report", a.proc_report) ||
        !bind(lib, "dwfl_addrmodule", a.addrmodule) || !bind(lib, "dwfl_module_getsrc", a.getsrc) ||
        !bind(lib, "dwfl_module_getdwarf", a.getdwarf) || !bind(lib, "elf_memory", a.elf_from_memory) ||
        !bind(lib, "dwfl_lineinfo", a.lineinfo)) {
        g_unavailable = "libdw.so.1 lacks an entry point spprof uses";
        dlclose(lib);
        return false;
    }
    g_callbacks.find_elf = find_elf_mapped;
    g_callbacks.find_debuginfo = no_separate_debuginfo;
    g_callbacks.debuginfo_path = &g_debuginfo_path;
    return true;
}

// The process's objects as they are mapped now.
bool report_locked() {
    if (g_dwfl == nullptr) {
        g_dwfl = g_api.begin(&g_callbacks);
        if (g_dwfl == nullptr) return false;
    }
    g_has_dwarf.clear();  // modules may go away with the new report
    g_api.report_begin(g_dwfl);
    const int failed = g_api.proc_report(g_dwfl, getpid());
    return g_api.report_end(g_dwfl, nullptr, nullptr) == 0 && failed == 0;
}

}  // namespace

bool source_line(uintptr_t address, std::string* file, int* line) {
    uintptr_t interp_lo = 0, interp_hi = 0;
    interpreter_range(&interp_lo, &interp_hi);
    if (address >= interp_lo && address < interp_hi) return false;
    // The standard library's extension modules are CPython's sources too.
    Dl_info info;
    if (dladdr(reinterpret_cast<void*>(address), &info) != 0 && info.dli_fname != nullptr &&
        std::strstr(info.dli_fname, "/lib-dynload/") != nullptr) {
        return false;
    }
    std::lock_guard<std::mutex> lock(g_mu);
    if (!load_locked()) return false;
    if (g_dwfl == nullptr && !report_locked()) return false;
    Dwfl_Module* mod = g_api.addrmodule(g_dwfl, address);
    if (mod == nullptr) {
        // Loaded since the last report: report again, once for this address.
        if (!report_locked()) return false;
        mod = g_api.addrmodule(g_dwfl, address);
        if (mod == nullptr) return false;
    }
    auto known = g_has_dwarf.find(mod);
    if (known == g_has_dwarf.end()) {
        Dwarf_Addr bias = 0;
        known = g_has_dwarf.emplace(mod, g_api.getdwarf(mod, &bias) != nullptr).first;
    }
    if (!known->second) return false;
    Dwfl_Line* row = g_api.getsrc(mod, address);
    if (row == nullptr) return false;
    int lineno = 0;
    const char* name = g_api.lineinfo(row, nullptr, &lineno, nullptr, nullptr, nullptr);
    if (name == nullptr || lineno <= 0) return false;
    *file = name;
    *line = lineno;
    return true;
}

const char* source_lines_unavailable() {
    std::lock_guard<std::mutex> lock(g_mu);
    load_locked();
    return g_unavailable;
}

#else  // built without libdw's headers

bool source_line(uintptr_t, std::string*, int*) { return false; }
const char* source_lines_unavailable() {
    return "spprof was built without libdw's headers (Debian's libdw-dev)";
}

#endif

}  // namespace spprof::native
