// tinyflow serial protocol, device side. See tinyflow_protocol.h for the frame format.
#include "tinyflow_protocol.h"

#include <string.h>

namespace {

const uint32_t kCrcNibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

void put_u16(uint8_t* p, uint16_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}

void put_u32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = (uint8_t)(v >> (8 * i));
}

uint16_t get_u16(const uint8_t* p) { return (uint16_t)(p[0] | (p[1] << 8)); }

uint32_t get_u32(const uint8_t* p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

const size_t kHeader = 7;  // type, seq, len

// Frame body at s->body: header + payload (already written at body + kHeader), then CRC; encode and send.
void send_body(tf_server_t* s, uint8_t type, uint16_t seq, size_t payload_len) {
  uint8_t* b = s->body;
  b[0] = type;
  put_u16(b + 1, seq);
  put_u32(b + 3, (uint32_t)payload_len);
  const size_t n = kHeader + payload_len;
  put_u32(b + n, tf_crc32(0, b, n));
  s->tx[0] = 0;
  size_t len = 1 + tf_cobs_encode(b, n + 4, s->tx + 1);
  s->tx[len++] = 0;
  s->tx_len = len;
  s->dev->write(s->dev->ctx, s->tx, len);
}

// Sent from its own buffer: the last response in s->tx must survive for the resend the NAK asks for.
void send_nak(tf_server_t* s) {
  uint8_t body[kHeader + 4] = {TF_MSG_NAK, 0, 0, 0, 0, 0, 0};
  put_u32(body + kHeader, tf_crc32(0, body, kHeader));
  uint8_t frame[TF_ENCODED_SIZE(kHeader + 4)];
  frame[0] = 0;
  size_t len = 1 + tf_cobs_encode(body, sizeof(body), frame + 1);
  frame[len++] = 0;
  s->dev->write(s->dev->ctx, frame, len);
}

void send_error(tf_server_t* s, uint16_t seq, uint8_t code, const char* message) {
  size_t n = strlen(message);
  if (n > 255) n = 255;
  if (kHeader + 2 + n + 4 > s->body_cap) n = 0;
  s->body[kHeader] = code;
  s->body[kHeader + 1] = (uint8_t)n;
  memcpy(s->body + kHeader + 2, message, n);
  send_body(s, TF_MSG_ERROR, seq, 2 + n);
}

size_t payload_room(const tf_server_t* s) { return s->body_cap - kHeader - 4; }

void handle_infer(tf_server_t* s, uint16_t seq, const uint8_t* payload, size_t len, int kept) {
  if (len != s->dev->input_bytes || !kept) {
    send_error(s, seq, TF_ERR_BAD_LENGTH, "INFER payload is not the model's input size");
    return;
  }
  uint8_t* out = s->body + kHeader;
  size_t out_len = 0;
  uint32_t us = 0, cycles = 0;
  if (s->dev->infer(s->dev->ctx, payload, len, out + 9, payload_room(s) - 9, &out_len, &us, &cycles) != 0) {
    send_error(s, seq, TF_ERR_INFERENCE_FAILED, "Invoke() failed");
    return;
  }
  out[0] = 0;
  put_u32(out + 1, us);
  put_u32(out + 5, cycles);
  send_body(s, TF_MSG_INFER_RESULT, seq, 9 + out_len);
}

// "BENCH takes 1 to <limit> runs on this device": the host shows it, so it names the range.
void send_runs_error(tf_server_t* s, uint16_t seq, uint32_t limit) {
  char message[48] = "BENCH takes 1 to ";
  size_t n = strlen(message);
  char digits[10];
  size_t k = 0;
  do {
    digits[k++] = (char)('0' + limit % 10u);
    limit /= 10u;
  } while (limit && k < sizeof(digits));
  while (k) message[n++] = digits[--k];
  memcpy(message + n, " runs on this device", 21);
  send_error(s, seq, TF_ERR_TOO_MANY_RUNS, message);
}

void handle_bench(tf_server_t* s, uint16_t seq, const uint8_t* payload, size_t len, int kept) {
  if (len != 4 || !kept) {
    send_error(s, seq, TF_ERR_BAD_LENGTH, "BENCH payload is warmup:u16 runs:u16");
    return;
  }
  const uint16_t warmup = get_u16(payload), runs = get_u16(payload + 2);
  uint8_t* out = s->body + kHeader;
  // Each run's time and cycles, and after them the space one inference writes its outputs to.
  const size_t room = payload_room(s);
  const size_t fit = room > 3 + s->dev->output_bytes ? (room - 3 - s->dev->output_bytes) / 8u : 0;
  const uint32_t limit = fit < TF_MAX_BENCH_RUNS ? (uint32_t)fit : TF_MAX_BENCH_RUNS;
  if (runs == 0 || runs > limit) {
    send_runs_error(s, seq, limit);
    return;
  }
  // Outputs of the timed runs are not needed: they land in the space the timings will take later,
  // so no buffer beyond the response's own is used.
  size_t scratch_len = 0;
  uint32_t us = 0, cycles = 0;
  for (uint32_t i = 0; i < (uint32_t)warmup + runs; ++i) {
    if (s->dev->infer(s->dev->ctx, NULL, 0, out + 3 + 8u * runs, payload_room(s) - 3 - 8u * runs, &scratch_len,
                      &us, &cycles) != 0) {
      send_error(s, seq, TF_ERR_INFERENCE_FAILED, "Invoke() failed");
      return;
    }
    if (i >= warmup) {
      put_u32(out + 3 + 4u * (i - warmup), us);
      put_u32(out + 3 + 4u * runs + 4u * (i - warmup), cycles);
    }
  }
  out[0] = 0;
  put_u16(out + 1, runs);
  send_body(s, TF_MSG_BENCH_RESULT, seq, 3 + 8u * runs);
}

void handle_profile(tf_server_t* s, uint16_t seq) {
  uint8_t* out = s->body + kHeader;
  uint32_t tick_hz = 0;
  if (!s->dev->profile_count || !s->dev->profile_ticks) {
    send_error(s, seq, TF_ERR_NO_PROFILE, "this device has no per-op profiler");
    return;
  }
  const uint16_t count = s->dev->profile_count(s->dev->ctx, &tick_hz);
  if (count == 0 || 7 + 4u * count > payload_room(s)) {
    send_error(s, seq, TF_ERR_NO_PROFILE, "no profile yet: run INFER first");
    return;
  }
  for (uint16_t i = 0; i < count; ++i) put_u32(out + 7 + 4u * i, s->dev->profile_ticks(s->dev->ctx, i));
  out[0] = 0;
  put_u32(out + 1, tick_hz);
  put_u16(out + 5, count);
  send_body(s, TF_MSG_PROFILE_RESULT, seq, 7 + 4u * count);
}

// TENSOR_READ op:u16 index:u8 offset:u32 length:u16 -> status:u8 dtype:u8 total:u32 offset:u32 bytes:
// at most `length` bytes from `offset`, fewer when the response buffer is smaller (the host asks on).
void handle_tensor(tf_server_t* s, uint16_t seq, const uint8_t* payload, size_t len, int kept) {
  if (len != 9 || !kept) {
    send_error(s, seq, TF_ERR_BAD_LENGTH, "TENSOR_READ payload is op:u16 index:u8 offset:u32 length:u16");
    return;
  }
  const uint8_t* data = NULL;
  uint32_t total = 0;
  uint8_t dtype = 0;
  const int found = s->dev->tensor ? s->dev->tensor(s->dev->ctx, get_u16(payload), payload[2], &data, &total,
                                                    &dtype)
                                   : 2;
  if (found == 1) {
    send_error(s, seq, TF_ERR_NO_TENSOR, "the model has no such op output");
    return;
  }
  if (found != 0) {
    send_error(s, seq, TF_ERR_NO_TENSOR, "this firmware keeps no intermediate tensors");
    return;
  }
  const uint32_t offset = get_u32(payload + 3);
  const size_t room = payload_room(s) - 10;
  size_t n = offset < total ? total - offset : 0;
  if (n > get_u16(payload + 7)) n = get_u16(payload + 7);
  if (n > room) n = room;
  uint8_t* out = s->body + kHeader;
  out[0] = 0;
  out[1] = dtype;
  put_u32(out + 2, total);
  put_u32(out + 6, offset);
  if (n) memcpy(out + 10, data + offset, n);
  send_body(s, TF_MSG_TENSOR_DATA, seq, 10 + n);
}

// One decoded byte of the frame being received: kept while it fits, always counted and CRC-checked.
void rx_byte(tf_server_t* s, uint8_t b) {
  uint8_t* slot = &s->rx_tail[s->rx_len & 3u];
  if (s->rx_len >= 4) s->rx_crc = tf_crc32(s->rx_crc, slot, 1);  // the byte leaving the tail is not CRC
  *slot = b;
  if (s->rx_len < s->rx_cap) s->rx[s->rx_len] = b;
  s->rx_len++;
}

// The chunk before a delimiter: a request when its length and CRC check out, else nothing is answered.
void handle_frame(tf_server_t* s) {
  const size_t len = s->rx_len;
  if (s->cobs_left != 0 || len < kHeader + 4 || s->rx_cap < kHeader) {
    s->frames_bad++;
    send_nak(s);
    return;
  }
  const uint8_t* body = s->rx;
  const uint32_t payload_len = get_u32(body + 3);
  uint32_t crc = 0;
  for (int k = 3; k >= 0; --k) crc = (crc << 8) | s->rx_tail[(len - 4 + (size_t)k) & 3u];
  if (kHeader + (size_t)payload_len + 4 != len || s->rx_crc != crc) {
    s->frames_bad++;
    send_nak(s);
    return;
  }
  s->frames_ok++;
  const int kept = len <= s->rx_cap;  // else only the header is here: no handler may read the payload
  const uint8_t type = body[0];
  const uint16_t seq = get_u16(body + 1);
  if (s->have_last && seq == s->last_seq && type == s->last_type && type != TF_MSG_HELLO_REQ) {
    s->dev->write(s->dev->ctx, s->tx, s->tx_len);  // a retry: same answer, nothing runs twice
    return;
  }
  const uint8_t* payload = body + kHeader;
  switch (type) {
    case TF_MSG_HELLO_REQ:
      send_body(s, TF_MSG_HELLO, seq, s->dev->hello(s->dev->ctx, s->body + kHeader, payload_room(s)));
      break;
    case TF_MSG_INFER:
      handle_infer(s, seq, payload, payload_len, kept);
      break;
    case TF_MSG_BENCH:
      handle_bench(s, seq, payload, payload_len, kept);
      break;
    case TF_MSG_PROFILE:
      handle_profile(s, seq);
      break;
    case TF_MSG_TENSOR_READ:
      handle_tensor(s, seq, payload, payload_len, kept);
      break;
    default:
      send_error(s, seq, TF_ERR_UNKNOWN_MESSAGE, "unknown message type");
      break;
  }
  s->last_seq = seq;
  s->last_type = type;
  s->have_last = 1;
}

}  // namespace

