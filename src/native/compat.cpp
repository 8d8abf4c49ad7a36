// compat.cpp: the version-specific halves of compat.h.
#include "compat.h"

namespace spprof::compat {

namespace {
CodeDeathCallback g_callback = nullptr;

#if PY_VERSION_HEX >= 0x030C0000
int g_watcher_id = -1;

int on_code_event(PyCodeEvent event, PyCodeObject* co) {
    if (event == PY_CODE_EVENT_DESTROY && g_callback != nullptr) g_callback(co);
    return 0;
}
#else
destructor g_original_dealloc = nullptr;

// 3.11 has no code watchers: wrap the type's deallocator. The code object
// is intact (refcount 0) when we see it; the original deallocator runs next.
void dealloc_with_notice(PyObject* obj) {
    if (g_callback != nullptr) g_callback(reinterpret_cast<PyCodeObject*>(obj));
    g_original_dealloc(obj);
}
#endif
}  // namespace

bool install_code_death_hook(CodeDeathCallback cb) {
    g_callback = cb;
#if PY_VERSION_HEX >= 0x030C0000
    if (g_watcher_id < 0) {
        g_watcher_id = PyCode_AddWatcher(on_code_event);
        if (g_watcher_id < 0) {
            g_callback = nullptr;
            return false;  // Python exception set
        }
    }
#else
    if (g_original_dealloc == nullptr) {
        g_original_dealloc = PyCode_Type.tp_dealloc;
        PyCode_Type.tp_dealloc = dealloc_with_notice;
    }
#endif
    return true;
}

void remove_code_death_hook() {
#if PY_VERSION_HEX >= 0x030C0000
    if (g_watcher_id >= 0) {
        if (PyCode_ClearWatcher(g_watcher_id) < 0) PyErr_Clear();
        g_watcher_id = -1;
    }
#else
    if (g_original_dealloc != nullptr) {
        PyCode_Type.tp_dealloc = g_original_dealloc;
        g_original_dealloc = nullptr;
    }
#endif
    g_callback = nullptr;
}

}  // namespace spprof::compat
