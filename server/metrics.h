// Prometheus metrics of hyperc-server (prometheus-cpp), served on their own HTTP port.
//
// Counters
//   hyperc_jobs_total{state}                      jobs that ended, by final state
//   hyperc_tensors_total{codec}                   tensors written ("raw" for raw ones)
//   hyperc_weights_total{codec}                   weights (elements) of those tensors
//   hyperc_input_bytes_total{codec}               their input bytes
//   hyperc_output_bytes_total{codec}              bytes they occupy in artifacts
//   hyperc_rpcs_total{method,code}                finished RPCs by method and status code name
// Gauges
//   hyperc_jobs_queued, hyperc_jobs_running       job counts
//   hyperc_job_progress_ratio{job}                fraction done of each unfinished job (removed
//                                                 when the job ends or is deleted)
//   hyperc_pool_threads, hyperc_pool_threads_busy worker threads and those encoding a tensor
//   hyperc_spool_bytes                            bytes in the spool directory
// Histograms
//   hyperc_tensor_fit_seconds{codec}              encoding time per tensor
//   hyperc_job_seconds                            time per finished job
//   hyperc_tensor_snr_db{codec}                   per-tensor SNR of coded tensors
//   hyperc_tensor_bits_per_weight{codec}          per-tensor bits per weight of coded tensors
#ifndef HC_SERVER_METRICS_H_
#define HC_SERVER_METRICS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/job_manager.h"
#include "server/service.h"

namespace hc::server {

class Metrics {
 public:
  /// Serves /metrics on `address` (host:port, port 0 = pick one). Errors: Unavailable if the
  /// address cannot be bound.
  static absl::StatusOr<std::unique_ptr<Metrics>> Start(const std::string& address);
  ~Metrics();

  /// The hooks to install in JobManagerOptions / ServerOptions.
  JobObserver Observer();
  ServiceHooks Hooks();
  /// Starts refreshing the gauges that are read from `jobs` (once a second) until destroyed.
  void Follow(JobManager* jobs);
  /// Refreshes them now.
  void Refresh();
  int port() const;

 private:
  struct Impl;
  explicit Metrics(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hc::server

#endif  // HC_SERVER_METRICS_H_
