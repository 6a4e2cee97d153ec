// `hyperc report`: the main job. Compresses models with each available codec configuration,
// decompresses the artifacts, verifies the round trip independently and prints a quality report.
#ifndef HC_CLIENT_REPORT_H_
#define HC_CLIENT_REPORT_H_

#include "client/cli_util.h"

namespace hc::cli {

/// Runs `hyperc report [MODEL...] [--work-dir DIR] [--threads N]`. Returns the exit code.
int Report(Args& args);

}  // namespace hc::cli

#endif  // HC_CLIENT_REPORT_H_
