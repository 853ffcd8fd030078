// tinyflow serial protocol: the device side. Portable C++ with no TFLM and no platform headers, so the
// same code runs in the firmware, in host tests and in tinyflow's simulated board.
//
// Frame on the wire: 0x00 | COBS(type:u8 seq:u16 len:u32 payload crc32:u32) | 0x00, little-endian,
// CRC-32 as zlib computes it. Responses echo the request's sequence number; a request that repeats the
// last sequence number gets the last response again without running anything. A chunk that is not a
// well-formed frame (a request the line damaged) is answered with a NAK, so the host resends at once.
#ifndef TINYFLOW_PROTOCOL_H_
#define TINYFLOW_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {  // a plain C API: the simulated board calls it through ctypes
#endif

#define TF_PROTOCOL_VERSION 3  // 2: NAK; 3: HELLO carries the set-up status, TFLM's log of it, versions

enum {
  TF_MSG_HELLO_REQ = 0x01,
  TF_MSG_INFER = 0x02,
  TF_MSG_BENCH = 0x03,
  TF_MSG_PROFILE = 0x04,
  TF_MSG_TENSOR_READ = 0x05,  // one op output of the last inference, a chunk at a time
  TF_MSG_HELLO = 0x81,
  TF_MSG_INFER_RESULT = 0x82,
  TF_MSG_BENCH_RESULT = 0x83,
  TF_MSG_PROFILE_RESULT = 0x84,
  TF_MSG_TENSOR_DATA = 0x85,
  TF_MSG_NAK = 0xFE,  // seq 0, no payload; never kept as the last response
  TF_MSG_ERROR = 0xFF,
};

enum {
  TF_ERR_UNKNOWN_MESSAGE = 1,
  TF_ERR_BAD_LENGTH = 2,
  TF_ERR_INFERENCE_FAILED = 3,
  TF_ERR_TOO_MANY_RUNS = 4,  // also 0 runs: the message names the range this device takes
  TF_ERR_NO_PROFILE = 5,
  TF_ERR_NO_TENSOR = 6,  // this firmware keeps no intermediate tensors, or the op has no such output
};

// BENCH answers at most this many runs (fewer when the response buffer cannot hold them and an output),
// the same on every device, so the host knows the limit before it asks.
#define TF_MAX_BENCH_RUNS 1000u

#define TF_FRAME_OVERHEAD 11u  // type + seq + len + crc
// Worst-case encoded size of a body of n bytes: COBS adds one byte per 254, plus the two delimiters.
#define TF_ENCODED_SIZE(n) ((n) + (n) / 254u + 3u)

// What the application provides: transport and inference. All callbacks get `ctx` back.
typedef struct tf_device {
  void* ctx;
  // Send bytes to the host (blocking until queued).
  void (*write)(void* ctx, const uint8_t* data, size_t len);
  // Write the HELLO payload into out (at most cap bytes); return its length.
  size_t (*hello)(void* ctx, uint8_t* out, size_t cap);
  // Run one inference. input == NULL reuses the input of the previous call (BENCH does this).
  // Writes the outputs, concatenated, and the invoke time in microseconds and CPU cycles.
  int (*infer)(void* ctx, const uint8_t* input, size_t input_len, uint8_t* output, size_t output_cap,
               size_t* output_len, uint32_t* micros, uint32_t* cycles);
  // How many ops the last inference profiled (0: none yet), and what a tick is (ticks per second).
  // Both profile callbacks may be NULL: the device then answers PROFILE with an error.
  uint16_t (*profile_count)(void* ctx, uint32_t* tick_hz);
  // Ticks op `op` took in the last inference.
  uint32_t (*profile_ticks)(void* ctx, uint16_t op);
  // Output `index` of op `op` after the last inference: its bytes (kept until the next inference) and
  // TFLite type. Returns 0, 1 when the op has no such output, 2 when this build keeps no intermediate
  // tensors (TFLM reuses their memory). NULL: always 2.
  int (*tensor)(void* ctx, uint16_t op, uint8_t index, const uint8_t** data, uint32_t* len, uint8_t* dtype);
  size_t input_bytes;  // an INFER payload must be exactly this long
  size_t output_bytes;  // what infer writes: BENCH needs room for it after the timings
} tf_device_t;

