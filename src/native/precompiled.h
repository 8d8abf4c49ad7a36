// precompiled.h: the headers nearly every translation unit parses, compiled
// once per build (CMake's target_precompile_headers). Only what every
// unit may see: Python.h as compat.h includes it, and the standard library.
#pragma once

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>
