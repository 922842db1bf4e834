// tvm_ofa_model.h: load one tvm-ofa artifact (model.so + metadata.json) and run it on a float
// buffer. The TVM headers stay in the .cc so users of this class only need C++17.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace tvm_ofa {

// One line, naming the file at fault; every failure of this library is one of these.
class ModelError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The fields of metadata.json that a runner needs; other keys are ignored.
struct Metadata {
  std::vector<int64_t> input_shape;   // e.g. {1, 3, 224, 224}
  std::string input_dtype = "float32";
  std::vector<int64_t> output_shape;  // e.g. {1, 1000}; may be empty when the file lacks it
  std::string entry = "main";
  // where the library runs, from target.resolved.kind: "cpu" (llvm) or "cuda" (GPU 0; the
  // runtime then needs libtvm_runtime_cuda.so from the wheel and the CUDA runtime)
  std::string device = "cpu";
};

// Reads <artifact_dir>/metadata.json.
Metadata ReadMetadata(const std::string& artifact_dir);

// Product of the dimensions (1 for an empty shape).
size_t NumElements(const std::vector<int64_t>& shape);

// Threads TVM's runtime pool uses in this process (0 if the runtime does not say). The pool is
// sized once, at its first use, from TVM_NUM_THREADS (else half the logical CPUs on x86).
int RuntimeThreads();

class Model {
 public:
  // Loads <artifact_dir>/model.so into a Relax VM on the CPU. Not thread-safe to Run()
  // concurrently: the VM owns its memory pool.
  explicit Model(const std::string& artifact_dir);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const Metadata& metadata() const { return meta_; }
  size_t input_size() const { return NumElements(meta_.input_shape); }

  // Runs the entry function on `n` floats laid out as metadata().input_shape (NCHW) and returns
  // the first output, flattened.
  std::vector<float> Run(const float* input, size_t n);
  std::vector<float> Run(const std::vector<float>& input) { return Run(input.data(), input.size()); }

  // Shape of the output of the last Run() (empty before the first run).
  const std::vector<int64_t>& output_shape() const { return last_output_shape_; }

  struct Impl;  // the TVM objects; opaque so this header needs no TVM includes

 private:
  std::string dir_;
  Metadata meta_;
  std::vector<int64_t> last_output_shape_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tvm_ofa
