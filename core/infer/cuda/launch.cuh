// Private to core/infer/cuda: one launch helper shared by the GEMV kernels.
#ifndef HC_CORE_INFER_CUDA_LAUNCH_CUH_
#define HC_CORE_INFER_CUDA_LAUNCH_CUH_

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

namespace hc::cuda_internal {

/// Launches `kernel` on `stream` with `grid` x `block` threads and `smem` bytes of dynamic
/// shared memory. With `pdl`, as a programmatic dependent launch: it may start while the
/// previous kernel on the stream finishes (the kernel waits with griddepcontrol before it reads
/// that kernel's output).
template <typename... Params, typename... Args>
cudaError_t LaunchMaybePdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                           cudaStream_t stream, bool pdl, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = attr;
  cfg.numAttrs = pdl ? 1 : 0;
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace hc::cuda_internal

#endif  // HC_CORE_INFER_CUDA_LAUNCH_CUH_
