#include "server/server.h"

#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "base/status_macros.h"
#include "engine/cuda/cuda_backend.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "server/generation_service.h"
#include "server/metrics.h"
#include "server/metrics_server.h"
#include "server/model_registry.h"
#include "server/models_service.h"
#include "server/openai_api.h"
#include "server/placement.h"
#include "server/request_log.h"

namespace packd::server {

struct Server::Impl {
  ServerConfig config;
  Placement placement;
  std::unique_ptr<ModelRegistry> registry;
  Metrics metrics;
  std::unique_ptr<MetricsServer> metrics_server;
  std::unique_ptr<GenerationService> generation;
  std::unique_ptr<ModelsService> models;
  std::unique_ptr<grpc::Server> grpc_server;
  std::unique_ptr<OpenAiApi> http;  // null: no http.listen
  int port = 0;
  absl::Time started = absl::Now();

  // Adds the batch-size observer to a model's instances.
  ModelSpec WithMetrics(ModelSpec spec) {
    spec.instance.on_step = [this, name = spec.name](int64_t tokens, int64_t sequences) {
      metrics.ObserveBatch(name, tokens, sequences);
    };
    return spec;
  }

  // Health: the services' status, and one "packd.model.NAME" per model
  // (configured, loaded or failed) saying whether it serves.
  void SyncHealth() {
    grpc::HealthCheckServiceInterface* health = grpc_server->GetHealthCheckService();
    absl::MutexLock lock(&mu);
    const bool serving = !shutting_down;
    health->SetServingStatus(serving);
    health->SetServingStatus("packd.v1.Generation", serving);
    health->SetServingStatus("packd.v1.Models", serving);
    std::set<std::string> names;
    for (const ModelStatus& m : registry->List()) {
      // A model not on its device serves too: a request loads it.
      names.insert(m.spec.name);
      health->SetServingStatus(kModelHealthPrefix + m.spec.name,
                               serving && m.state != ModelState::kDraining);
    }
    for (const FailedModel& f : registry->Failures()) {
      names.insert(f.name);
      health->SetServingStatus(kModelHealthPrefix + f.name, false);
    }
    for (const std::string& gone : health_models) {
      if (names.count(gone) == 0) health->SetServingStatus(kModelHealthPrefix + gone, false);
    }
    health_models.insert(names.begin(), names.end());
  }

  static constexpr char kModelHealthPrefix[] = "packd.model.";

