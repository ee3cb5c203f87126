#include "server/generation_service.h"

#include <atomic>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "engine/detokenize.h"
#include "engine/tokenizer/utf8.h"
#include "server/auth.h"
#include "server/request_log.h"

namespace packd::server {
namespace {

constexpr int kDefaultMaxTokens = 256;

packd::v1::FinishReason ToProto(engine::FinishReason r) {
  switch (r) {
    case engine::FinishReason::kLength:
      return packd::v1::FINISH_REASON_LENGTH;
    case engine::FinishReason::kStop:
      return packd::v1::FINISH_REASON_STOP;
    default:
      return packd::v1::FINISH_REASON_UNSPECIFIED;
  }
}

double Seconds(absl::Time from, absl::Time to) {
  if (from == absl::InfinitePast() || to == absl::InfinitePast()) return 0;
  return absl::ToDoubleSeconds(to - from);
}

std::atomic<uint64_t> request_counter{0};

// Why a request's stream ends early on the client's side: its deadline
// passed (gRPC also marks such a call cancelled, so the deadline is checked
// first), or it cancelled or went away. gRPC's deadline timer may end the
// call a little before deadline() reads as passed on this clock (seen: ~1 ms),
// so a call that ends within kDeadlineSlack of its deadline counts as expired.
constexpr std::chrono::milliseconds kDeadlineSlack{50};

absl::Status ClientGone(const grpc::ServerContext& context, absl::string_view cancelled) {
  if (context.deadline() <= std::chrono::system_clock::now() + kDeadlineSlack) {
    return absl::DeadlineExceededError("the request's deadline passed");
  }
  return absl::CancelledError(cancelled);
}

// A model name as a log field: as sent when short, else its start (a name
// is at most 128 characters; an unknown one may be megabytes).
std::string LoggedModelName(absl::string_view name) {
  constexpr size_t kMax = 128;
  if (name.size() <= kMax) return std::string(name);
  return absl::StrCat(name.substr(0, kMax), "... (", name.size(), " bytes)");
}

// Refuses a text prompt longer than the model tokenizes, before tokenizing.
absl::Status CheckPromptBytes(const LoadedModel& model, absl::string_view field,
                              absl::string_view text) {
  const uint64_t limit = model.max_prompt_bytes();
  if (limit == 0 || text.size() <= limit) return absl::OkStatus();
  return absl::OutOfRangeError(absl::StrCat(
      field, ": ", text.size(), " bytes is more than model '", model.spec().name,
      "' accepts (max_prompt_bytes ", limit,
      model.spec().max_prompt_bytes != 0
          ? ", from the config"
          : absl::StrCat(": its context of ", model.engine().max_context(),
                         " tokens times its longest token; set models[].max_prompt_bytes to "
                         "change it"),
      ")"));
}

// A Chat as the chat template sees it: the messages as a JSON array of
// {"role", "content", ...} (OpenAI's shape; tool calls' "arguments" given as
// a JSON string become the object it spells, as vLLM passes them, since
// templates print them with tojson), and the render options.
absl::Status ChatToTemplateInput(const packd::v1::Chat& chat, nlohmann::ordered_json* messages,
                                 engine::chat::ChatRenderOptions* options) {
  // Ordered: a template's tojson prints keys in the order the client sent
  // them, as Python's dicts keep them.
  using json = nlohmann::ordered_json;
  if (chat.messages().empty()) return absl::InvalidArgumentError("chat.messages: empty");
  const auto parse = [](const std::string& text, absl::string_view field) -> absl::StatusOr<json> {
    json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(field, ": not valid JSON"));
    return j;
  };
  *messages = json::array();
  for (int i = 0; i < chat.messages_size(); ++i) {
    const packd::v1::ChatMessage& m = chat.messages(i);
    const std::string where = absl::StrCat("chat.messages[", i, "]");
    if (m.role().empty()) return absl::InvalidArgumentError(absl::StrCat(where, ".role: required"));
    json message = {{"role", m.role()},
                    {"content", m.has_content() ? json(m.content()) : json(nullptr)}};
    if (!m.name().empty()) message["name"] = m.name();
    if (!m.tool_call_id().empty()) message["tool_call_id"] = m.tool_call_id();
    if (!m.reasoning_content().empty()) message["reasoning_content"] = m.reasoning_content();
    if (!m.tool_calls_json().empty()) {
      const std::string field = absl::StrCat(where, ".tool_calls_json");
      ASSIGN_OR_RETURN(json calls, parse(m.tool_calls_json(), field));
      if (!calls.is_array()) return absl::InvalidArgumentError(absl::StrCat(field, ": not an array"));
      for (json& call : calls) {
        if (!call.is_object()) {
          return absl::InvalidArgumentError(absl::StrCat(field, ": each tool call is an object"));
        }
        if (call.contains("function") && call["function"].is_object()) {
          json& fn = call["function"];
          if (fn.contains("arguments") && fn["arguments"].is_string()) {
            json args = json::parse(fn["arguments"].get<std::string>(), nullptr, false);
            if (args.is_object()) fn["arguments"] = std::move(args);
          }
        }
      }
      message["tool_calls"] = std::move(calls);
    }
    messages->push_back(std::move(message));
  }
  options->template_name = chat.template_name();
  options->add_generation_prompt =
      chat.has_add_generation_prompt() ? chat.add_generation_prompt() : true;
  options->extra_context = json::object();
  if (!chat.template_kwargs_json().empty()) {
    ASSIGN_OR_RETURN(json kwargs, parse(chat.template_kwargs_json(), "chat.template_kwargs_json"));
    if (!kwargs.is_object()) {
      return absl::InvalidArgumentError("chat.template_kwargs_json: not a JSON object");
    }
    options->extra_context = std::move(kwargs);
  }
  if (!chat.tools_json().empty()) {
    ASSIGN_OR_RETURN(json tools, parse(chat.tools_json(), "chat.tools_json"));
    if (!tools.is_array()) return absl::InvalidArgumentError("chat.tools_json: not a JSON array");
    options->extra_context["tools"] = std::move(tools);
  }
  return absl::OkStatus();
}

// The bytes of a Chat's text, bounded like a text prompt's before rendering.
uint64_t ChatBytes(const packd::v1::Chat& chat) {
  uint64_t n = chat.tools_json().size() + chat.template_kwargs_json().size();
  for (const packd::v1::ChatMessage& m : chat.messages()) {
    n += m.role().size() + m.content().size() + m.name().size() + m.tool_call_id().size() +
         m.tool_calls_json().size() + m.reasoning_content().size();
  }
  return n;
}

// Renders a Chat with the model's template and tokenizes it as Hugging Face
// does (engine::Engine::TokenizeChat). `rendered` (may be null) receives the
// prompt text.
absl::StatusOr<std::vector<engine::TokenId>> RenderChat(const LoadedModel& model,
                                                        const engine::Engine& engine,
                                                        const packd::v1::Chat& chat,
                                                        std::string* rendered) {
  const uint64_t limit = model.max_prompt_bytes();
  if (const uint64_t bytes = ChatBytes(chat); limit != 0 && bytes > limit) {
    return absl::OutOfRangeError(absl::StrCat("chat: ", bytes,
                                              " bytes of messages is more than model '",
                                              model.spec().name, "' accepts (max_prompt_bytes ",
                                              limit, ")"));
  }
  nlohmann::ordered_json messages;
  engine::chat::ChatRenderOptions options;
  RETURN_IF_ERROR(ChatToTemplateInput(chat, &messages, &options));
  ASSIGN_OR_RETURN(std::string text, engine.RenderChat(messages, options));
  RETURN_IF_ERROR(CheckPromptBytes(model, "the rendered chat prompt", text));
  ASSIGN_OR_RETURN(std::vector<engine::TokenId> ids, engine.TokenizeChat(text));
  if (rendered != nullptr) *rendered = std::move(text);
  return ids;
}

}  // namespace

