// The OpenAI-compatible HTTP API (DESIGN.md §6) on Debian's cpp-httplib:
//
//   POST /v1/chat/completions   chat.completion / SSE chat.completion.chunk
//   POST /v1/completions        text_completion (streamed or not)
//   GET  /v1/models             the models the caller's tenant may use
//   GET  /v1/models/{name}      one of them
//
// Every generation goes through GenerationService::Serve, the gRPC API's own
// admission path (API keys from "Authorization: Bearer" or "x-api-key",
// tenant limits and quota, model allow-lists, the instance queue, metrics,
// the request log). openai_json.h converts the JSON; this file carries it.
//
// Streaming: Serve runs on a thread of its own feeding a queue; the HTTP
// status is sent once the first response or the error is known, so an error
// before the first token is a real HTTP status with OpenAI's error JSON. An
// error after it arrives as a `data: {"error": ...}` event followed by
// `data: [DONE]`.
//
// Client disconnects: a request whose client closed its connection is
// cancelled at once, also while it waits in the queue or, not streamed,
// while it generates (the connection is watched for the peer's close;
// cpp-httplib 0.11 does not expose it, see ConnectionWatch in the .cc). A
// stream whose writes fail (or stall beyond read_timeout) is cancelled too.
//
// Limits (config `http:`): max_body_bytes (413), threads (connections served
// at once), read_timeout (each read of a request waits at most this; the
// body must arrive within it after the headers, else 408; also bounds a
// stalled response write), idle_timeout (idle keep-alive connections).
// Request lines and header lines are bounded by cpp-httplib (8 KiB each).
//
// Draining: after BeginDrain() new requests get 503; running ones continue
// until Stop(), which lets streams whose generation ended finish writing,
// closes the listener and waits for the workers (a worker on an idle
// keep-alive connection: up to idle_timeout).
//
// Thread safety: port(), BeginDrain() and Stop() may be called from any
// thread.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "server/config.h"
#include "server/generation_service.h"

namespace packd::server {

class OpenAiApi {
 public:
  // Binds `config.listen` (TLS when config.tls) and starts serving on
  // `config.threads` workers. `service` must outlive the returned object.
  // Unavailable when the address cannot be bound; InvalidArgument for bad
  // TLS files.
  static absl::StatusOr<std::unique_ptr<OpenAiApi>> Start(const ServerConfig::Http& config,
                                                          GenerationService& service);
  ~OpenAiApi();  // Stop()
  OpenAiApi(const OpenAiApi&) = delete;
  OpenAiApi& operator=(const OpenAiApi&) = delete;

  // The bound port.
  int port() const;
  // From now on new requests get 503 (the server is shutting down).
  void BeginDrain();
  // Closes the listener and waits for requests in progress to end (see
  // Draining above); Server::Shutdown ends their generation first. Idempotent.
  void Stop();

  struct Impl;

 private:
  explicit OpenAiApi(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace packd::server
