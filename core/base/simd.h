// Run-time choice of SIMD kernels. Every kernel with a vector path (F16 conversions, rtn's
// group quantiser, the error statistics, ...) also has a scalar reference with the same result
// bit for bit, and takes the vector path only when the CPU has the instructions and
// SimdAllowed() is true. Tests turn SIMD off with ScopedScalarOnly to compare the two paths
// through the public functions.
#ifndef HC_CORE_BASE_SIMD_H_
#define HC_CORE_BASE_SIMD_H_

namespace hc {

/// Whether the CPU has AVX2 (checked once).
bool CpuHasAvx2();
/// Whether the CPU has AVX2 and F16C (checked once).
bool CpuHasF16C();
/// Whether the CPU has AVX-512 F, DQ, VL and BW (checked once).
bool CpuHasAvx512();
/// False while a ScopedScalarOnly is alive (in any thread), true otherwise.
bool SimdAllowed();

/// Forces the scalar paths for its lifetime. For tests; not meant to nest across threads.
class ScopedScalarOnly {
 public:
  ScopedScalarOnly();
  ~ScopedScalarOnly();
  ScopedScalarOnly(const ScopedScalarOnly&) = delete;
  ScopedScalarOnly& operator=(const ScopedScalarOnly&) = delete;
};

}  // namespace hc

#endif  // HC_CORE_BASE_SIMD_H_
