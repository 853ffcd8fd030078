// The real tinyflow_app.cc on the host: a platform layer that writes the protocol's frames to stdout, and a
// main that runs set-up (which announces HELLO), then serves the requests on stdin until it ends. Used by
// tests/test_app_setup.py.
#include <stdio.h>
#include <stdlib.h>

#include "tinyflow_app.h"
#include "tinyflow_platform.h"

void tf_platform_init(void) {}
size_t tf_platform_read(uint8_t* buf, size_t cap) { return fread(buf, 1, cap, stdin); }
void tf_platform_write(const uint8_t* data, size_t len) { fwrite(data, 1, len, stdout); }
void tf_platform_log(const char* line) { fprintf(stdout, "%s\r\n", line); }
uint64_t tf_platform_micros(void) { return 0; }
uint32_t tf_platform_cycles(void) { return 0; }
uint32_t tf_platform_cpu_mhz(void) { return 240; }
uint32_t tf_platform_boot_id(void) { return 1; }
const char* tf_platform_idf_version(void) { return "host-test"; }
const char* tf_platform_arduino_core_version(void) { return "none"; }
uint8_t* tf_platform_alloc_arena(size_t bytes, int) { return (uint8_t*)aligned_alloc(16, (bytes + 15) / 16 * 16); }

int main() {
  tf_platform_init();
  const int status = tf_app_setup();
  fprintf(stderr, "after set-up: stderr is the process's own again\n");
  while (!feof(stdin) && !ferror(stdin)) tf_app_poll();
  fflush(stdout);
  return status;
}
