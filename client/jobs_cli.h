// Remote mode of the hyperc CLI: `compress --server` and `hyperc jobs ...`.
#ifndef HC_CLIENT_JOBS_CLI_H_
#define HC_CLIENT_JOBS_CLI_H_

#include <string>

#include "client/cli_util.h"
#include "client/remote_client.h"

namespace hc::cli {

/// Remote connection flags (--server, --token-file, --tls-ca), gathered while parsing.
struct RemoteFlags {
  std::string server, token_file, tls_ca;
  /// --server-input: IN is read by the server in place (made absolute against this directory).
  bool server_input = false;
  /// --server-output: OUT is written by the server in place (made absolute likewise).
  bool server_output = false;
  /// Consumes one of the flags at the current argument. Errors: missing value.
  absl::StatusOr<bool> Take(Args& args);
  absl::StatusOr<std::unique_ptr<client::RemoteClient>> Connect() const;
};

/// `hyperc compress IN -o OUT --server ...`: the same artifact as local mode.
int CompressRemote(const std::string& input, const std::string& output,
                   const CompressOptions& options, const RemoteFlags& remote, bool quiet);

/// `hyperc jobs submit|watch|get|list|cancel|fetch|delete ...`.
int Jobs(Args& args);

}  // namespace hc::cli

#endif  // HC_CLIENT_JOBS_CLI_H_
