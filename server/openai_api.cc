#include "server/openai_api.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <httplib.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <atomic>
#include <deque>
#include <optional>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "server/config_strings.h"
#include "server/openai_json.h"

namespace packd::server {
namespace {

using openai::Endpoint;

constexpr char kJson[] = "application/json";

void SendError(httplib::Response& res, const openai::HttpError& e) {
  res.status = e.status;
  res.set_content(e.body, kJson);
}
void SendError(httplib::Response& res, const absl::Status& status) {
  SendError(res, openai::ErrorFor(status));
}

// An error after which the connection is closed, for a request whose body
// was left unread (the rest would be read as the next request, or the worker
// would wait idle_timeout for one). The body goes through a content provider
// whose releaser runs once the response is written.
void SendErrorAndClose(const httplib::Request& req, httplib::Response& res,
                       openai::HttpError error);

Credentials CredentialsOf(const httplib::Request& req) {
  Credentials c;
  if (req.has_header("Authorization")) c.authorization = req.get_header_value("Authorization");
  if (req.has_header("x-api-key")) c.x_api_key = req.get_header_value("x-api-key");
  return c;
}

// The request's connection, to notice its client going away while nothing is
// written to it (queued, or generating a response that is not streamed).
//
// cpp-httplib 0.11 hands a handler no socket. The connection's socket stays
// open until the handler returns, so it is found once, by its addresses:
// TLS through the SSL object; plain TCP as the descriptor of this process
// whose local and peer ports and peer address are the request's. Not found
// (should not happen): nothing is watched and only failed writes end the
// request. A client that half-closes its side after the request (shutdown
// SHUT_WR; no HTTP client does) reads as gone.
class ConnectionWatch {
 public:
  explicit ConnectionWatch(const httplib::Request& req) : fd_(FindSocket(req)) {}

  // Makes the library close the connection: its next read sees end-of-file
  // (cpp-httplib 0.11 ignores a response's "Connection: close"). Only after
  // the response is written: the library writes nothing to a connection it
  // cannot read from.
  void StopReading() const {
    if (fd_ >= 0) shutdown(fd_, SHUT_RD);
  }

  bool PeerClosed() const {
    if (fd_ < 0) return false;
    pollfd p{fd_, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }

 private:
  static int FindSocket(const httplib::Request& req) {
    if (req.ssl != nullptr) return SSL_get_fd(req.ssl);
    DIR* dir = opendir("/proc/self/fd");
    if (dir == nullptr) return -1;
    int found = -1;
    while (dirent* e = readdir(dir)) {
      int fd = -1;
      if (!absl::SimpleAtoi(e->d_name, &fd) || fd == dirfd(dir)) continue;
      if (Matches(fd, req)) {
        found = fd;
        break;
      }
    }
    closedir(dir);
    return found;
  }

  // The port and numeric address of a socket address (IPv4 or IPv6).
  static bool PortAndAddress(const sockaddr_storage& a, int* port, std::string* address) {
    char text[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET) {
      const auto& in = reinterpret_cast<const sockaddr_in&>(a);
      *port = ntohs(in.sin_port);
      inet_ntop(AF_INET, &in.sin_addr, text, sizeof(text));
    } else if (a.ss_family == AF_INET6) {
      const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
      *port = ntohs(in6.sin6_port);
      inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof(text));
    } else {
      return false;
    }
    *address = text;
    return true;
  }

  static bool Matches(int fd, const httplib::Request& req) {
    sockaddr_storage local{}, peer{};
    socklen_t local_len = sizeof(local), peer_len = sizeof(peer);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_len) != 0) return false;
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len) != 0) return false;
    int local_port = 0, peer_port = 0;
    std::string local_address, peer_address;
    if (!PortAndAddress(local, &local_port, &local_address)) return false;
    if (!PortAndAddress(peer, &peer_port, &peer_address)) return false;
    return local_port == req.local_port && peer_port == req.remote_port &&
           peer_address == req.remote_addr;
  }

  const int fd_;
};

void SendErrorAndClose(const httplib::Request& req, httplib::Response& res,
                       openai::HttpError error) {
  res.status = error.status;
  res.set_header("Connection", "close");
  auto watch = std::make_shared<ConnectionWatch>(req);
  auto body = std::make_shared<std::string>(std::move(error.body));
  res.set_content_provider(
      body->size(), kJson,
      [body](size_t offset, size_t length, httplib::DataSink& sink) {
        return sink.write(body->data() + offset, length);
      },
      [watch](bool) { watch->StopReading(); });
}

