// grpc.health.v1's generated code sees the same unary parsing traits as
// packd.v1's (proto/request_parsing.h): one definition in the binary.
#pragma once

#include "proto/request_parsing.h"
