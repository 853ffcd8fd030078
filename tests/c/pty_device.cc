// A test device: tinyflow's real protocol module behind a pseudo-terminal, with a trivial, deterministic
// "model" (output = [sum of input bytes, input length, first byte, last byte]). Prints the pty path, then
// serves until killed. argv[1]: boot id; argv[2] "fail": a board whose AllocateTensors() failed, with the
// log TFLM prints then kept by the firmware's bounded set-up log.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <termios.h>
#include <unistd.h>

#include "tinyflow_protocol.h"

namespace {

int g_master = -1;
uint32_t g_invokes = 0;
uint8_t g_input[64];

void write_all(void*, const uint8_t* data, size_t len) {
  while (len) {
    ssize_t n = write(g_master, data, len);
    if (n <= 0) continue;
    data += n;
    len -= (size_t)n;
  }
}

const tf_tensor_info_t kTensors[2] = {
    {9, 2, {1, 16, 0, 0, 0, 0}, 0.5f, -3, 16},
    {9, 2, {1, 4, 0, 0, 0, 0}, 0.25f, 7, 4},
};
uint32_t g_boot_id = 1;
int g_failed = 0;
char g_log_text[96];  // smaller than the log below: the bound is part of what is tested
tf_log_t g_log;
const char* const kVersions[] = {"esp_idf", "v5.1.2", "esp_tflite_micro", "1.3.2"};

size_t hello(void*, uint8_t* out, size_t cap) {
  tf_hello_info_t info;
  memset(&info, 0, sizeof(info));
  info.flags = TF_FLAG_SELF_TEST_RAN | TF_FLAG_SELF_TEST_PASSED;
  info.boot_id = g_boot_id;
  for (int i = 0; i < 32; ++i) info.model_sha256[i] = (uint8_t)i;
  info.cpu_mhz = 240;
  info.arena_bytes = 4096;
  info.arena_used_bytes = 3000;
  info.self_test_total = 2;
  info.self_test_passed = 2;
  info.board_id = "pty-test";
  info.runtime = "test device (no TFLM)";
  info.n_inputs = 1;
  info.n_outputs = 1;
  info.tensors = kTensors;
  info.n_versions = 2;
  info.versions = kVersions;
  if (g_failed) {
    info.arena_used_bytes = 0;
    info.setup_status = TF_SETUP_ALLOCATE;
    info.setup_message = g_log.text;
    const uint32_t missing = tf_log_missing_bytes(g_log.text);
    info.arena_needed_bytes = missing ? info.arena_bytes + missing : 0;
  } else {
    info.arena_needed_bytes = info.arena_used_bytes;
  }
  return tf_write_hello(out, cap, &info);
}

int infer(void*, const uint8_t* input, size_t len, uint8_t* output, size_t cap, size_t* out_len, uint32_t* us,
          uint32_t* cycles) {
  if (input) memcpy(g_input, input, len);
  if (cap < 4) return 1;
  unsigned sum = 0;
  for (size_t i = 0; i < 16; ++i) sum += g_input[i];
  output[0] = (uint8_t)sum;
  output[1] = 16;
  output[2] = g_input[0];
  output[3] = g_input[15];
  *out_len = 4;
  *us = 100 + sum % 7;
  *cycles = *us * 240;
  ++g_invokes;
  if (input) {  // printf-style noise between frames, as real firmware logs would be
    const char note[] = "I (1234) app: inference done\r\n";
    write_all(nullptr, (const uint8_t*)note, sizeof(note) - 1);
  }
  return 0;
}

uint16_t profile_count(void*, uint32_t* tick_hz) {
  *tick_hz = 240000000;
  return g_invokes ? 3 : 0;
}

uint32_t profile_ticks(void*, uint16_t op) { return 1000u * (op + 1u); }

// Two "ops": op 0's output is the input, op 1's the model's output; 700 bytes of op 0 output 1 test chunking.
uint8_t g_big[700];

int tensor(void*, uint16_t op, uint8_t index, const uint8_t** data, uint32_t* len, uint8_t* dtype) {
  *dtype = 9;
  if (op == 0 && index == 0) *data = g_input, *len = 16;
  else if (op == 0 && index == 1) *data = g_big, *len = sizeof(g_big);
  else return 1;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  g_boot_id = argc > 1 ? (uint32_t)strtoul(argv[1], nullptr, 10) : 1;
  g_failed = argc > 2 && strcmp(argv[2], "fail") == 0;
  tf_log_init(&g_log, g_log_text, sizeof(g_log_text));
  if (g_failed) {  // what TFLM's allocator prints, in two writes as DebugLog makes them
    const char a[] = "Failed to resize buffer. Requested: 6768, available 6480, missing: 288\n";
    const char b[] = "Failed starting model allocation.\n";
    tf_log_append(&g_log, a, sizeof(a) - 1);
    tf_log_append(&g_log, b, sizeof(b) - 1);
  }
  g_master = posix_openpt(O_RDWR | O_NOCTTY);
  if (g_master < 0 || grantpt(g_master) || unlockpt(g_master)) return 1;
  const char* path = ptsname(g_master);
  // Raw mode on the slave before anyone opens it, or the line discipline would echo frames back.
  int slave = open(path, O_RDWR | O_NOCTTY);
  struct termios tio;
  tcgetattr(slave, &tio);
  cfmakeraw(&tio);
  tcsetattr(slave, TCSANOW, &tio);
  printf("%s\n", path);
  fflush(stdout);

  static uint8_t rx[256], body[512], tx[TF_ENCODED_SIZE(512 + TF_FRAME_OVERHEAD)];
  for (size_t i = 0; i < sizeof(g_big); ++i) g_big[i] = (uint8_t)(i * 7);
  tf_device_t dev = {nullptr, write_all, hello, infer, profile_count, profile_ticks, tensor, 16, 4};
  tf_server_t server;
  tf_server_init(&server, &dev, rx, sizeof(rx), body, sizeof(body), tx, sizeof(tx));
  const char boot_log[] = "I (42) boot: test device starting\r\nsome printf noise\r\n";
  write_all(nullptr, (const uint8_t*)boot_log, sizeof(boot_log) - 1);
  tf_server_announce(&server);
  uint8_t buf[512];
  for (;;) {
    ssize_t n = read(g_master, buf, sizeof(buf));
    if (n > 0) tf_server_feed(&server, buf, (size_t)n);
    else usleep(1000);
  }
  (void)slave;
}
