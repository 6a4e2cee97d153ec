#include "core/base/simd.h"

#include <atomic>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

namespace hc {
namespace {
std::atomic<int> g_scalar_only{0};
}  // namespace

bool CpuHasAvx2() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx2");
  return has;
#else
  return false;
#endif
}

bool CpuHasF16C() {
#if defined(__x86_64__)
  // F16C from CPUID leaf 1 (ECX bit 29): clang 14's __builtin_cpu_supports has no "f16c".
  static const bool has = __builtin_cpu_supports("avx2") && [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_F16C) != 0;
  }();
  return has;
#else
  return false;
#endif
}

bool CpuHasAvx512() {
#if defined(__x86_64__)
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw");
  return has;
#else
  return false;
#endif
}

bool SimdAllowed() { return g_scalar_only.load(std::memory_order_relaxed) == 0; }

ScopedScalarOnly::ScopedScalarOnly() { g_scalar_only.fetch_add(1); }
ScopedScalarOnly::~ScopedScalarOnly() { g_scalar_only.fetch_sub(1); }

}  // namespace hc
