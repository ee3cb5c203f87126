// Status propagation helpers used at every module boundary.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PACKD_CONCAT_INNER_(a, b) a##b
#define PACKD_CONCAT_(a, b) PACKD_CONCAT_INNER_(a, b)

// Returns from the enclosing function if `expr` (an absl::Status) is not OK.
#define RETURN_IF_ERROR(expr)                      \
  do {                                             \
    ::absl::Status packd_status_ = (expr);         \
    if (!packd_status_.ok()) return packd_status_; \
  } while (0)

// ASSIGN_OR_RETURN(lhs, expr): evaluates `expr` (an absl::StatusOr<T>); on error
// returns its status, otherwise moves the value into `lhs` (which may declare).
#define ASSIGN_OR_RETURN(lhs, expr) \
  PACKD_ASSIGN_OR_RETURN_IMPL_(PACKD_CONCAT_(packd_statusor_, __LINE__), lhs, expr)
#define PACKD_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return std::move(tmp).status();     \
  lhs = std::move(tmp).value()
