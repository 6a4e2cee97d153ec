// TLS and bearer token through the real client, and server limits.
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "client/remote_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/server.h"
#include "tests/testutil/model_util.h"
#include "tests/testutil/paths.h"
#include "tests/testutil/status_matchers.h"

namespace hc {
namespace {

using ::hc::testing::IsOk;
using ::hc::testing::StatusIs;
using ::testing::HasSubstr;

server::ServerOptions BaseOptions(const std::string& dir) {
  server::ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.metrics_address = "127.0.0.1:0";
  o.jobs.spool_dir = dir + "/spool";
  o.jobs.sync = false;
  o.jobs.log = [](const std::string&) {};
  return o;
}

TEST(ServerSecurityTest, TlsAndToken) {
  const std::string dir = testing::ScratchDir("server_tls");
  // A self-signed certificate for 127.0.0.1 made with the openssl command line tool.
  const std::string cmd = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 ",
      "-addext subjectAltName=IP:127.0.0.1 -keyout ", dir, "/key.pem -out ", dir, "/cert.pem 2>/dev/null");
  if (std::system(cmd.c_str()) != 0) GTEST_SKIP() << "openssl cannot make a test certificate here";
  server::ServerOptions o = BaseOptions(dir);
  o.tls_cert_file = dir + "/cert.pem";
  o.tls_key_file = dir + "/key.pem";
  o.auth_token = "tok";
  HC_ASSERT_OK_AND_ASSIGN(auto server, server::Server::Start(o));
  const std::string model = testing::ModelPath("fmnist-cnn-f32.safetensors");

  client::RemoteOptions c;
  c.server = server->address();
  c.tls_ca_file = dir + "/cert.pem";
  c.token = "tok";
  c.attempts = 1;
  HC_ASSERT_OK_AND_ASSIGN(auto client, client::RemoteClient::Connect(c));
  EXPECT_THAT(client->Compress(model, dir + "/a.hyc", {}), IsOk());

  c.token = "";
  HC_ASSERT_OK_AND_ASSIGN(auto no_token, client::RemoteClient::Connect(c));
  EXPECT_THAT(no_token->List(), StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("missing bearer token")));

  c.token = "tok";
  c.tls_ca_file = "";  // plaintext against a TLS server fails
  c.unary_timeout_seconds = 3;
  HC_ASSERT_OK_AND_ASSIGN(auto plain, client::RemoteClient::Connect(c));
  EXPECT_THAT(plain->List(), StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
}

TEST(ServerSecurityTest, QueueFullIsResourceExhausted) {
  const std::string dir = testing::ScratchDir("server_limits");
  server::ServerOptions o = BaseOptions(dir);
  o.jobs.max_running_jobs = 1;
  o.jobs.max_queued_jobs = 1;
  HC_ASSERT_OK_AND_ASSIGN(auto server, server::Server::Start(o));
  // Two uploads held open: one running, one queued; a third is refused.
  server::JobRequest ra, rb;
  ra.model_name = "a";
  rb.model_name = "b";
  HC_ASSERT_OK_AND_ASSIGN(auto a, server->jobs().StartUpload(ra));
  HC_ASSERT_OK_AND_ASSIGN(auto b, server->jobs().StartUpload(rb));
  client::RemoteOptions c;
  c.server = server->address();
  HC_ASSERT_OK_AND_ASSIGN(auto client, client::RemoteClient::Connect(c));
  EXPECT_THAT(client->Compress(testing::ModelPath("fmnist-cnn-f32.safetensors"), dir + "/x.hyc", {}),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("queue is full")));
  a.reset();
  b.reset();
  EXPECT_THAT(client->Compress(testing::ModelPath("fmnist-cnn-f32.safetensors"), dir + "/y.hyc", {}), IsOk());
}

}  // namespace
}  // namespace hc