uint32_t tf_crc32(uint32_t crc, const uint8_t* data, size_t len) {
  crc = ~crc;
  for (size_t i = 0; i < len; ++i) {
    crc ^= data[i];
    crc = (crc >> 4) ^ kCrcNibble[crc & 15u];
    crc = (crc >> 4) ^ kCrcNibble[crc & 15u];
  }
  return ~crc;
}

size_t tf_cobs_encode(const uint8_t* in, size_t len, uint8_t* out) {
  size_t code_at = 0, o = 1;
  uint8_t code = 1;
  for (size_t i = 0; i < len; ++i) {
    if (in[i] == 0) {
      out[code_at] = code;
      code_at = o++;
      code = 1;
    } else {
      out[o++] = in[i];
      if (++code == 0xFF) {
        out[code_at] = code;
        code_at = o++;
        code = 1;
      }
    }
  }
  out[code_at] = code;
  return o;
}

int tf_cobs_decode(const uint8_t* in, size_t len, uint8_t* out, size_t* out_len) {
  size_t i = 0, o = 0;
  while (i < len) {
    const uint8_t code = in[i];
    if (code == 0 || i + code > len) return -1;
    ++i;
    for (uint8_t k = 1; k < code; ++k) out[o++] = in[i++];
    if (code != 0xFF && i < len) out[o++] = 0;
  }
  *out_len = o;
  return 0;
}

