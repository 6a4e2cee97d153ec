#include "core/base/simd.h"

#include <atomic>

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
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
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
