#include "codec/dtype.h"

#include <array>
#include <utility>

namespace packd::codec {

namespace {
struct DTypeRow {
  DType type;
  std::string_view name;
  int size;
};
constexpr std::array<DTypeRow, 15> kDTypes{{
    {DType::kBool, "BOOL", 1},
    {DType::kU8, "U8", 1},
    {DType::kI8, "I8", 1},
    {DType::kU16, "U16", 2},
    {DType::kI16, "I16", 2},
    {DType::kU32, "U32", 4},
    {DType::kI32, "I32", 4},
    {DType::kU64, "U64", 8},
    {DType::kI64, "I64", 8},
    {DType::kF8E4M3, "F8_E4M3", 1},
    {DType::kF8E5M2, "F8_E5M2", 1},
    {DType::kF16, "F16", 2},
    {DType::kBF16, "BF16", 2},
    {DType::kF32, "F32", 4},
    {DType::kF64, "F64", 8},
}};
}  // namespace

std::string_view DTypeName(DType t) { return kDTypes[static_cast<size_t>(t)].name; }

int DTypeSize(DType t) { return kDTypes[static_cast<size_t>(t)].size; }

std::optional<DType> ParseDType(std::string_view name) {
  for (const DTypeRow& row : kDTypes) {
    if (row.name == name) return row.type;
  }
  return std::nullopt;
}

std::optional<FloatFormat> FloatFormatOf(DType t) {
  switch (t) {
    case DType::kBF16:
      return kBF16Format;
    case DType::kF16:
      return kF16Format;
    case DType::kF32:
      return kF32Format;
    default:
      return std::nullopt;
  }
}

}  // namespace packd::codec
