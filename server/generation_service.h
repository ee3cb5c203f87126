// packd.v1.Generation over the model registry (proto/packd/v1/generation.proto).
//
// The service is also the one admission path of every other front end (the
// OpenAI-compatible HTTP API): Serve runs one Generate whatever transport
// carries it, through the same authentication, tenant limits, quota, queue,
// metrics and request log.
//
// Each Generate call runs on a gRPC sync-server thread: it authenticates,
// submits the request to the least busy instance of the model, and relays
// the instance's events to the stream. Errors (bad fields, unknown model,
// queue full, context, ...) are returned as the RPC status before anything
// is written; client cancellation and deadlines cancel the sequence, which
// frees its KV blocks before the instance's next step.
#pragma once

#include <map>
#include <string>

#include "absl/synchronization/mutex.h"
#include "packd/v1/generation.grpc.pb.h"
#include "server/auth.h"
#include "server/config.h"
#include "server/metrics.h"
#include "server/model_registry.h"

namespace packd::server {

// Where one Generate call's responses go: a gRPC stream, an HTTP response.
class GenerateSink {
 public:
  virtual ~GenerateSink() = default;
  // Sends one response (every one when streaming, else the single final
  // one); false once the client is gone.
  virtual bool Write(const packd::v1::GenerateResponse& response) = 0;
  // Polled while the request waits for tokens: true once the client has
  // cancelled or gone away (the request is then cancelled at once).
  virtual bool Cancelled() const = 0;
  // The status a request the client abandoned ends with: Cancelled with
  // `why`, or DeadlineExceeded when the client's deadline passed.
  virtual absl::Status Gone(absl::string_view why) const { return absl::CancelledError(why); }
};

class GenerationService final : public packd::v1::Generation::Service {
 public:
  // All three must outlive the service. `metrics` may be null.
  GenerationService(const ServerConfig& config, ModelRegistry& registry, Metrics* metrics)
      : config_(config), registry_(registry), metrics_(metrics) {}

  grpc::Status Generate(grpc::ServerContext* context, const packd::v1::GenerateRequest* request,
                        grpc::ServerWriter<packd::v1::GenerateResponse>* writer) override;
  grpc::Status Tokenize(grpc::ServerContext* context, const packd::v1::TokenizeRequest* request,
                        packd::v1::TokenizeResponse* response) override;
  grpc::Status Detokenize(grpc::ServerContext* context, const packd::v1::DetokenizeRequest* request,
                          packd::v1::DetokenizeResponse* response) override;

  // One Generate from any transport: authenticates `credentials`, admits the
  // request under the tenant's limits, runs it, writes its responses to
  // `sink`, and records its metrics and log line. `request_id` (may be null)
  // receives the server's id for it as soon as it has one.
  absl::Status Serve(const Credentials& credentials, const packd::v1::GenerateRequest& request,
                     GenerateSink& sink, std::string* request_id);
  absl::Status Tokenize(const Credentials& credentials, const packd::v1::TokenizeRequest& request,
                        packd::v1::TokenizeResponse* response);
  // The bytes each of `ids` stands for in `model`'s tokenizer as it continues
  // a text (Tokenizer::TokenBytes: " upon"; special tokens as the text they
  // spell; maybe part of a UTF-8 character), for OpenAI's logprobs.
  // Authorized as Tokenize is.
  absl::StatusOr<std::vector<std::string>> TokenTexts(const Credentials& credentials,
                                                      const std::string& model,
                                                      const std::vector<int32_t>& ids) const;
  // A request a front end refused before Serve, so before its model was
  // known (a body that is not JSON, a field of the wrong type, too large, too
  // slow): its log line and metrics, as Serve records its own.
  void RecordRefused(const Credentials& credentials, const absl::Status& status);
  // The caller's tenant, or UNAUTHENTICATED (checked before anything else).
  absl::StatusOr<const ServerConfig::Tenant*> Authenticated(const Credentials& credentials) const {
    return Authenticate(credentials, config_);
  }
  // The names of the models the caller may use (in any state: a request
  // loads one that is not on its device), sorted, for listings.
  absl::StatusOr<std::vector<std::string>> ModelsFor(const Credentials& credentials) const;

 private:
  // The model, if the tenant may use it, ready on its device: loaded first
  // when it is not (waiting at most queue.max_wait, and while `sink`, if
  // any, is not cancelled).
  absl::StatusOr<ModelLease> ModelFor(const ServerConfig::Tenant& tenant, const std::string& name,
                                      const GenerateSink* sink) const;
  // A model's tokenizer for Tokenize and Detokenize: the caller authenticated
  // and the model checked as for Generate. `model` keeps `tokenizer` alive.
  struct ModelTokenizer {
    ModelLease model;
    const engine::Tokenizer* tokenizer = nullptr;
  };
  absl::StatusOr<ModelTokenizer> TokenizerFor(const Credentials& credentials,
                                              const std::string& name) const;
  // What one Generate call did, for the metrics and the log line.
  struct Outcome {
    uint64_t prompt_tokens = 0;
    uint64_t cached_prompt_tokens = 0;  // of prompt_tokens, from the prefix cache
    bool prefix_cache = false;          // the request used prefix caching
    uint64_t generated = 0;
    engine::FinishReason finish = engine::FinishReason::kNone;
    RequestTimes times;
  };
  // One request's metrics and log line.
  void Record(const std::string& request_id, std::string_view model, const std::string& tenant,
              const absl::Status& status, const Outcome& outcome, double total_seconds);
  absl::Status RunGenerate(const packd::v1::GenerateRequest& request, GenerateSink& sink,
                           const ServerConfig::Tenant& tenant, const std::string& request_id,
                           absl::Time arrival, Outcome* outcome);
  // Per-tenant admission: the concurrency limit and the tokens-per-minute
  // quota (a bucket of tokens_per_minute tokens refilled continuously; a
  // request is admitted while the bucket is positive and charged its prompt
  // and generated tokens when it ends).
  absl::Status Acquire(const ServerConfig::Tenant& tenant);
  void ReleaseSlot(const ServerConfig::Tenant& tenant, uint64_t tokens);

  struct TenantState {
    int64_t in_flight = 0;
    double bucket = 0;  // tokens available
    absl::Time refilled = absl::InfinitePast();
  };

  const ServerConfig& config_;
  ModelRegistry& registry_;
  Metrics* metrics_;
  absl::Mutex mu_;
  std::map<std::string, TenantState> tenants_ ABSL_GUARDED_BY(mu_);
};

}  // namespace packd::server
