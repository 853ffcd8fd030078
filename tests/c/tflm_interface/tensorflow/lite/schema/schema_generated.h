// Stand-in for TFLM's flatbuffer schema header (see micro_interpreter.h here).
#ifndef TINYFLOW_TEST_SCHEMA_H_
#define TINYFLOW_TEST_SCHEMA_H_
#include <stdint.h>
#define TFLITE_SCHEMA_VERSION 3
enum TfLiteStatus { kTfLiteOk = 0, kTfLiteError = 1 };
namespace tflite {
// The flatbuffer accessors the app uses; a "model" of 3 ops, op k writing tensor k + 4.
template <class T>
struct Vector {
  const T* items;
  unsigned n;
  unsigned size() const { return n; }
  T Get(unsigned i) const { return items[i]; }
};
struct Operator {
  int32_t output;
  const Vector<int32_t>* outputs() const {
    static Vector<int32_t> v[3];
    v[output - 4] = Vector<int32_t>{&output, 1};
    return &v[output - 4];
  }
};
struct SubGraph {
  const Vector<const Operator*>* operators() const {
    static const Operator ops[3] = {{4}, {5}, {6}};
    static const Operator* ptrs[3] = {&ops[0], &ops[1], &ops[2]};
    static const Vector<const Operator*> v = {ptrs, 3};
    return &v;
  }
};
struct Model {
  uint32_t version() const { return TFLITE_SCHEMA_VERSION; }
  const Vector<const SubGraph*>* subgraphs() const {
    static const SubGraph graph;
    static const SubGraph* ptr = &graph;
    static const Vector<const SubGraph*> v = {&ptr, 1};
    return &v;
  }
};
inline const Model* GetModel(const void*) {
  static Model model;
  return &model;
}
}  // namespace tflite
#endif
