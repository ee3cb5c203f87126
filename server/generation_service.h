// packd.v1.Generation over the model registry (proto/packd/v1/generation.proto).
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
#include "server/config.h"
#include "server/metrics.h"
#include "server/model_registry.h"

namespace packd::server {

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

 private:
  // The model, if the tenant may use it and it is serving.
  absl::StatusOr<std::shared_ptr<LoadedModel>> ModelFor(const ServerConfig::Tenant& tenant,
                                                        const std::string& name) const;
  // A model's tokenizer for Tokenize and Detokenize: the caller authenticated
  // and the model checked as for Generate. `model` keeps `tokenizer` alive.
  struct ModelTokenizer {
    std::shared_ptr<LoadedModel> model;
    const engine::Tokenizer* tokenizer = nullptr;
  };
  absl::StatusOr<ModelTokenizer> TokenizerFor(const grpc::ServerContext& context,
                                              const std::string& name) const;
  // What one Generate call did, for the metrics and the log line.
  struct Outcome {
    uint64_t prompt_tokens = 0;
    uint64_t generated = 0;
    engine::FinishReason finish = engine::FinishReason::kNone;
    RequestTimes times;
  };
  absl::Status RunGenerate(grpc::ServerContext* context, const packd::v1::GenerateRequest& request,
                           grpc::ServerWriter<packd::v1::GenerateResponse>* writer,
                           const ServerConfig::Tenant& tenant, const std::string& request_id,
                           Outcome* outcome);
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