  absl::Mutex mu;
  std::set<std::string> metric_models ABSL_GUARDED_BY(mu);  // models with gauges
  std::set<std::string> health_models ABSL_GUARDED_BY(mu);  // with a health status
  bool shutting_down ABSL_GUARDED_BY(mu) = false;
  bool stopped ABSL_GUARDED_BY(mu) = false;
};

namespace {

std::shared_ptr<grpc::ServerCredentials> GrpcCredentials(const ServerConfig& config) {
  if (!config.grpc.tls) return grpc::InsecureServerCredentials();
  // LoadServerConfig checked that the files exist; read errors fall back to
  // an empty PEM, which gRPC refuses at start.
  auto read = [](const std::filesystem::path& p) {
    std::ifstream in(p);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  grpc::SslServerCredentialsOptions options(
      config.grpc.tls->client_ca_file.empty()
          ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
          : (config.grpc.tls->require_client_cert
                 ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                 : GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY));
  if (!config.grpc.tls->client_ca_file.empty()) {
    options.pem_root_certs = read(config.grpc.tls->client_ca_file);
  }
  options.pem_key_cert_pairs.push_back(
      {read(config.grpc.tls->key_file), read(config.grpc.tls->cert_file)});
  return grpc::SslServerCredentials(options);
}

}  // namespace

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  Shutdown();
  impl_->metrics.SetCollectHook(nullptr);
}

int Server::port() const { return impl_->port; }
int Server::metrics_port() const {
  return impl_->metrics_server ? impl_->metrics_server->port() : 0;
}
int Server::http_port() const { return impl_->http ? impl_->http->port() : 0; }

absl::StatusOr<std::unique_ptr<Server>> Server::Start(ServerConfig config) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  const ServerConfig& c = impl->config;
  ConfigureLogging(c.logging);
  for (const ServerConfig::Device& d : c.devices) {
    DeviceSpec spec;
    spec.name = d.name;
    spec.kind = d.kind;
    spec.total_bytes = PhysicalMemoryBytes();
    if (d.kind == DeviceKind::kCuda) {
      // Built without CUDA, or no such device: refused here, naming it.
      absl::StatusOr<engine::CudaDeviceInfo> info = engine::QueryCudaDevice(d.index);
      if (!info.ok()) {
        return absl::FailedPreconditionError(absl::StrCat("devices: '", d.name, "' (cuda index ",
                                                          d.index, "): ", info.status().message()));
      }
      spec.total_bytes = info->total_bytes;
    }
    spec.budget_bytes = d.BudgetBytes(spec.total_bytes);
    RETURN_IF_ERROR(impl->placement.AddDevice(spec));
  }
  FleetOptions fleet;
  fleet.host_cache_bytes = c.host_cache_bytes;
  fleet.on_event = [raw_metrics = &impl->metrics](const ModelEvent& e) {
    raw_metrics->ModelEvent(e);
  };
  impl->registry = std::make_unique<ModelRegistry>(impl->placement, std::move(fleet));
  for (const ServerConfig::Model& m : c.models) {
    // at_start: loaded now (a start-up load never evicts another model);
    // on_demand: its files checked now, loaded by the first request.
    const ModelSpec spec = impl->WithMetrics(SpecFromConfig(c, m));
    const absl::Status loaded = m.load == LoadPolicy::kOnDemand
                                    ? impl->registry->Register(spec)
                                    : impl->registry->Load(spec, /*evict=*/false).status();
    if (loaded.ok()) continue;
    // By default a start-up failure ends the process (nothing would scrape
    // the counter); with `continue` the server starts without the model.
    if (c.on_model_load_failure == ModelLoadFailure::kExit) return loaded;
    LogError(absl::StrCat("model '", m.name, "' failed to load and is not served ",
                          "(on_model_load_failure: continue): ", loaded.ToString()));
    // (A failed load counted itself: ModelEvent.)
    if (m.load == LoadPolicy::kOnDemand) impl->metrics.ModelLoadFailed(m.name, loaded.code());
    impl->registry->RecordFailure({m.name, m.path, loaded});
  }
  if (!c.metrics.listen.empty()) {
    ASSIGN_OR_RETURN(impl->metrics_server, MetricsServer::Start(c.metrics.listen, impl->metrics));
  }
  Impl* raw = impl.get();
  impl->generation = std::make_unique<GenerationService>(c, *impl->registry, &impl->metrics);
  std::unique_ptr<Server> server(new Server(std::move(impl)));
  Server* self = server.get();
  raw->models = std::make_unique<ModelsService>(
      c, *raw->registry, raw->started, [raw] { raw->SyncHealth(); },
      [raw](ModelSpec spec) { return raw->WithMetrics(std::move(spec)); });

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(c.grpc.listen, GrpcCredentials(c), &raw->port);
  // A second server on a taken port must fail, not share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(static_cast<int>(c.grpc.max_receive_message_bytes));
  builder.SetMaxSendMessageSize(static_cast<int>(c.grpc.max_send_message_bytes));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(c.grpc.keepalive.time.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(c.grpc.keepalive.timeout.count()));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
                             c.grpc.keepalive.permit_without_calls ? 1 : 0);
  builder.RegisterService(raw->generation.get());
  builder.RegisterService(raw->models.get());
  raw->grpc_server = builder.BuildAndStart();
  if (raw->grpc_server == nullptr || raw->port == 0) {
    return absl::UnavailableError(
        absl::StrCat("grpc.listen: cannot listen on '", c.grpc.listen, "'"));
  }
  // The HTTP API shares the gRPC API's GenerationService: one admission path.
  if (!c.http.listen.empty()) {
    ASSIGN_OR_RETURN(raw->http, OpenAiApi::Start(c.http, *raw->generation));
  }
  raw->SyncHealth();
  // The gauges are computed when scraped: exact, never a stale copy.
  raw->metrics.SetCollectHook([self] { self->RefreshMetrics(); });
  return server;
}

