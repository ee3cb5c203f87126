// packd.v1.Models' methods are all unary: their requests parse through
// SerializationTraits<MessageLite>, specialized in proto/request_parsing.h.
#pragma once

#include "packd/v1/models.pb.h"
#include "proto/request_parsing.h"
