#pragma once
// CRC-32C (Castagnoli, the checksum of iSCSI, ext4 and SSE 4.2's crc32 instruction), computed
// eight bytes at a time from tables built at compile time. Checkpoints carry it over their tensors
// and metadata, so a file changed after it was written is refused instead of loaded.
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace loopgrad::runtime {

namespace detail {

/// tables[k][b]: the CRC of byte b followed by k zero bytes (slicing by eight).
constexpr std::array<std::array<std::uint32_t, 256>, 8> crc32c_tables() {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t b = 0; b < 256; ++b) {
    std::uint32_t c = b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    t[0][b] = c;
  }
  for (std::size_t k = 1; k < 8; ++k)
    for (std::size_t b = 0; b < 256; ++b) t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xFFu];
  return t;
}
inline constexpr auto crc32c_table = crc32c_tables();

}  // namespace detail

/// Continues the CRC-32C `crc` over `size` bytes (start with 0): crc32c(crc32c(0, a), b) is the
/// CRC of a followed by b.
inline std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) {
  const auto& t = detail::crc32c_table;
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (; size >= 8; size -= 8, p += 8) {
    std::uint64_t word;
    std::memcpy(&word, p, 8);  // little-endian: byte 0 is the low byte
    word ^= crc;
    crc = t[7][word & 0xFF] ^ t[6][(word >> 8) & 0xFF] ^ t[5][(word >> 16) & 0xFF] ^ t[4][(word >> 24) & 0xFF] ^
          t[3][(word >> 32) & 0xFF] ^ t[2][(word >> 40) & 0xFF] ^ t[1][(word >> 48) & 0xFF] ^ t[0][word >> 56];
  }
  for (; size > 0; --size, ++p) crc = (crc >> 8) ^ t[0][(crc ^ *p) & 0xFFu];
  return ~crc;
}

}  // namespace loopgrad::runtime