typedef struct tf_server {
  const tf_device_t* dev;
  // The frame being received, COBS-decoded as it arrives. Bytes beyond rx_cap are not kept but still
  // counted and checked (length, CRC), so a well-formed frame too long to keep still gets an answer.
  uint8_t* rx;
  size_t rx_cap;
  size_t rx_len;  // decoded bytes of this chunk so far (may exceed rx_cap)
  uint32_t rx_crc;  // running CRC of the decoded bytes except the last four (the frame's own CRC)
  uint8_t rx_tail[4];  // the last four decoded bytes
  uint8_t cobs_left;  // bytes left in the current COBS block
  uint8_t cobs_zero;  // the current block ends with an implicit zero (its code was not 0xFF)
  uint8_t rx_started;  // a non-delimiter byte arrived since the last delimiter
  uint8_t* body;  // response body being built
  size_t body_cap;
  uint8_t* tx;  // the last response as sent, kept for resends
  size_t tx_cap;
  size_t tx_len;
  uint16_t last_seq;
  uint8_t last_type;
  int have_last;
  uint32_t frames_ok;
  uint32_t frames_bad;
} tf_server_t;

#define TF_FLAG_SIMULATED 1u
#define TF_FLAG_SELF_TEST_RAN 2u
#define TF_FLAG_SELF_TEST_PASSED 4u

// How set-up ended (HELLO setup_status); the host words each with its fix.
enum {
  TF_SETUP_READY = 0,
  TF_SETUP_SCHEMA = 1,  // the model's schema version is not the one this TFLM reads
  TF_SETUP_RESOLVER = 2,  // TFLM refused to register an op
  TF_SETUP_NO_ARENA = 3,  // the platform could not allocate the arena
  TF_SETUP_ALLOCATE = 4,  // AllocateTensors() failed (arena too small, op missing from the resolver, ...)
};

typedef struct tf_tensor_info {
  uint8_t dtype;  // TFLite TensorType: 0 float32, 2 int32, 3 uint8, 7 int16, 9 int8
  uint8_t rank;
  int32_t dims[6];
  float scale;
  int32_t zero_point;
  uint32_t bytes;
} tf_tensor_info_t;

typedef struct tf_hello_info {
  uint16_t flags;
  uint32_t boot_id;  // differs on every boot: how the host notices a reset
  uint8_t model_sha256[32];
  uint32_t cpu_mhz;
  uint32_t arena_bytes;
  uint32_t arena_used_bytes;
  uint8_t arena_region;  // 0 internal SRAM, 1 PSRAM, 2 host
  uint16_t self_test_total;
  uint16_t self_test_passed;
  const char* board_id;
  const char* runtime;
  uint8_t n_inputs;
  uint8_t n_outputs;
  const tf_tensor_info_t* tensors;  // inputs, then outputs
  uint8_t setup_status;  // TF_SETUP_*
  const char* setup_message;  // TFLM's log during set-up (the first 255 bytes go out); NULL: none
  uint32_t arena_needed_bytes;  // what TFLM used, or the arena plus what it said was missing; 0: unknown
  uint8_t n_versions;
  const char* const* versions;  // n_versions (name, value) pairs: what the firmware was built with
} tf_hello_info_t;

// A bounded log of what TFLM printed during set-up: keeps the first cap - 1 bytes (the first error is the
// cause, what follows are its consequences), always NUL-terminated.
typedef struct tf_log {
  char* text;
  size_t cap;
  size_t len;
} tf_log_t;

void tf_log_init(tf_log_t* log, char* buf, size_t cap);
void tf_log_append(tf_log_t* log, const char* data, size_t len);
// The K of TFLM's "Failed to resize buffer. Requested: N, available M, missing: K" (the first one); 0: none.
uint32_t tf_log_missing_bytes(const char* text);

// Serialise a HELLO payload; returns its length, or 0 when it does not fit in cap.
size_t tf_write_hello(uint8_t* out, size_t cap, const tf_hello_info_t* info);

uint32_t tf_crc32(uint32_t crc, const uint8_t* data, size_t len);
size_t tf_cobs_encode(const uint8_t* in, size_t len, uint8_t* out);
// Decodes in place is allowed (out == in). Returns 0 on success.
int tf_cobs_decode(const uint8_t* in, size_t len, uint8_t* out, size_t* out_len);

void tf_server_init(tf_server_t* s, const tf_device_t* dev, uint8_t* rx, size_t rx_cap, uint8_t* body,
                    size_t body_cap, uint8_t* tx, size_t tx_cap);
// Feed bytes received from the host; complete requests are answered from inside this call.
void tf_server_feed(tf_server_t* s, const uint8_t* data, size_t len);
// Send a HELLO on the device's own initiative (at boot, with seq 0).
void tf_server_announce(tf_server_t* s);

#ifdef __cplusplus
}
#endif

#endif  // TINYFLOW_PROTOCOL_H_
