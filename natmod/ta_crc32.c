/*
 * CRC-32 (IEEE 802.3; reflected, polynomial 0xEDB88320, initial and final xor
 * 0xFFFFFFFF): the checksum of .tam model files, the same value as zlib.crc32 and
 * binascii.crc32.
 *
 * crc_out = ta_crc32(data, n, crc_in) continues a running checksum, so a file can be
 * checked in chunks while it streams from flash. Half a byte at a time with a
 * 16-entry table: 64 bytes of rodata instead of 1 KB.
 */
#include "ta_kernels.h"

static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu,
    0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t ta_crc32(const uint8_t *data, size_t n, uint32_t crc) {
    crc = ~crc;
    while (n--) {
        crc ^= *data++;
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
        crc = (crc >> 4) ^ crc_nibble[crc & 15u];
    }
    return ~crc;
}
