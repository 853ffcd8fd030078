// Stand-in for TFLM's flatbuffer schema header (see micro_interpreter.h here).
#ifndef TINYFLOW_TEST_SCHEMA_H_
#define TINYFLOW_TEST_SCHEMA_H_
#include <stdint.h>
#define TFLITE_SCHEMA_VERSION 3
enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 };
namespace tflite {
struct Model {
  uint32_t version() const { return TFLITE_SCHEMA_VERSION; }
};
inline const Model* GetModel(const void*) {
  static Model model;
  return &model;
}
}  // namespace tflite
#endif
