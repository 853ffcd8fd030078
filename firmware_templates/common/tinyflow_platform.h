// What the application needs from the board: a byte stream to the host, time, the arena's memory.
// One implementation per framework (ESP-IDF, Arduino); the rest of the firmware is shared.
#ifndef TINYFLOW_PLATFORM_H_
#define TINYFLOW_PLATFORM_H_

#include <stddef.h>
#include <stdint.h>

void tf_platform_init(void);
// Read what has arrived, waiting at most a few milliseconds; returns the number of bytes.
size_t tf_platform_read(uint8_t* buf, size_t cap);
void tf_platform_write(const uint8_t* data, size_t len);
// A human-readable line for whoever watches the serial monitor (the harness shows it as a device log).
void tf_platform_log(const char* line);
uint64_t tf_platform_micros(void);
// CPU cycles (wrapping 32-bit counter); 0 when the chip has none.
uint32_t tf_platform_cycles(void);
uint32_t tf_platform_cpu_mhz(void);
uint32_t tf_platform_boot_id(void);
// What the firmware was built with, for HELLO: the ESP-IDF version (at run time) and the Arduino core's;
// "none" where the framework is not there.
const char* tf_platform_idf_version(void);
const char* tf_platform_arduino_core_version(void);
// 16-byte aligned memory for the tensor arena, in PSRAM when asked; NULL when there is not enough.
uint8_t* tf_platform_alloc_arena(size_t bytes, int psram);

#endif  // TINYFLOW_PLATFORM_H_