absl::Status GenerationService::Acquire(const ServerConfig::Tenant& tenant) {
  absl::MutexLock lock(&mu_);
  TenantState& t = tenants_[tenant.name];
  if (tenant.max_concurrent_requests > 0 && t.in_flight >= tenant.max_concurrent_requests) {
    return absl::ResourceExhaustedError(
        absl::StrCat("tenant '", tenant.name, "' is at its limit of ",
                     tenant.max_concurrent_requests, " concurrent requests"));
  }
  if (tenant.tokens_per_minute > 0) {
    const double cap = static_cast<double>(tenant.tokens_per_minute);
    const absl::Time now = absl::Now();
    if (t.refilled == absl::InfinitePast()) {
      t.bucket = cap;
    } else {
      t.bucket = std::min(cap, t.bucket + cap * absl::ToDoubleMinutes(now - t.refilled));
    }
    t.refilled = now;
    if (t.bucket <= 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("tenant '", tenant.name, "' used its quota of ", tenant.tokens_per_minute,
                       " tokens per minute; retry in ",
                       static_cast<int>(std::ceil(-t.bucket / cap * 60.0 + 0.5)), " s"));
    }
  }
  ++t.in_flight;
  return absl::OkStatus();
}

void GenerationService::ReleaseSlot(const ServerConfig::Tenant& tenant, uint64_t tokens) {
  absl::MutexLock lock(&mu_);
  TenantState& t = tenants_[tenant.name];
  --t.in_flight;
  if (tenant.tokens_per_minute > 0) t.bucket -= static_cast<double>(tokens);
}

