// The "none" codec: the tensor's bytes unchanged. Used for dtypes the exponent
// codecs cannot code and for tensors that do not shrink; in the container a
// "none" tensor is an ordinary safetensors entry with its own dtype and shape.
#pragma once

#include "codec/tensor_codec.h"

namespace packd::codec {

// One component, "raw": the tensor's little-endian bytes.
const TensorCodec& NoneCodec();

}  // namespace packd::codec
