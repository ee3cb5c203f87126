// packd.v1.Generation's requests parse with a diagnosis (proto/request_parsing.h).
#pragma once

#include "packd/v1/generation.pb.h"
#include "proto/request_parsing.h"

// Generate is server-streaming: its request has traits of its own. Tokenize
// and Detokenize are unary (SerializationTraits<MessageLite>).
PACKD_DIAGNOSE_REQUEST_PARSING(packd::v1::GenerateRequest);
