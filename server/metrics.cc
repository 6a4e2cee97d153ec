#include "server/metrics.h"

#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"

namespace hc::server {

struct Metrics::Impl {
  std::unique_ptr<prometheus::Exposer> exposer;
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();

  prometheus::Family<prometheus::Counter>* jobs_total;
  prometheus::Family<prometheus::Counter>* tensors_total;
  prometheus::Family<prometheus::Counter>* weights_total;
  prometheus::Family<prometheus::Counter>* input_bytes_total;
  prometheus::Family<prometheus::Counter>* output_bytes_total;
  prometheus::Family<prometheus::Counter>* rpcs_total;
  prometheus::Gauge* jobs_queued;
  prometheus::Gauge* jobs_running;
  prometheus::Family<prometheus::Gauge>* progress;
  prometheus::Gauge* pool_threads;
  prometheus::Gauge* pool_busy;
  prometheus::Gauge* spool_bytes;
  prometheus::Family<prometheus::Histogram>* fit_seconds;
  prometheus::Histogram* job_seconds;
  prometheus::Family<prometheus::Histogram>* snr_db;
  prometheus::Family<prometheus::Histogram>* bpw;

  std::mutex mu;
  std::map<std::string, prometheus::Gauge*> progress_by_job;  // unfinished jobs
  std::map<std::string, bool> ended;                           // jobs counted in jobs_total

  JobManager* jobs = nullptr;
  std::thread refresher;
  std::condition_variable stop_cv;
  bool stop = false;

  void DropProgress(const std::string& id) {
    auto it = progress_by_job.find(id);
    if (it != progress_by_job.end()) {
      progress->Remove(it->second);
      progress_by_job.erase(it);
    }
  }
};

namespace {

// Fine buckets from 100 us to 100 s: tensors take microseconds to seconds.
prometheus::Histogram::BucketBoundaries SecondsBuckets() {
  return {1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100};
}
prometheus::Histogram::BucketBoundaries JobBuckets() {
  return {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600};
}
prometheus::Histogram::BucketBoundaries SnrBuckets() {
  prometheus::Histogram::BucketBoundaries b;
  for (int db = 0; db <= 60; db += 3) b.push_back(db);
  return b;
}
prometheus::Histogram::BucketBoundaries BpwBuckets() {
  return {1, 1.5, 2, 2.25, 2.5, 3, 3.25, 3.5, 4, 4.25, 4.5, 5, 6, 7, 8, 10, 12, 16, 32};
}

}  // namespace

Metrics::Metrics(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Metrics::~Metrics() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->stop_cv.notify_all();
  if (impl_->refresher.joinable()) impl_->refresher.join();
}

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(const std::string& address) {
  auto impl = std::make_unique<Impl>();
  try {
    impl->exposer = std::make_unique<prometheus::Exposer>(address);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address, ": ", e.what()));
  }
  auto& r = *impl->registry;
  using prometheus::BuildCounter;
  using prometheus::BuildGauge;
  using prometheus::BuildHistogram;
  impl->jobs_total = &BuildCounter().Name("hyperc_jobs_total").Help("Jobs that ended, by final state").Register(r);
  impl->tensors_total = &BuildCounter().Name("hyperc_tensors_total").Help("Tensors written, by codec (raw for raw tensors)").Register(r);
  impl->weights_total = &BuildCounter().Name("hyperc_weights_total").Help("Weights (tensor elements) written, by codec").Register(r);
  impl->input_bytes_total = &BuildCounter().Name("hyperc_input_bytes_total").Help("Input bytes of the tensors written, by codec").Register(r);
  impl->output_bytes_total = &BuildCounter().Name("hyperc_output_bytes_total").Help("Artifact bytes of the tensors written, by codec").Register(r);
  impl->rpcs_total = &BuildCounter().Name("hyperc_rpcs_total").Help("Finished RPCs by method and status code").Register(r);
  impl->jobs_queued = &BuildGauge().Name("hyperc_jobs_queued").Help("Jobs waiting for a run slot").Register(r).Add({});
  impl->jobs_running = &BuildGauge().Name("hyperc_jobs_running").Help("Jobs compressing now").Register(r).Add({});
  impl->progress = &BuildGauge().Name("hyperc_job_progress_ratio").Help("Fraction done of each unfinished job").Register(r);
  impl->pool_threads = &BuildGauge().Name("hyperc_pool_threads").Help("Worker threads of the shared pool").Register(r).Add({});
  impl->pool_busy = &BuildGauge().Name("hyperc_pool_threads_busy").Help("Worker threads encoding a tensor now").Register(r).Add({});
  impl->spool_bytes = &BuildGauge().Name("hyperc_spool_bytes").Help("Bytes in the spool directory").Register(r).Add({});
  impl->fit_seconds = &BuildHistogram().Name("hyperc_tensor_fit_seconds").Help("Encoding time per tensor").Register(r);
  impl->job_seconds = &BuildHistogram().Name("hyperc_job_seconds").Help("Time per finished job").Register(r).Add({}, JobBuckets());
  impl->snr_db = &BuildHistogram().Name("hyperc_tensor_snr_db").Help("Per-tensor SNR of coded tensors, dB").Register(r);
  impl->bpw = &BuildHistogram().Name("hyperc_tensor_bits_per_weight").Help("Per-tensor bits per weight of coded tensors").Register(r);
  impl->exposer->RegisterCollectable(impl->registry);
  return std::unique_ptr<Metrics>(new Metrics(std::move(impl)));
}