absl::StatusOr<ModelLease> GenerationService::ModelFor(const ServerConfig::Tenant& tenant,
                                                       const std::string& name,
                                                       const GenerateSink* sink) const {
  if (name.empty()) return absl::InvalidArgumentError("model: required");
  // A tenant learns nothing of a model it may not use, and loads none.
  RETURN_IF_ERROR(registry_.Get(name).status());
  if (!tenant.Allows(name)) {
    return absl::PermissionDeniedError(
        absl::StrCat("tenant '", tenant.name, "' may not use model '", name, "'"));
  }
  // A model that is not on its device is loaded (or woken from the host
  // cache) while the request waits, as long as a queued one would.
  ModelRegistry::AcquireOptions wait;
  wait.deadline = absl::Now() + absl::FromChrono(config_.queue.max_wait);
  if (sink != nullptr) wait.cancelled = [sink] { return sink->Cancelled(); };
  absl::StatusOr<ModelLease> lease = registry_.Acquire(name, wait);
  if (!lease.ok() && lease.status().code() == absl::StatusCode::kCancelled && sink != nullptr) {
    return sink->Gone("the client cancelled the request while its model loaded");
  }
  return lease;
}

namespace {

// A gRPC server stream as a GenerateSink.
class GrpcSink final : public GenerateSink {
 public:
  GrpcSink(grpc::ServerContext& context, grpc::ServerWriter<packd::v1::GenerateResponse>& writer)
      : context_(context), writer_(writer) {}
  bool Write(const packd::v1::GenerateResponse& response) override {
    return writer_.Write(response);
  }
  bool Cancelled() const override {
    return context_.IsCancelled() || context_.deadline() <= std::chrono::system_clock::now();
  }
  absl::Status Gone(absl::string_view why) const override { return ClientGone(context_, why); }

 private:
  grpc::ServerContext& context_;
  grpc::ServerWriter<packd::v1::GenerateResponse>& writer_;
};

}  // namespace

grpc::Status GenerationService::Generate(grpc::ServerContext* context,
                                         const packd::v1::GenerateRequest* request,
                                         grpc::ServerWriter<packd::v1::GenerateResponse>* writer) {
  GrpcSink sink(*context, *writer);
  return ToGrpc(Serve(CredentialsOf(*context), *request, sink, nullptr));
}

absl::Status GenerationService::Serve(const Credentials& credentials,
                                      const packd::v1::GenerateRequest& request,
                                      GenerateSink& sink, std::string* request_id_out) {
  const absl::Time arrival = absl::Now();
  const std::string request_id = absl::StrCat("req-", ++request_counter);
  if (request_id_out != nullptr) *request_id_out = request_id;
  Outcome outcome;
  std::string tenant_name;
  absl::Status s;
  absl::StatusOr<const ServerConfig::Tenant*> tenant = Authenticate(credentials, config_);
  if (!tenant.ok()) {
    s = tenant.status();
  } else {
    tenant_name = (*tenant)->name;
    s = Acquire(**tenant);
    if (s.ok()) {
      s = RunGenerate(request, sink, **tenant, request_id, arrival, &outcome);
      ReleaseSlot(**tenant, outcome.prompt_tokens + outcome.generated);
    }
  }
  Record(request_id, request.model(), tenant_name, s, outcome,
         absl::ToDoubleSeconds(absl::Now() - arrival));
  return s;
}

