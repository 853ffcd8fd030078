// Stand-in for TFLM's op resolver (see micro_interpreter.h here): the ops of cnn_pool, the model the test uses.
#ifndef TINYFLOW_TEST_RESOLVER_H_
#define TINYFLOW_TEST_RESOLVER_H_
#include "tensorflow/lite/schema/schema_generated.h"
namespace tflite {
class MicroOpResolver {};
template <unsigned N>
class MicroMutableOpResolver : public MicroOpResolver {
 public:
#define TINYFLOW_TEST_OP(name) \
  TfLiteStatus name() { return kTfLiteOk; }
  TINYFLOW_TEST_OP(AddConv2D)
  TINYFLOW_TEST_OP(AddMaxPool2D)
  TINYFLOW_TEST_OP(AddAveragePool2D)
  TINYFLOW_TEST_OP(AddReshape)
  TINYFLOW_TEST_OP(AddFullyConnected)
  TINYFLOW_TEST_OP(AddSoftmax)
#undef TINYFLOW_TEST_OP
};
}  // namespace tflite
#endif
