// What every instantiation of the vectorised kernels (involution_cpu_kernels.h) needs
// before it: the headers the kernels use and GCC's options for them. Each path is its own
// translation unit (involution_cpu_<path>.cpp), so a parallel build compiles them side by
// side.
#pragma once

#include "involution_cpu_simd.h"

#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
// The staged rows are short (tens of floats): GCC would turn the fill and copy loops
// into memset/memmove calls that cost more than the loops.
#pragma GCC optimize("no-tree-loop-distribute-patterns")
#endif
