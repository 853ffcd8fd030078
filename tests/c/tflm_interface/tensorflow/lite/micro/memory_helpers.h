// Stand-in for TFLM's memory_helpers.h (see micro_interpreter.h here).
#ifndef TINYFLOW_TEST_MEMORY_HELPERS_H_
#define TINYFLOW_TEST_MEMORY_HELPERS_H_
#include "tensorflow/lite/micro/micro_interpreter.h"
namespace tflite {
inline TfLiteStatus TfLiteEvalTensorByteLength(const TfLiteEvalTensor* t, size_t* out_bytes) {
  *out_bytes = t->bytes;
  return kTfLiteOk;
}
}  // namespace tflite
#endif
