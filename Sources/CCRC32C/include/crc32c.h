#ifndef GPS_CRC32C_H
#define GPS_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Extends a CRC32C (Castagnoli) checksum with `length` bytes. Start with 0.
/// Uses the SSE4.2 `crc32` instruction when the CPU has it, else a table-driven version.
uint32_t gps_crc32c_extend(uint32_t crc, const void *data, size_t length);

#endif
