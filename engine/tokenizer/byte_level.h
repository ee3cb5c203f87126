// GPT-2's byte-to-unicode mapping, used by every byte-level BPE vocabulary
// (GPT-2, Llama 3, Qwen2): each byte is written as one printable character so
// that vocabulary entries are text ("Ġthe" is " the"). Printable Latin-1
// bytes map to themselves; the other 68 bytes map to U+0100.. in byte order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace packd::engine {

// The UTF-8 text of the character standing for `byte` (e.g. 0x20 -> "Ġ").
std::string_view ByteLevelChar(uint8_t byte);

// The byte that code point `cp` stands for, or -1 if it stands for none.
int ByteLevelByte(char32_t cp);

// Every byte of `bytes` written as its character.
std::string ByteLevelEncode(std::string_view bytes);

// The bytes a byte-level string stands for. A character outside the mapping
// (which a well-formed vocabulary does not contain) is kept as its own UTF-8
// bytes, and invalid UTF-8 is kept byte for byte. Returns whether every
// character was in the mapping.
bool ByteLevelDecode(std::string_view text, std::string* bytes);

}  // namespace packd::engine