namespace {

size_t str255(const char* s) {
  if (s == NULL) return 0;
  const size_t n = strlen(s);
  return n > 255 ? 255 : n;
}

uint8_t* put_str(uint8_t* p, const char* s) {
  const size_t n = str255(s);
  *p++ = (uint8_t)n;
  if (n) memcpy(p, s, n);
  return p + n;
}

}  // namespace

void tf_log_init(tf_log_t* log, char* buf, size_t cap) {
  log->text = buf;
  log->cap = cap;
  log->len = 0;
  if (cap) buf[0] = 0;
}

void tf_log_append(tf_log_t* log, const char* data, size_t len) {
  if (log->cap == 0) return;
  const size_t room = log->cap - 1 - log->len;
  const size_t n = len < room ? len : room;
  memcpy(log->text + log->len, data, n);
  log->len += n;
  log->text[log->len] = 0;
}

uint32_t tf_log_missing_bytes(const char* text) {
  const char* at = text ? strstr(text, "missing:") : NULL;
  if (at == NULL) return 0;
  at += 8;
  while (*at == ' ') ++at;
  uint32_t k = 0;
  while (*at >= '0' && *at <= '9' && k < 100000000u) k = k * 10u + (uint32_t)(*at++ - '0');
  return k;
}

size_t tf_write_hello(uint8_t* out, size_t cap, const tf_hello_info_t* info) {
  const size_t board_len = str255(info->board_id);
  const size_t runtime_len = str255(info->runtime);
  size_t need = 8 + 32 + 17 + 1 + board_len + 1 + runtime_len + 2;
  for (int i = 0; i < info->n_inputs + info->n_outputs; ++i) need += 2 + 4u * info->tensors[i].rank + 12;
  need += 1 + 1 + str255(info->setup_message) + 4 + 1;
  for (int i = 0; i < 2 * info->n_versions; ++i) need += 1 + str255(info->versions[i]);
  if (need > cap) return 0;
  uint8_t* p = out;
  put_u16(p, TF_PROTOCOL_VERSION);
  put_u16(p + 2, info->flags);
  put_u32(p + 4, info->boot_id);
  memcpy(p + 8, info->model_sha256, 32);
  p += 40;
  put_u32(p, info->cpu_mhz);
  put_u32(p + 4, info->arena_bytes);
  put_u32(p + 8, info->arena_used_bytes);
  p[12] = info->arena_region;
  put_u16(p + 13, info->self_test_total);
  put_u16(p + 15, info->self_test_passed);
  p += 17;
  *p++ = (uint8_t)board_len;
  memcpy(p, info->board_id, board_len);
  p += board_len;
  *p++ = (uint8_t)runtime_len;
  memcpy(p, info->runtime, runtime_len);
  p += runtime_len;
  *p++ = info->n_inputs;
  *p++ = info->n_outputs;
  for (int i = 0; i < info->n_inputs + info->n_outputs; ++i) {
    const tf_tensor_info_t* t = &info->tensors[i];
    *p++ = t->dtype;
    *p++ = t->rank;
    for (int d = 0; d < t->rank; ++d, p += 4) put_u32(p, (uint32_t)t->dims[d]);
    uint32_t scale_bits;
    memcpy(&scale_bits, &t->scale, 4);
    put_u32(p, scale_bits);
    put_u32(p + 4, (uint32_t)t->zero_point);
    put_u32(p + 8, t->bytes);
    p += 12;
  }
  *p++ = info->setup_status;
  p = put_str(p, info->setup_message);
  put_u32(p, info->arena_needed_bytes);
  p += 4;
  *p++ = info->n_versions;
  for (int i = 0; i < 2 * info->n_versions; ++i) p = put_str(p, info->versions[i]);
  return (size_t)(p - out);
}

