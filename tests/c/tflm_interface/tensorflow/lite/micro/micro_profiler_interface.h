// Stand-in for TFLM's profiler interface (see micro_interpreter.h here).
#ifndef TINYFLOW_TEST_PROFILER_H_
#define TINYFLOW_TEST_PROFILER_H_
#include <stdint.h>
namespace tflite {
class MicroProfilerInterface {
 public:
  virtual ~MicroProfilerInterface() {}
  virtual uint32_t BeginEvent(const char* tag) = 0;
  virtual void EndEvent(uint32_t handle) = 0;
};
}  // namespace tflite
#endif
