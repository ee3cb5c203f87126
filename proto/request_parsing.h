// Parsing gRPC requests so that a bad one says what is wrong.
//
// gRPC's protobuf serialization traits answer a request that does not parse
// with INTERNAL and an empty message; proto3 refuses a `string` field that is
// not valid UTF-8, so a prompt with one stray byte got exactly that. The
// traits below parse as gRPC's do and, when parsing fails, walk the bytes
// against the message's descriptor to name the cause: INVALID_ARGUMENT
// "text: not valid UTF-8 at byte 5 ..." (any string field, however deeply
// nested or repeated: "stop[1]", "sampling.x"), or a malformed message.
//
// gRPC's generated code parses a unary method's request through
// SerializationTraits<MessageLite> and a streaming method's through
// SerializationTraits<RequestType>, so both are specialized: MessageLite
// here, once, and each streaming request type by
// PACKD_DIAGNOSE_REQUEST_PARSING in its .proto file's header
// (packd/v1/*_requests.h). protoc's gRPC plugin includes that header in the
// generated *.grpc.pb.h (proto/CMakeLists.txt: additional_header_includes;
// every .proto file of this folder has one), so every translation unit that
// instantiates packd's handlers or stubs sees the specializations.
//
// gRPC's own libraries (health checking, reflection) keep the generic
// traits. Were the linker to pick one copy of the MessageLite member
// functions for both, either is correct: the diagnosing one parses exactly
// as the generic one and differs only in the status of a request that does
// not parse.
#pragma once

#include <string>
#include <string_view>

#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"

namespace packd::proto {

// Why `bytes`, a serialized `type`, does not parse: the path of the first
// string field that is not valid UTF-8 and the byte offset in it ("stop[1]:
// not valid UTF-8 at byte 0"), "malformed protobuf at byte N", or "" when
// neither is found.
std::string DiagnoseParseFailure(const google::protobuf::Descriptor& type, std::string_view bytes);

// Parses `buffer` into `message` as gRPC's traits do; on failure,
// INVALID_ARGUMENT with DiagnoseParseFailure's finding.
grpc::Status ParseRequest(grpc::ByteBuffer* buffer, google::protobuf::Message* message);

}  // namespace packd::proto

// Declares grpc::SerializationTraits for the request message type T (at
// global scope, once per type, before any gRPC code for T).
#define PACKD_DIAGNOSE_REQUEST_PARSING(T)                                                  \
  template <>                                                                              \
  class grpc::SerializationTraits<T, void> {                                               \
   public:                                                                                 \
    static grpc::Status Serialize(const grpc::protobuf::MessageLite& msg,                  \
                                  grpc::ByteBuffer* bb, bool* own_buffer) {                \
      return grpc::GenericSerialize<grpc::ProtoBufferWriter, T>(msg, bb, own_buffer);      \
    }                                                                                      \
    static grpc::Status Deserialize(grpc::ByteBuffer* buffer,                              \
                                    grpc::protobuf::MessageLite* msg) {                    \
      return ::packd::proto::ParseRequest(buffer, static_cast<T*>(msg));                   \
    }                                                                                      \
  }

// Unary methods' requests (and responses): a full Message gets the
// diagnosis, a lite one the generic parse.
template <>
class grpc::SerializationTraits<grpc::protobuf::MessageLite, void> {
 public:
  static grpc::Status Serialize(const grpc::protobuf::MessageLite& msg, grpc::ByteBuffer* bb,
                                bool* own_buffer) {
    return grpc::GenericSerialize<grpc::ProtoBufferWriter, grpc::protobuf::MessageLite>(
        msg, bb, own_buffer);
  }
  static grpc::Status Deserialize(grpc::ByteBuffer* buffer, grpc::protobuf::MessageLite* msg) {
    if (auto* full = dynamic_cast<google::protobuf::Message*>(msg)) {
      return ::packd::proto::ParseRequest(buffer, full);
    }
    return grpc::GenericDeserialize<grpc::ProtoBufferReader, grpc::protobuf::MessageLite>(buffer,
                                                                                       msg);
  }
};