// A non-streamed request's sink: keeps the one final response.
class CollectingSink final : public GenerateSink {
 public:
  explicit CollectingSink(const ConnectionWatch& watch) : watch_(watch) {}
  bool Write(const packd::v1::GenerateResponse& response) override {
    response_ = response;
    return true;
  }
  bool Cancelled() const override { return watch_.PeerClosed(); }
  const packd::v1::GenerateResponse& response() const { return response_; }

 private:
  const ConnectionWatch& watch_;
  packd::v1::GenerateResponse response_;
};

// A streamed request: Serve runs on `thread_` and queues its responses; the
// HTTP worker takes them (Next) and writes them as events. Shared by the
// handler and the response's content provider; Finish() (from the provider's
// releaser or the handler) makes Serve end and joins its thread.
class StreamExchange final : public GenerateSink {
 public:
  // Starts Serve. `watch` must outlive Finish().
  StreamExchange(GenerationService& service, Credentials credentials,
                 packd::v1::GenerateRequest request, const ConnectionWatch* watch)
      : watch_(watch) {
    thread_ = std::thread(
        [this, &service, credentials = std::move(credentials), request = std::move(request)] {
          std::string id;
          const absl::Status s = service.Serve(credentials, request, *this, &id);
          absl::MutexLock lock(&mu_);
          done_ = s;
        });
  }
  ~StreamExchange() override { Finish(); }

  bool Write(const packd::v1::GenerateResponse& response) override {
    absl::MutexLock lock(&mu_);
    if (gone_) return false;
    queue_.push_back(response);
    return true;
  }
  bool Cancelled() const override {
    {
      absl::MutexLock lock(&mu_);
      if (gone_) return true;
    }
    absl::MutexLock lock(&watch_mu_);
    return watch_ != nullptr && watch_->PeerClosed();
  }

  // What the stream has next.
  struct Item {
    std::optional<packd::v1::GenerateResponse> response;
    std::optional<absl::Status> done;  // Serve returned (and the queue is empty)
  };
  // Waits up to `timeout` for a response or the end; neither: a timeout.
  Item Next(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &StreamExchange::Ready), timeout);
    Item item;
    if (!queue_.empty()) {
      item.response = std::move(queue_.front());
      queue_.pop_front();
    } else if (done_.has_value()) {
      item.done = done_;
    }
    return item;
  }
  // Waits for the first response or the end, leaving it queued; the end's
  // status when Serve ended without writing.
  std::optional<absl::Status> FirstOrEnd() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &StreamExchange::Ready));
    if (queue_.empty()) return done_;
    return std::nullopt;
  }
  // The client is gone (or the response is done): Serve stops at its next
  // check; waits for it. The connection is no longer watched.
  void Finish() {
    {
      absl::MutexLock lock(&mu_);
      gone_ = true;
    }
    {
      absl::MutexLock lock(&watch_mu_);
      watch_ = nullptr;
    }
    if (thread_.joinable()) thread_.join();
  }

 private:
  // A response is queued or Serve has returned.
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !queue_.empty() || done_.has_value();
  }

  mutable absl::Mutex mu_;
  std::deque<packd::v1::GenerateResponse> queue_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Status> done_ ABSL_GUARDED_BY(mu_);
  bool gone_ ABSL_GUARDED_BY(mu_) = false;
  mutable absl::Mutex watch_mu_;
  const ConnectionWatch* watch_ ABSL_GUARDED_BY(watch_mu_);
  std::thread thread_;
};

int64_t UnixSeconds() { return absl::ToUnixSeconds(absl::Now()); }