void Server::RefreshMetrics() {
  Metrics& m = impl_->metrics;
  const std::vector<ModelStatus> models = impl_->registry->List();
  std::set<std::string> known;
  for (const ModelStatus& model : models) known.insert(model.spec.name);
  {
    absl::MutexLock lock(&impl_->mu);
    for (const std::string& gone : impl_->metric_models) {
      if (known.count(gone) == 0) m.RemoveModel(gone);
    }
    impl_->metric_models = known;
  }
  // A failure is forgotten once a model of that name registers.
  for (const std::string& name : known) m.SetModelFailed(name, false);
  for (const FailedModel& f : impl_->registry->Failures()) m.SetModelFailed(f.name, true);
  std::map<std::string, int64_t> resident_per_device;
  for (const DeviceInfo& d : impl_->placement.Devices()) resident_per_device[d.name] = 0;
  for (const ModelStatus& model : models) {
    const std::string& name = model.spec.name;
    const LoadedModel* r = model.resident.get();
    m.SetModelResident(name, r != nullptr);
    if (model.facts != nullptr) {
      m.SetModelWeights(name, model.facts->codec, model.facts->original_weight_bytes,
                        model.facts->stored_weight_bytes);
    }
    if (r == nullptr || r->instances().empty()) {
      m.SetRequests(name, 0, model.waiting_for_load);
      m.SetModelInstances(name, 0, model.spec.instances * model.spec.instance.max_queued);
      m.RemoveKvCache(name);
      continue;
    }
    ++resident_per_device[model.spec.device];
    m.SetRequests(name, r->running(), r->waiting() + model.waiting_for_load);
    const int64_t instances = static_cast<int64_t>(r->instances().size());
    m.SetModelInstances(name, instances, instances * model.spec.instance.max_queued);
    for (size_t i = 0; i < r->instances().size(); ++i) {
      const InstanceStats s = r->instances()[i]->stats();
      const uint64_t block_bytes =
          s.kv_blocks_total == 0 ? 0 : s.kv_bytes_total / static_cast<uint64_t>(s.kv_blocks_total);
      m.SetKvCache(name, static_cast<int>(i), block_bytes * s.kv_blocks_used, s.kv_bytes_total,
                   s.kv_blocks_cached);
    }
  }
  for (const DeviceInfo& d : impl_->placement.Devices()) {
    m.SetDeviceMemory(d.name, d.used);
    m.SetDeviceCapacity(d.name, d.total_bytes, d.budget_bytes);
    m.SetDeviceInstances(d.name, d.instances);
    m.SetDeviceDensity(d.name, d.density());
    m.SetDeviceResidentModels(d.name, resident_per_device[d.name]);
  }
  const HostCacheStatus host = impl_->registry->HostCache();
  m.SetHostCache(host.used_bytes, host.budget_bytes);
}

void Server::Shutdown() {
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->shutting_down) return;
    impl_->shutting_down = true;
  }
  if (impl_->grpc_server == nullptr) {  // Start failed before the port was bound
    absl::MutexLock lock(&impl_->mu);
    impl_->stopped = true;
    return;
  }
  impl_->SyncHealth();  // everything NOT_SERVING
  if (impl_->http) impl_->http->BeginDrain();
  impl_->registry->DrainAll();
  const absl::Time deadline = absl::Now() + absl::FromChrono(impl_->config.drain_timeout);
  auto in_flight = [this] {
    int64_t n = 0;
    for (const auto& m : impl_->registry->Resident()) n += m->in_flight();
    return n;
  };
  while (in_flight() > 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  for (const auto& m : impl_->registry->Resident()) {
    for (const auto& i : m->instances()) {
      i->CancelAll(absl::UnavailableError(absl::StrCat(
          "the server shut down before the request finished (drain_timeout ",
          absl::FormatDuration(absl::FromChrono(impl_->config.drain_timeout)), ")")));
    }
  }
  impl_->grpc_server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  if (impl_->http) impl_->http->Stop();
  absl::MutexLock lock(&impl_->mu);
  impl_->stopped = true;
}

void Server::Wait() {
  absl::MutexLock lock(&impl_->mu);
  auto stopped = [this]() ABSL_SHARED_LOCKS_REQUIRED(impl_->mu) { return impl_->stopped; };
  impl_->mu.Await(absl::Condition(&stopped));
}

}  // namespace packd::server
