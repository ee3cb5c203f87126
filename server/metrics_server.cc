#include "server/metrics_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/text_serializer.h"
#include "server/config_strings.h"

namespace packd::server {
namespace {

constexpr size_t kMaxRequestBytes = 16 << 10;
constexpr int kIoTimeoutSeconds = 5;

std::string ErrnoMessage(int err) { return std::error_code(err, std::generic_category()).message(); }

// Writes all of `data`; false on error or timeout.
bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

std::string Response(std::string_view status, std::string_view content_type,
                     std::string_view body, bool head, std::string_view extra_headers = "") {
  // (std::string: Debian's absl::string_view is not std::string_view.)
  std::string out = absl::StrCat("HTTP/1.1 ", std::string(status), "\r\nContent-Type: ",
                                 std::string(content_type), "\r\nContent-Length: ", body.size(),
                                 "\r\n", std::string(extra_headers), "Connection: close\r\n\r\n");
  if (!head) out.append(body);
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(std::string_view address,
                                                                    const Metrics& metrics) {
  if (address.empty()) return absl::InvalidArgumentError("metrics: empty listen address");
  const std::string where =
      absl::StrCat("metrics: cannot serve HTTP on \"", std::string(address), "\": ");
  std::string host, port;
  if (absl::Status s = SplitAddress(address, where, &host, &port); !s.ok()) return s;

  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
  if (host.empty()) hints.ai_family = AF_INET;
  addrinfo* found = nullptr;
  if (const int err =
          getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &found);
      err != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, "host \"", host, "\" is not an IP address: ", gai_strerror(err)));
  }
  const int fd = socket(found->ai_family, found->ai_socktype | SOCK_CLOEXEC, found->ai_protocol);
  if (fd < 0) {
    const int err = errno;
    freeaddrinfo(found);
    return absl::UnavailableError(absl::StrCat(where, "socket: ", ErrnoMessage(err)));
  }
  // SO_REUSEADDR lets a restarted server rebind while old connections sit in
  // TIME_WAIT; it does not let two listeners share a port on Linux.
  const int one = 1;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const int bound = bind(fd, found->ai_addr, found->ai_addrlen);
  const int bind_errno = errno;
  freeaddrinfo(found);
  if (bound != 0 || listen(fd, 64) != 0) {
    const int err = bound != 0 ? bind_errno : errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat(where, ErrnoMessage(err)));
  }
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat(where, "getsockname: ", ErrnoMessage(err)));
  }
  const int bound_port =
      local.ss_family == AF_INET6
          ? ntohs(reinterpret_cast<const sockaddr_in6*>(&local)->sin6_port)
          : ntohs(reinterpret_cast<const sockaddr_in*>(&local)->sin_port);
  int wake[2];
  if (pipe2(wake, O_CLOEXEC) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat(where, "pipe: ", ErrnoMessage(err)));
  }
  std::unique_ptr<MetricsServer> server(
      new MetricsServer(fd, wake[0], wake[1], bound_port, metrics.collectable()));
  server->thread_ = std::thread([raw = server.get()] { raw->Serve(); });
  return server;
}

MetricsServer::MetricsServer(int listen_fd, int wake_read_fd, int wake_write_fd, int port,
                             std::weak_ptr<prometheus::Collectable> collectable)
    : listen_fd_(listen_fd),
      wake_read_fd_(wake_read_fd),
      wake_write_fd_(wake_write_fd),
      port_(port),
      collectable_(std::move(collectable)) {}

MetricsServer::~MetricsServer() {
  const char byte = 0;
  while (write(wake_write_fd_, &byte, 1) < 0 && errno == EINTR) {
  }
  if (thread_.joinable()) thread_.join();
  close(listen_fd_);
  close(wake_read_fd_);
  close(wake_write_fd_);
}

void MetricsServer::Serve() {
  for (;;) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_read_fd_, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;  // cannot happen with valid descriptors; nothing to serve then
    }
    if (fds[1].revents != 0) return;
    if ((fds[0].revents & POLLIN) == 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;  // the client went away, or out of descriptors: next poll
    timeval timeout{kIoTimeoutSeconds, 0};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    Answer(fd);
    // Lingering close: closing with unread request bytes would reset the
    // connection and could discard the response before the client reads it.
    // Signal the end, then drain what the client still sends (bounded).
    shutdown(fd, SHUT_WR);
    char sink[4096];
    for (size_t drained = 0; drained < kMaxRequestBytes * 4;) {
      const ssize_t n = recv(fd, sink, sizeof(sink), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      drained += static_cast<size_t>(n);
    }
    close(fd);
  }
}

void MetricsServer::Answer(int fd) const {
  std::string request;
  char buf[4096];
  while (request.find("\r\n\r\n") == std::string::npos) {
    if (request.size() >= kMaxRequestBytes) {
      SendAll(fd, Response("431 Request Header Fields Too Large", "text/plain", "", false));
      return;
    }
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // closed, timed out or failed: nothing to answer
    request.append(buf, static_cast<size_t>(n));
  }
  // Request line: METHOD SP TARGET SP VERSION.
  const std::string_view line = std::string_view(request).substr(0, request.find("\r\n"));
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || !line.substr(sp2 + 1).starts_with("HTTP/1.")) {
    SendAll(fd, Response("400 Bad Request", "text/plain", "malformed request line\n", false));
    return;
  }
  const std::string_view method = line.substr(0, sp1);
  std::string_view path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  const bool head = method == "HEAD";
  if (method != "GET" && !head) {
    SendAll(fd, Response("405 Method Not Allowed", "text/plain", "only GET and HEAD\n", false,
                         "Allow: GET, HEAD\r\n"));
    return;
  }
  if (path == "/metrics") {
    std::string body;
    if (const std::shared_ptr<prometheus::Collectable> collectable = collectable_.lock()) {
      body = prometheus::TextSerializer().Serialize(collectable->Collect());
    }
    SendAll(fd, Response("200 OK", "text/plain; version=0.0.4; charset=utf-8", body, head));
  } else if (path == "/") {
    SendAll(fd, Response("200 OK", "text/plain; charset=utf-8",
                         "packd: Prometheus metrics at /metrics\n", head));
  } else {
    SendAll(fd, Response("404 Not Found", "text/plain", "not found; try /metrics\n", head));
  }
}

}  // namespace packd::server