void GenerationService::Record(const std::string& request_id, std::string_view model,
                               const std::string& tenant, const absl::Status& s,
                               const Outcome& outcome, double total_seconds) {
  // Metric labels come only from configured or loaded models, never from
  // whatever a client sends.
  const std::string_view model_label =
      registry_.Knows(model) ? model : std::string_view(Metrics::kUnknownModel);
  if (metrics_) {
    metrics_->RequestFinished(model_label, tenant, s.code(), outcome.finish, outcome.prompt_tokens,
                              outcome.generated, total_seconds);
    if (outcome.prefix_cache) {
      metrics_->PrefixCacheLookup(model_label, outcome.prompt_tokens, outcome.cached_prompt_tokens);
    }
  }
  RequestLogEntry entry;
  entry.request_id = request_id;
  entry.tenant = tenant;
  entry.model = LoggedModelName(absl::string_view(model.data(), model.size()));
  entry.code = s.code();
  entry.error = std::string(s.message());
  entry.finish_reason = std::string(engine::FinishReasonName(outcome.finish));
  entry.prompt_tokens = outcome.prompt_tokens;
  entry.cached_prompt_tokens = outcome.cached_prompt_tokens;
  entry.generated_tokens = outcome.generated;
  entry.queue_seconds = Seconds(outcome.times.arrival, outcome.times.started);
  entry.ttft_seconds = Seconds(outcome.times.arrival, outcome.times.first_token);
  entry.total_seconds = total_seconds;
  LogRequest(entry);
}

void GenerationService::RecordRefused(const Credentials& credentials,
                                      const absl::Status& status) {
  absl::StatusOr<const ServerConfig::Tenant*> tenant = Authenticate(credentials, config_);
  Record(absl::StrCat("req-", ++request_counter), /*model=*/"",
         tenant.ok() ? (*tenant)->name : "", status, Outcome(), 0);
}