void tf_server_init(tf_server_t* s, const tf_device_t* dev, uint8_t* rx, size_t rx_cap, uint8_t* body,
                    size_t body_cap, uint8_t* tx, size_t tx_cap) {
  memset(s, 0, sizeof(*s));
  s->dev = dev;
  s->rx = rx;
  s->rx_cap = rx_cap;
  s->body = body;
  s->body_cap = body_cap;
  s->tx = tx;
  s->tx_cap = tx_cap;
}

void tf_server_feed(tf_server_t* s, const uint8_t* data, size_t len) {
  for (size_t i = 0; i < len; ++i) {
    const uint8_t c = data[i];
    if (c != 0) {
      s->rx_started = 1;
      if (s->cobs_left == 0) {  // a COBS code byte: the previous block's implicit zero, then a new block
        if (s->cobs_zero) rx_byte(s, 0);
        s->cobs_zero = c != 0xFF;
        s->cobs_left = (uint8_t)(c - 1);
      } else {
        rx_byte(s, c);
        s->cobs_left--;
      }
      continue;
    }
    // A delimiter: whatever came before is one candidate frame (log noise fails the checks).
    if (s->rx_started) handle_frame(s);
    s->rx_len = 0;
    s->rx_crc = 0;
    s->cobs_left = 0;
    s->cobs_zero = 0;
    s->rx_started = 0;
  }
}

void tf_server_announce(tf_server_t* s) {
  send_body(s, TF_MSG_HELLO, 0, s->dev->hello(s->dev->ctx, s->body + kHeader, payload_room(s)));
}
