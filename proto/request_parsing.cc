#include "proto/request_parsing.h"

#include <cstdint>
#include <map>
#include <vector>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/stubs/common.h"
#include "google/protobuf/wire_format_lite.h"

namespace packd::proto {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::internal::WireFormatLite;

// Nested messages deeper than this are not examined (protobuf's own
// recursion limit is 100).
constexpr int kMaxDepth = 100;

std::string Malformed(const std::string& path, int offset) {
  return (path.empty() ? std::string() : path + ": ") + "malformed protobuf at byte " +
         std::to_string(offset);
}

// The first problem in `bytes`, a serialized `type` that `path` names ("" at
// the top), or "" when none is found.
std::string Diagnose(const Descriptor& type, std::string_view bytes, const std::string& path,
                     int depth) {
  if (depth > kMaxDepth) return "";
  google::protobuf::io::CodedInputStream in(reinterpret_cast<const uint8_t*>(bytes.data()),
                                            static_cast<int>(bytes.size()));
  std::map<int, int> occurrences;  // field number -> values seen (repeated fields)
  for (;;) {
    const int offset = in.CurrentPosition();
    const uint32_t tag = in.ReadTag();
    if (tag == 0) {
      return static_cast<size_t>(in.CurrentPosition()) == bytes.size() ? ""
                                                                         : Malformed(path, offset);
    }
    const FieldDescriptor* field = type.FindFieldByNumber(WireFormatLite::GetTagFieldNumber(tag));
    const bool nested = field != nullptr &&
                        (field->type() == FieldDescriptor::TYPE_STRING ||
                         field->type() == FieldDescriptor::TYPE_MESSAGE) &&
                        WireFormatLite::GetTagWireType(tag) ==
                            WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
    if (!nested) {
      if (!WireFormatLite::SkipField(&in, tag)) return Malformed(path, offset);
      continue;
    }
    uint32_t length = 0;
    std::string value;
    if (!in.ReadVarint32(&length) || !in.ReadString(&value, static_cast<int>(length))) {
      return Malformed(path, offset);
    }
    std::string name = path.empty() ? field->name() : path + "." + field->name();
    if (field->is_repeated()) name += "[" + std::to_string(occurrences[field->number()]++) + "]";
    if (field->type() == FieldDescriptor::TYPE_STRING) {
      // protobuf's own check, the one that refused the parse.
      const int valid = google::protobuf::internal::UTF8SpnStructurallyValid(value);
      if (static_cast<size_t>(valid) < value.size()) {
        return name + ": not valid UTF-8 at byte " + std::to_string(valid) +
               " (a string field must be UTF-8)";
      }
    } else if (std::string inner = Diagnose(*field->message_type(), value, name, depth + 1);
               !inner.empty()) {
      return inner;
    }
  }
}

}  // namespace

std::string DiagnoseParseFailure(const Descriptor& type, std::string_view bytes) {
  return Diagnose(type, bytes, "", 0);
}

grpc::Status ParseRequest(grpc::ByteBuffer* buffer, google::protobuf::Message* message) {
  if (buffer == nullptr) return grpc::Status(grpc::StatusCode::INTERNAL, "No payload");
  const grpc::ByteBuffer kept(*buffer);  // shares the slices; parsing clears `buffer`
  grpc::Status status =
      grpc::GenericDeserialize<grpc::ProtoBufferReader, google::protobuf::Message>(buffer, message);
  if (status.ok()) return status;
  std::vector<grpc::Slice> slices;
  std::string bytes;
  if (kept.Dump(&slices).ok()) {
    for (const grpc::Slice& s : slices) {
      bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
  }
  std::string why = DiagnoseParseFailure(*message->GetDescriptor(), bytes);
  if (why.empty()) why = "it does not parse";
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "the request is not a valid " + message->GetDescriptor()->full_name() + ": " +
                          why);
}

}  // namespace packd::proto