absl::Status GenerationService::RunGenerate(const packd::v1::GenerateRequest& request,
                                            GenerateSink& sink, const ServerConfig::Tenant& tenant,
                                            const std::string& request_id, absl::Time arrival,
                                            Outcome* outcome) {
  uint64_t* prompt_tokens = &outcome->prompt_tokens;
  uint64_t* generated = &outcome->generated;
  engine::FinishReason* finish = &outcome->finish;
  // Held until the request ends: the model is not evicted under it.
  ASSIGN_OR_RETURN(ModelLease model, ModelFor(tenant, request.model(), &sink));
  // The instances share one tokenizer and chat template: the first
  // tokenizes, then the prompt picks the instance (PickInstance).
  const engine::Engine& front = model->engine();
  engine::GenerationRequest g;
  switch (request.prompt_case()) {
    case packd::v1::GenerateRequest::kText: {
      if (request.text().empty()) return absl::InvalidArgumentError("text: the prompt is empty");
      RETURN_IF_ERROR(CheckPromptBytes(*model, "text", request.text()));
      ASSIGN_OR_RETURN(g.prompt, front.Tokenize(request.text(),
                                                /*parse_special=*/!request.split_special_tokens()));
      break;
    }
    case packd::v1::GenerateRequest::kTokenIds:
      g.prompt.assign(request.token_ids().ids().begin(), request.token_ids().ids().end());
      if (g.prompt.empty()) return absl::InvalidArgumentError("token_ids: the prompt is empty");
      break;
    case packd::v1::GenerateRequest::kChat: {
      ASSIGN_OR_RETURN(g.prompt, RenderChat(*model, front, request.chat(), nullptr));
      break;
    }
    default:
      return absl::InvalidArgumentError("prompt: set text, token_ids or chat");
  }
  const packd::v1::SamplingParams& sp = request.sampling();
  if (sp.has_temperature()) g.params.temperature = sp.temperature();
  if (sp.has_top_k()) g.params.top_k = sp.top_k();
  if (sp.has_top_p()) g.params.top_p = sp.top_p();
  if (sp.has_seed()) g.params.seed = sp.seed();
  if (request.max_tokens() > static_cast<uint32_t>(INT32_MAX)) {
    return absl::InvalidArgumentError("max_tokens: too large");
  }
  g.params.max_tokens =
      request.max_tokens() == 0 ? kDefaultMaxTokens : static_cast<int>(request.max_tokens());
  g.params.stop.assign(request.stop().begin(), request.stop().end());
  g.params.stop_token_ids.assign(request.stop_token_ids().begin(), request.stop_token_ids().end());
  g.params.ignore_eos = request.ignore_eos();
  g.params.logprobs = request.logprobs();
  if (request.priority() < -10 || request.priority() > 10) {
    return absl::InvalidArgumentError("priority: must be in [-10, 10]");
  }
  *prompt_tokens = g.prompt.size();
  // Prefix caching: on unless the model's config or the request turns it
  // off; per_tenant keeps the tenant's blocks to its own requests.
  g.cache_prompt = !request.has_cache_prompt() || request.cache_prompt();
  if (model->spec().prefix_cache == PrefixCacheMode::kPerTenant) g.cache_salt = tenant.name;
  const bool prefix_cache = g.cache_prompt && model->spec().engine.prefix_caching;
  ModelInstance& instance = model->PickInstance(g.prompt, g.cache_salt, prefix_cache);

  ASSIGN_OR_RETURN(std::shared_ptr<RequestHandle> handle,
                   instance.Submit(std::move(g), tenant.name, request.priority()));
  // From the request's arrival: queue time and TTFT include any wait for
  // the model to load.
  auto times = [&handle, arrival] {
    RequestTimes t = handle->times();
    t.arrival = arrival;
    return t;
  };
  const bool stream = request.stream();
  packd::v1::GenerateResponse pending;  // non-streaming: everything accumulates here
  absl::Time last_token = absl::InfinitePast();
  // The client is checked at least every 50 ms, also while tokens keep
  // coming (a non-streamed request writes nothing until its end).
  constexpr absl::Duration kCancelPoll = absl::Milliseconds(50);
  absl::Time last_check = absl::Now();
  for (;;) {
    std::optional<RequestEvent> e = handle->Next(kCancelPoll);
    outcome->times = times();
    if (!e || absl::Now() - last_check >= kCancelPoll) {
      last_check = absl::Now();
      if (sink.Cancelled()) {
        instance.Cancel(handle->id());
        return sink.Gone("the client cancelled the request");
      }
      if (!e) continue;
    }
    if (!e->status.ok()) {
      // Before anything was written the status is the RPC's; after, it still
      // is (errors never travel inside the stream).
      return e->status;
    }
    const absl::Time now = absl::Now();
    if (!e->output.tokens.empty()) {
      if (metrics_) {
        if (last_token == absl::InfinitePast()) {
          const RequestTimes t = times();
          metrics_->ObserveQueueTime(request.model(), Seconds(t.arrival, t.started));
          metrics_->ObserveTimeToFirstToken(request.model(), Seconds(t.arrival, now));
        } else {
          metrics_->ObserveInterTokenLatency(request.model(),
                                             absl::ToDoubleSeconds(now - last_token));
        }
      }
      last_token = now;
    }
    *generated += e->output.tokens.size();
    if (e->output.cached_prompt_tokens >= 0) {
      outcome->prefix_cache = prefix_cache;
      outcome->cached_prompt_tokens = static_cast<uint64_t>(e->output.cached_prompt_tokens);
    }
    packd::v1::GenerateResponse msg;
    packd::v1::GenerateResponse& out = stream ? msg : pending;
    out.set_request_id(request_id);
    out.mutable_text()->append(e->output.text);
    for (engine::TokenId t : e->output.tokens) out.add_token_ids(t);
    for (float lp : e->output.logprobs) out.add_logprobs(lp);
    if (e->final) {
      *finish = e->output.finish;
      out.set_finish_reason(ToProto(e->output.finish));
      out.mutable_usage()->set_prompt_tokens(static_cast<uint32_t>(*prompt_tokens));
      out.mutable_usage()->set_completion_tokens(static_cast<uint32_t>(*generated));
      out.mutable_usage()->set_cached_prompt_tokens(
          static_cast<uint32_t>(outcome->cached_prompt_tokens));
      const RequestTimes t = times();
      packd::v1::Timings* tm = out.mutable_timings();
      tm->set_queue_seconds(Seconds(t.arrival, t.started));
      tm->set_time_to_first_token_seconds(Seconds(t.arrival, t.first_token));
      tm->set_total_seconds(Seconds(t.arrival, t.finished));
      const double decode = Seconds(t.first_token, t.finished);
      tm->set_decode_tokens_per_second(decode > 0 && *generated > 1 ? (*generated - 1) / decode
                                                                    : 0);
    }
    if (stream || e->final) {
      if (!sink.Write(out)) {
        if (!e->final) instance.Cancel(handle->id());
        return sink.Gone("the client went away");
      }
    }
    if (e->final) break;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> GenerationService::ModelsFor(
    const Credentials& credentials) const {
  ASSIGN_OR_RETURN(const ServerConfig::Tenant* tenant, Authenticate(credentials, config_));
  std::vector<std::string> out;
  for (const ModelStatus& m : registry_.List()) {
    if (tenant->Allows(m.spec.name)) out.push_back(m.spec.name);
  }
  return out;
}

absl::StatusOr<GenerationService::ModelTokenizer> GenerationService::TokenizerFor(
    const Credentials& credentials, const std::string& name) const {
  ASSIGN_OR_RETURN(const ServerConfig::Tenant* tenant, Authenticate(credentials, config_));
  ModelTokenizer out;
  ASSIGN_OR_RETURN(out.model, ModelFor(*tenant, name, nullptr));
  out.tokenizer = out.model->engine().tokenizer();
  if (out.tokenizer == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat("model '", name, "' has no tokenizer"));
  }
  return out;
}

grpc::Status GenerationService::Tokenize(grpc::ServerContext* context,
                                         const packd::v1::TokenizeRequest* request,
                                         packd::v1::TokenizeResponse* response) {
  return ToGrpc(Tokenize(CredentialsOf(*context), *request, response));
}

absl::Status GenerationService::Tokenize(const Credentials& credentials,
                                         const packd::v1::TokenizeRequest& request,
                                         packd::v1::TokenizeResponse* response) {
  ASSIGN_OR_RETURN(ModelTokenizer t, TokenizerFor(credentials, request.model()));
  std::vector<engine::TokenId> ids;
  if (request.has_chat()) {
    if (!request.text().empty()) {
      return absl::InvalidArgumentError("text: not with chat (send one of them)");
    }
    ASSIGN_OR_RETURN(ids, RenderChat(*t.model, t.model->engine(), request.chat(),
                                     response->mutable_rendered_prompt()));
  } else {
    RETURN_IF_ERROR(CheckPromptBytes(*t.model, "text", request.text()));
    ASSIGN_OR_RETURN(ids, t.tokenizer->Encode(request.text(), request.add_special_tokens(),
                                              /*parse_special=*/!request.split_special_tokens()));
  }
  for (engine::TokenId id : ids) {
    response->add_token_ids(id);
    absl::StatusOr<std::string> piece = t.tokenizer->Piece(id);
    // A GGUF vocabulary entry may be bytes that are not UTF-8.
    response->add_pieces(piece.ok() ? engine::ReplaceInvalidUtf8(*piece) : "");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> GenerationService::TokenTexts(
    const Credentials& credentials, const std::string& model,
    const std::vector<int32_t>& ids) const {
  ASSIGN_OR_RETURN(ModelTokenizer t, TokenizerFor(credentials, model));
  std::vector<std::string> texts;
  texts.reserve(ids.size());
  for (int32_t id : ids) {
    // The token's own bytes, as it continues a text (" upon", not the
    // "upon" that decoding it alone gives); maybe part of a character.
    ASSIGN_OR_RETURN(std::string bytes, t.tokenizer->TokenBytes(id, /*include_special=*/true));
    texts.push_back(std::move(bytes));
  }
  return texts;
}

grpc::Status GenerationService::Detokenize(grpc::ServerContext* context,
                                           const packd::v1::DetokenizeRequest* request,
                                           packd::v1::DetokenizeResponse* response) {
  absl::StatusOr<ModelTokenizer> t = TokenizerFor(CredentialsOf(*context), request->model());
  if (!t.ok()) return ToGrpc(t.status());
  absl::StatusOr<std::string> text =
      engine::Detokenize(*t->tokenizer, {request->token_ids().begin(), request->token_ids().end()},
                         /*include_special=*/!request->skip_special_tokens(), "token_ids");
  if (!text.ok()) return ToGrpc(text.status());
  *response->mutable_text() = *std::move(text);
  return grpc::Status::OK;
}

}  // namespace packd::server