// The OpenSSL error queue as text (and emptied).
std::string OpenSslErrors() {
  std::string out;
  while (const unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

}  // namespace

struct OpenAiApi::Impl {
  ServerConfig::Http config;
  GenerationService* service = nullptr;
  std::unique_ptr<httplib::Server> http;
  int port = 0;
  std::thread listener;
  std::atomic<bool> draining{false};
  // Streamed responses still being written (their Serve may have ended).
  std::atomic<int> open_streams{0};
  absl::Mutex stop_mu;
  bool stopped ABSL_GUARDED_BY(stop_mu) = false;

  // Reads the body within read_timeout and max_body_bytes; false (and `res`
  // set to the error) when it could not.
  bool ReadBody(const httplib::Request& req, const httplib::ContentReader& reader,
                httplib::Response& res, std::string* body) const {
    const absl::Time deadline = absl::Now() + absl::FromChrono(config.read_timeout);
    bool too_large = false, too_slow = false;
    const bool ok = reader([&](const char* data, size_t size) {
      if (body->size() + size > config.max_body_bytes) {
        too_large = true;
        return false;
      }
      if (absl::Now() > deadline) {
        too_slow = true;
        return false;
      }
      body->append(data, size);
      return true;
    });
    if (ok) return true;
    openai::HttpError error;
    absl::Status refused;
    if (too_large || res.status == 413) {
      refused = absl::ResourceExhaustedError(
          absl::StrCat("the request body is larger than the server's limit of ",
                       config.max_body_bytes, " bytes (http.max_body_bytes)"));
      error = openai::HttpLayerError(413, refused.message());
    } else if (too_slow || res.status == -1 || res.status == 400 || res.status == 408) {
      refused = absl::DeadlineExceededError(
          absl::StrCat("the request body did not arrive within ",
                       absl::FormatDuration(absl::FromChrono(config.read_timeout)),
                       " (http.read_timeout)"));
      error = openai::HttpLayerError(408, refused.message());
    } else {
      refused = absl::InvalidArgumentError("the request body could not be read");
      error = openai::HttpLayerError(400, refused.message());
    }
    service->RecordRefused(CredentialsOf(req), refused);
    SendErrorAndClose(req, res, std::move(error));
    return false;
  }

  bool RefuseWhileDraining(httplib::Response& res) const {
    if (!draining.load()) return false;
    SendError(res, absl::UnavailableError("the server is shutting down; retry elsewhere"));
    return true;
  }

  void Generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res,
                const httplib::ContentReader& reader) {
    std::string body;
    if (!ReadBody(req, reader, res, &body)) return;
    if (RefuseWhileDraining(res)) return;
    const Credentials credentials = CredentialsOf(req);
    // Who is asking first, as gRPC does: an unknown key learns nothing about
    // the body.
    if (absl::StatusOr<const ServerConfig::Tenant*> tenant = service->Authenticated(credentials);
        !tenant.ok()) {
      service->RecordRefused(credentials, tenant.status());
      return SendError(res, tenant.status());
    }
    absl::StatusOr<openai::ParsedRequest> parsed = openai::ParseRequest(endpoint, body);
    if (!parsed.ok()) {
      service->RecordRefused(credentials, parsed.status());
      return SendError(res, parsed.status());
    }
    openai::ResponseMeta meta;
    meta.endpoint = endpoint;
    meta.model = parsed->request.model();
    meta.created = UnixSeconds();
    meta.logprobs = parsed->request.logprobs();
    if (!parsed->request.stream()) {
      const ConnectionWatch watch(req);
      CollectingSink sink(watch);
      std::string request_id;
      const absl::Status s = service->Serve(credentials, parsed->request, sink, &request_id);
      if (!s.ok()) return SendError(res, s);
      meta.id = openai::ResponseId(endpoint, request_id);
      absl::StatusOr<openai::TokenTexts> texts = TokenTexts(credentials, meta, sink.response());
      if (!texts.ok()) return SendError(res, texts.status());
      res.set_content(openai::CompletionJson(meta, sink.response(), *texts), kJson);
      return;
    }
    Stream(credentials, std::move(*parsed), std::move(meta), req, res);
  }

  absl::StatusOr<openai::TokenTexts> TokenTexts(const Credentials& credentials,
                                                const openai::ResponseMeta& meta,
                                                const packd::v1::GenerateResponse& r) const {
    if (!meta.logprobs || r.token_ids_size() == 0) return openai::TokenTexts();
    return service->TokenTexts(credentials, meta.model,
                               {r.token_ids().begin(), r.token_ids().end()});
  }

  void Stream(const Credentials& credentials, openai::ParsedRequest parsed,
              openai::ResponseMeta meta, const httplib::Request& req, httplib::Response& res) {
    // The watch lives as long as the exchange uses it: until the response
    // (and its provider) is released.
    auto watch = std::make_shared<ConnectionWatch>(req);
    auto exchange =
        std::make_shared<StreamExchange>(*service, credentials, parsed.request, watch.get());
    if (std::optional<absl::Status> end = exchange->FirstOrEnd()) {
      exchange->Finish();
      // Serve ended without a response: an error (an OK status with nothing
      // written does not happen; it would be an empty stream).
      if (!end->ok()) return SendError(res, *end);
    }
    struct State {
      bool first = true;
      packd::v1::Usage usage;
    };
    auto state = std::make_shared<State>();
    const bool include_usage = parsed.include_usage;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, exchange, state, meta, credentials, include_usage](size_t,
                                                                  httplib::DataSink& sink) mutable {
          StreamExchange::Item item = exchange->Next(absl::Seconds(1));
          if (item.response) {
            const packd::v1::GenerateResponse& r = *item.response;
            if (meta.id.empty()) meta.id = openai::ResponseId(meta.endpoint, r.request_id());
            absl::StatusOr<openai::TokenTexts> texts = TokenTexts(credentials, meta, r);
            std::string event = openai::ChunkEvent(
                meta, r, texts.ok() ? *texts : openai::TokenTexts(), state->first, include_usage);
            state->first = false;
            if (r.has_usage()) state->usage = r.usage();
            if (r.finish_reason() != packd::v1::FINISH_REASON_UNSPECIFIED && include_usage) {
              event += openai::UsageEvent(meta, state->usage);
            }
            return sink.write(event.data(), event.size());
          }
          if (item.done) {
            std::string end;
            if (!item.done->ok()) end = openai::ErrorEvent(*item.done);
            end += openai::kDoneEvent;
            if (!sink.write(end.data(), end.size())) return false;
            sink.done();
            return true;
          }
          return sink.is_writable();  // nothing yet: wait again
        },
        [this, exchange, watch](bool) {
          exchange->Finish();
          open_streams.fetch_sub(1);
        });
    open_streams.fetch_add(1);
  }

  void Models(const httplib::Request& req, httplib::Response& res, const std::string* only) {
    if (RefuseWhileDraining(res)) return;
    absl::StatusOr<std::vector<std::string>> models = service->ModelsFor(CredentialsOf(req));
    if (!models.ok()) return SendError(res, models.status());
    std::vector<std::string> names;
    for (std::string& m : *models) {
      if (only == nullptr || m == *only) names.push_back(std::move(m));
    }
    const int64_t created = UnixSeconds();
    if (only == nullptr) return res.set_content(openai::ModelsJson(names, created), kJson);
    if (names.empty()) {
      return SendError(res, absl::NotFoundError(absl::StrCat("model '", *only, "' not found")));
    }
    res.set_content(openai::ModelJson(names.front(), created), kJson);
  }

  void Route() {
    httplib::Server& s = *http;
    s.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res,
                                          const httplib::ContentReader& reader) {
      Generate(Endpoint::kChatCompletions, req, res, reader);
    });
    s.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res,
                                     const httplib::ContentReader& reader) {
      Generate(Endpoint::kCompletions, req, res, reader);
    });
    s.Get("/v1/models", [this](const httplib::Request& req, httplib::Response& res) {
      Models(req, res, nullptr);
    });
    s.Get("/v1/models/(.+)", [this](const httplib::Request& req, httplib::Response& res) {
      const std::string name = req.matches[1];
      Models(req, res, &name);
    });
    // The right path with the wrong method.
    auto not_allowed = [](const char* allow) {
      return [allow](const httplib::Request& req, httplib::Response& res) {
        res.set_header("Allow", allow);
        SendError(res, openai::HttpLayerError(405, absl::StrCat(req.method, " is not allowed on ",
                                                                req.path, " (use ", allow, ")")));
      };
    };
    for (const char* path : {"/v1/chat/completions", "/v1/completions"}) {
      s.Get(path, not_allowed("POST"));
      s.Put(path, not_allowed("POST"));
      s.Delete(path, not_allowed("POST"));
      s.Patch(path, not_allowed("POST"));
    }
    for (const char* path : {"/v1/models", "/v1/models/(.+)"}) {
      s.Post(path, not_allowed("GET"));
      s.Put(path, not_allowed("GET"));
      s.Delete(path, not_allowed("GET"));
      s.Patch(path, not_allowed("GET"));
    }
    // Anything the library itself refuses (unknown path, bad request line,
    // oversized body) gets OpenAI's error JSON too.
    s.set_error_handler(httplib::Server::HandlerWithResponse(
        [](const httplib::Request& req, httplib::Response& res) {
          if (!res.body.empty() || res.content_provider_) {
            return httplib::Server::HandlerResponse::Unhandled;
          }
          std::string message;
          switch (res.status) {
            case 404:
              message = absl::StrCat("no such endpoint: ", req.method, " ", req.path);
              break;
            case 413:
              message = "the request body is too large (http.max_body_bytes)";
              break;
            case 414:
              message = "the request URI is too long";
              break;
            default:
              message = absl::StrCat("the request could not be handled (HTTP ", res.status, ")");
          }
          SendError(res, openai::HttpLayerError(res.status, message));
          return httplib::Server::HandlerResponse::Handled;
        }));
    s.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr e) {
          std::string what = "internal error";
          try {
            if (e) std::rethrow_exception(e);
          } catch (const std::exception& ex) {
            what = ex.what();
          } catch (...) {
          }
          SendError(res, openai::HttpLayerError(500, what));
        });
  }
};

