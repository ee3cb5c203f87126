// packd.v1.Models (proto/packd/v1/models.proto): model administration and
// the device memory report, for admin tenants only.
#pragma once

#include <functional>

#include "packd/v1/models.grpc.pb.h"
#include "server/config.h"
#include "server/model_registry.h"

namespace packd::server {

class ModelsService final : public packd::v1::Models::Service {
 public:
  // All must outlive the service. `on_change` (may be empty) runs after a
  // load or unload (the server refreshes its metrics there).
  // `decorate` (may be empty) adjusts the spec of a model loaded by
  // LoadModel (the server adds its metrics hooks). `on_load_failed` (may be
  // empty) is told of each LoadModel the registry refused, with the model's
  // name and why.
  ModelsService(const ServerConfig& config, ModelRegistry& registry, absl::Time started,
                std::function<void()> on_change, std::function<ModelSpec(ModelSpec)> decorate = {},
                std::function<void(const std::string&, const absl::Status&)> on_load_failed = {})
      : config_(config),
        registry_(registry),
        started_(started),
        on_change_(std::move(on_change)),
        decorate_(std::move(decorate)),
        on_load_failed_(std::move(on_load_failed)) {}

  grpc::Status ListModels(grpc::ServerContext* context, const packd::v1::ListModelsRequest* request,
                          packd::v1::ListModelsResponse* response) override;
  grpc::Status GetModel(grpc::ServerContext* context, const packd::v1::GetModelRequest* request,
                        packd::v1::ModelInfo* response) override;
  grpc::Status LoadModel(grpc::ServerContext* context, const packd::v1::LoadModelRequest* request,
                         packd::v1::ModelInfo* response) override;
  grpc::Status UnloadModel(grpc::ServerContext* context,
                           const packd::v1::UnloadModelRequest* request,
                           packd::v1::UnloadModelResponse* response) override;
  grpc::Status GetServerInfo(grpc::ServerContext* context,
                             const packd::v1::GetServerInfoRequest* request,
                             packd::v1::ServerInfo* response) override;

 private:
  absl::Status CheckAdmin(const grpc::ServerContext& context) const;

  const ServerConfig& config_;
  ModelRegistry& registry_;
  absl::Time started_;
  std::function<void()> on_change_;
  std::function<ModelSpec(ModelSpec)> decorate_;
  std::function<void(const std::string&, const absl::Status&)> on_load_failed_;
};

// The ModelSpec of a configured model (engine options, queue limit).
ModelSpec SpecFromConfig(const ServerConfig& config, const ServerConfig::Model& model);
void FillModelInfo(const ModelStatus& model, packd::v1::ModelInfo* info);

}  // namespace packd::server
