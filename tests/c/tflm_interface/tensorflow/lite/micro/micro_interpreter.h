// A stand-in for the part of TFLM's C++ interface tinyflow_app.cc uses: TFLM's headers are not in the
// tflite-micro wheel, and this is enough to compile the real app with the host's g++ and run its set-up.
// AllocateTensors() reports a too-small arena the way TFLM does (vfprintf to stderr from DebugLog, then a
// status), so the app's capture of TFLM's log is tested as it runs on a board.
#ifndef TINYFLOW_TEST_TFLM_INTERFACE_H_
#define TINYFLOW_TEST_TFLM_INTERFACE_H_

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"
#include "tensorflow/lite/micro/micro_profiler_interface.h"
#include "tensorflow/lite/schema/schema_generated.h"

struct TfLiteTensor {
  union {
    char* raw;
  } data;
  size_t bytes;
};

enum TfLiteType { kTfLiteInt8 = 9 };
struct TfLiteEvalTensor {
  union {
    char* raw;
  } data;
  TfLiteType type;
  size_t bytes;  // the stand-in's own: TFLM computes it from dims (TfLiteEvalTensorByteLength)
};

namespace tflite {

inline void DebugLogLikeTflm(const char* format, ...) {  // TFLM's reference debug_log.cc
  va_list args;
  va_start(args, format);
  vfprintf(stderr, format, args);
  va_end(args);
}

class MicroInterpreter {
 public:
  MicroInterpreter(const Model*, const MicroOpResolver&, uint8_t* arena, size_t arena_bytes, void*,
                   MicroProfilerInterface* profiler, bool preserve_all_tensors = false)
      : arena_(arena), arena_bytes_(arena_bytes), profiler_(profiler), preserve_(preserve_all_tensors) {}
  // TINYFLOW_TEST_NEEDS: the arena this "model" needs (TFLM's own accounting in the real thing).
  TfLiteStatus AllocateTensors() {
    const char* needs = getenv("TINYFLOW_TEST_NEEDS");
    const size_t need = needs ? (size_t)strtoul(needs, nullptr, 10) : 0;
    if (need > arena_bytes_) {
      DebugLogLikeTflm("Failed to resize buffer. Requested: %u, available %u, missing: %u\n", 1000u,
                       (unsigned)(1000u - (need - arena_bytes_)), (unsigned)(need - arena_bytes_));
      DebugLogLikeTflm("Failed starting model allocation.\n");
      return kTfLiteError;
    }
    used_ = need;
    tensor_.data.raw = (char*)arena_;
    tensor_.bytes = 0;
    return kTfLiteOk;
  }
  TfLiteStatus Invoke() {
    if (profiler_) profiler_->EndEvent(profiler_->BeginEvent("op"));
    return kTfLiteOk;
  }
  TfLiteTensor* input(size_t) { return &tensor_; }
  TfLiteTensor* output(size_t) { return &tensor_; }
  size_t arena_used_bytes() const { return used_; }
  // Preserve-all-tensors mode: tensor i holds i + 1 in each of its i + 1 bytes (type int8).
  TfLiteEvalTensor* GetTensor(int tensor_index, int subgraph_index = 0) {
    if (!preserve_ || subgraph_index != 0 || tensor_index < 0 || tensor_index >= 32) return nullptr;
    eval_.bytes = (size_t)tensor_index + 1;
    for (size_t i = 0; i < eval_.bytes; ++i) eval_storage_[i] = (char)(tensor_index + 1);
    eval_.data.raw = eval_storage_;
    eval_.type = kTfLiteInt8;
    return &eval_;
  }

 private:
  uint8_t* arena_;
  size_t arena_bytes_;
  MicroProfilerInterface* profiler_;
  bool preserve_;
  size_t used_ = 0;
  TfLiteTensor tensor_ = {};
  TfLiteEvalTensor eval_ = {};
  char eval_storage_[32] = {};
};

}  // namespace tflite

#endif  // TINYFLOW_TEST_TFLM_INTERFACE_H_