int Metrics::port() const {
  auto ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : ports.front();
}

JobObserver Metrics::Observer() {
  Impl* m = impl_.get();
  JobObserver o;
  o.on_tensor = [m](const TensorRecord& r, uint64_t input_bytes, double seconds) {
    const prometheus::Labels l = {{"codec", r.codec}};
    m->tensors_total->Add(l).Increment();
    m->weights_total->Add(l).Increment(static_cast<double>(r.numel));
    m->input_bytes_total->Add(l).Increment(static_cast<double>(input_bytes));
    m->output_bytes_total->Add(l).Increment(static_cast<double>(r.stats.stored_bytes));
    if (seconds > 0) m->fit_seconds->Add(l, SecondsBuckets()).Observe(seconds);
    if (r.codec != kRawCodec) {
      m->snr_db->Add(l, SnrBuckets()).Observe(r.stats.snr_db);
      m->bpw->Add(l, BpwBuckets()).Observe(r.stats.bits_per_weight);
    }
  };
  o.on_job_change = [m](const JobSnapshot& s, int running, int queued) {
    std::lock_guard<std::mutex> lock(m->mu);
    m->jobs_running->Set(running);
    m->jobs_queued->Set(queued);
    if (IsFinal(s.state)) {
      m->DropProgress(s.id);
      if (!m->ended[s.id]) {
        m->ended[s.id] = true;
        m->jobs_total->Add({{"state", std::string(JobStateName(s.state))}}).Increment();
        if (s.state == JobState::kSucceeded) m->job_seconds->Observe(s.seconds);
      }
      return;
    }
    auto it = m->progress_by_job.find(s.id);
    if (it == m->progress_by_job.end()) {
      it = m->progress_by_job.emplace(s.id, &m->progress->Add({{"job", s.id}})).first;
    }
    it->second->Set(s.progress.fraction);
  };
  o.on_job_deleted = [m](const std::string& id) {
    std::lock_guard<std::mutex> lock(m->mu);
    m->DropProgress(id);
    m->ended.erase(id);
  };
  return o;
}

ServiceHooks Metrics::Hooks() {
  Impl* m = impl_.get();
  ServiceHooks h;
  static const char* const kCodes[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                       "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                       "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                       "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
  h.on_rpc_done = [m](const std::string& method, const grpc::Status& s) {
    const int c = static_cast<int>(s.error_code());
    const std::string code = c >= 0 && c <= 16 ? kCodes[c] : absl::StrCat(c);
    m->rpcs_total->Add({{"method", method}, {"code", code}}).Increment();
  };
  return h;
}

void Metrics::Refresh() {
  JobManager* j = impl_->jobs;
  if (j == nullptr) return;
  impl_->jobs_running->Set(j->running());
  impl_->jobs_queued->Set(j->queued());
  impl_->pool_threads->Set(j->pool_threads());
  impl_->pool_busy->Set(j->pool_busy());
  impl_->spool_bytes->Set(static_cast<double>(j->SpoolBytes()));
}

void Metrics::Follow(JobManager* jobs) {
  impl_->jobs = jobs;
  Refresh();
  impl_->refresher = std::thread([this] {
    std::unique_lock<std::mutex> lock(impl_->mu);
    while (!impl_->stop_cv.wait_for(lock, std::chrono::seconds(1), [this] { return impl_->stop; })) {
      lock.unlock();
      Refresh();
      lock.lock();
    }
  });
}

}  // namespace hc::server