OpenAiApi::OpenAiApi(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

OpenAiApi::~OpenAiApi() { Stop(); }

int OpenAiApi::port() const { return impl_->port; }

void OpenAiApi::BeginDrain() { impl_->draining.store(true); }

void OpenAiApi::Stop() {
  {
    absl::MutexLock lock(&impl_->stop_mu);
    if (impl_->stopped) return;
    impl_->stopped = true;
  }
  impl_->draining.store(true);
  // The library cuts streams short once stopped: let those whose generation
  // ended finish writing first (a stalled client: at most its write timeout).
  const absl::Time deadline = absl::Now() + 2 * absl::FromChrono(impl_->config.read_timeout);
  while (impl_->open_streams.load() > 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  impl_->http->stop();
  if (impl_->listener.joinable()) impl_->listener.join();
}

absl::StatusOr<std::unique_ptr<OpenAiApi>> OpenAiApi::Start(const ServerConfig::Http& config,
                                                            GenerationService& service) {
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->service = &service;
  std::string host, port_text;
  RETURN_IF_ERROR(SplitAddress(config.listen, absl::StrCat("http.listen '", config.listen, "': "),
                               &host, &port_text));
  int port = 0;
  (void)absl::SimpleAtoi(port_text, &port);  // SplitAddress checked it
  if (config.tls) {
    const ServerConfig::Tls tls = *config.tls;
    std::string tls_error;
    auto server = std::make_unique<httplib::SSLServer>([&tls, &tls_error](SSL_CTX& ctx) {
      SSL_CTX_set_min_proto_version(&ctx, TLS1_2_VERSION);
      if (SSL_CTX_use_certificate_chain_file(&ctx, tls.cert_file.c_str()) != 1) {
        tls_error = absl::StrCat("http.tls.cert_file: ", OpenSslErrors());
        return false;
      }
      if (SSL_CTX_use_PrivateKey_file(&ctx, tls.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
          SSL_CTX_check_private_key(&ctx) != 1) {
        tls_error = absl::StrCat("http.tls.key_file: ", OpenSslErrors());
        return false;
      }
      if (!tls.client_ca_file.empty()) {
        if (SSL_CTX_load_verify_locations(&ctx, tls.client_ca_file.c_str(), nullptr) != 1) {
          tls_error = absl::StrCat("http.tls.client_ca_file: ", OpenSslErrors());
          return false;
        }
        SSL_CTX_set_client_CA_list(&ctx, SSL_load_client_CA_file(tls.client_ca_file.c_str()));
        SSL_CTX_set_verify(
            &ctx, SSL_VERIFY_PEER | (tls.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
            nullptr);
      }
      return true;
    });
    if (!server->is_valid()) return absl::InvalidArgumentError(tls_error);
    impl->http = std::move(server);
  } else {
    impl->http = std::make_unique<httplib::Server>();
  }
  httplib::Server& s = *impl->http;
  const size_t threads = static_cast<size_t>(config.threads);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  s.set_payload_max_length(config.max_body_bytes);
  s.set_read_timeout(config.read_timeout);
  s.set_write_timeout(config.read_timeout);
  s.set_keep_alive_timeout(
      std::chrono::duration_cast<std::chrono::seconds>(config.idle_timeout).count());
  s.set_keep_alive_max_count(1000);
  impl->Route();
  if (port == 0) {
    port = s.bind_to_any_port(host);
    if (port < 0) port = 0;
  } else if (!s.bind_to_port(host, port)) {
    port = 0;
  }
  if (port == 0) {
    return absl::UnavailableError(absl::StrCat("http.listen: cannot listen on '", config.listen,
                                               "' (address in use, or not local)"));
  }
  impl->port = port;
  Impl* raw = impl.get();
  impl->listener = std::thread([raw] { raw->http->listen_after_bind(); });
  return std::unique_ptr<OpenAiApi>(new OpenAiApi(std::move(impl)));
}

}  // namespace packd::server
