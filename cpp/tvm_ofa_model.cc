// tvm_ofa_model.cc: the Relax VM boilerplate that tvm.relax.VirtualMachine does in Python
// (vm_load_executable, vm_initialization, then the entry function), in C++ on tvm-ffi only.
//
// Only tvm-ffi headers are used: the runtime headers in the apache-tvm 0.27 wheel include
// tvm/support/*.h, which the wheel does not ship.
#include "tvm_ofa_model.h"

#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/map.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/json.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>
#include <tvm/ffi/string.h>
#include <tvm/runtime/c_backend_api.h>

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

namespace ffi = tvm::ffi;

namespace tvm_ofa {
namespace {

// Nothing in this file calls into libtvm_runtime by name, yet model.so needs the Relax VM
// loader that libtvm_runtime registers when it is loaded. Referencing one of its symbols keeps
// the library in DT_NEEDED even under -Wl,--as-needed.
[[maybe_unused]] volatile const void* kKeepTvmRuntime =
    reinterpret_cast<const void*>(&TVMBackendAllocWorkspace);

// Relax VM allocator kinds, as in tvm/runtime/vm.py (POOLED reuses buffers across calls).
constexpr int kPooledAllocator = 2;

// tvm-ffi errors carry a multi-line backtrace; keep "Kind: first line of the message".
std::string OneLine(const std::string& where, const std::string& what) {
  std::string first = what.substr(0, what.find('\n'));
  return where + ": " + first;
}

std::string OneLine(const std::string& where, const ffi::Error& err) {
  return OneLine(where, err.kind() + ": " + err.message());
}

// 64-byte aligned CPU storage: TVM's generated kernels assume aligned inputs for vector loads.
struct AlignedCPUAlloc {
  void AllocData(DLTensor* t) {
    size_t bytes = ffi::GetDataSize(*t);
    bytes = (bytes + 63) / 64 * 64;
    t->data = std::aligned_alloc(64, bytes == 0 ? 64 : bytes);
    if (t->data == nullptr) throw std::bad_alloc();
  }
  void FreeData(DLTensor* t) { std::free(t->data); }
};

std::vector<int64_t> ShapeFromJson(const ffi::Any& value, const std::string& file,
                                   const char* key) {
  auto arr = value.try_cast<ffi::Array<ffi::Any>>();
  if (!arr.has_value()) throw ModelError(file + ": '" + key + "' is not a list of integers");
  std::vector<int64_t> shape;
  for (const ffi::Any& dim : *arr) {
    auto v = dim.try_cast<int64_t>();
    if (!v.has_value() || *v <= 0) {
      throw ModelError(file + ": '" + key + "' has a dimension that is not a positive integer");
    }
    shape.push_back(*v);
  }
  return shape;
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s;
}

}  // namespace

size_t NumElements(const std::vector<int64_t>& shape) {
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  return n;
}

Metadata ReadMetadata(const std::string& artifact_dir) {
  const std::string file = artifact_dir + "/metadata.json";
  std::ifstream in(file, std::ios::binary);
  if (!in) throw ModelError(file + ": cannot open (is this an artifact directory?)");
  std::stringstream buf;
  buf << in.rdbuf();

  ffi::String parse_error;
  ffi::Any root = ffi::json::Parse(ffi::String(buf.str()), &parse_error);
  if (!parse_error.empty()) throw ModelError(OneLine(file, "invalid JSON: " + std::string(parse_error)));
  auto obj = root.try_cast<ffi::Map<ffi::Any, ffi::Any>>();
  if (!obj.has_value()) throw ModelError(file + ": expected a JSON object");

  auto get = [&](const char* key) { return obj->Get(ffi::Any(ffi::String(key))); };
  auto get_string = [&](const char* key, std::string* out) {
    if (auto v = get(key)) {
      auto s = v->try_cast<ffi::String>();
      if (!s.has_value()) throw ModelError(file + ": '" + key + "' is not a string");
      *out = std::string(*s);
    }
  };

  Metadata meta;
  auto input_shape = get("input_shape");
  if (!input_shape.has_value()) throw ModelError(file + ": missing 'input_shape'");
  meta.input_shape = ShapeFromJson(*input_shape, file, "input_shape");
  if (auto out_shape = get("output_shape")) {
    meta.output_shape = ShapeFromJson(*out_shape, file, "output_shape");
  }
  get_string("input_dtype", &meta.input_dtype);
  get_string("entry", &meta.entry);
  if (meta.input_dtype != "float32") {
    throw ModelError(file + ": input_dtype '" + meta.input_dtype + "' is not supported (float32 only)");
  }
  // target.resolved.kind: llvm runs on the CPU, cuda on GPU 0; anything else is refused here
  // rather than failing inside TVM
  if (auto target = get("target")) {
    auto t = target->try_cast<ffi::Map<ffi::Any, ffi::Any>>();
    auto resolved = t.has_value() ? t->Get(ffi::Any(ffi::String("resolved"))) : std::nullopt;
    auto r = resolved.has_value() ? resolved->try_cast<ffi::Map<ffi::Any, ffi::Any>>() : std::nullopt;
    auto kind = r.has_value() ? r->Get(ffi::Any(ffi::String("kind"))) : std::nullopt;
    auto k = kind.has_value() ? kind->try_cast<ffi::String>() : std::nullopt;
    if (k.has_value() && std::string(*k) == "cuda") {
      meta.device = "cuda";
    } else if (k.has_value() && std::string(*k) != "llvm") {
      throw ModelError(file + ": target.resolved.kind '" + std::string(*k) +
                       "' is not supported by this runtime (llvm or cuda)");
    }
  }
  return meta;
}

struct Model::Impl {
  ffi::Module lib;  // keeps model.so mapped: tensors the VM returns are freed by code in it
  ffi::Module vm;
  ffi::Function entry;
  ffi::Tensor input;  // reused across runs so Run() allocates nothing on the input side
  ffi::Tensor device_input;  // the input's copy on the GPU (undefined for CPU libraries)
  ffi::Function copy;        // runtime.TVMTensorCopyFromTo, for GPU libraries
};

namespace {

// The part of loading that talks to TVM; ffi::Error is turned into ModelError by the caller.
std::unique_ptr<Model::Impl> LoadVM(const std::string& so, const Metadata& meta);

}  // namespace

Model::Model(const std::string& artifact_dir) : dir_(artifact_dir), meta_(ReadMetadata(artifact_dir)) {
  const std::string so = dir_ + "/model.so";
  if (!std::ifstream(so)) throw ModelError(so + ": cannot open (is this an artifact directory?)");
  try {
    impl_ = LoadVM(so, meta_);
  } catch (const ffi::Error& err) {
    throw ModelError(OneLine(so, err));
  }
}

namespace {

// The CUDA device API and module loader live in the wheel's libtvm_runtime_cuda.so, which
// libtvm_runtime does not load by itself (Python's tvm does, on import).
void LoadCudaRuntime(const std::string& so) {
  if (ffi::Function::GetGlobal("ffi.Module.load_from_bytes.cuda").has_value()) return;
  if (dlopen("libtvm_runtime_cuda.so", RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    const char* why = dlerror();
    throw ModelError(so + ": a CUDA library needs libtvm_runtime_cuda.so (beside libtvm_runtime.so) "
                     "and the CUDA runtime on the library path: " + std::string(why ? why : "not found"));
  }
}

ffi::Function Global(const std::string& so, const char* name) {
  auto f = ffi::Function::GetGlobal(name);
  if (!f.has_value()) throw ModelError(so + ": the TVM runtime has no '" + name + "'");
  return *f;
}

std::unique_ptr<Model::Impl> LoadVM(const std::string& so, const Metadata& meta) {
  const bool cuda = meta.device == "cuda";
  if (cuda) LoadCudaRuntime(so);
  ffi::Module lib = ffi::Module::LoadFromFile(so);
  auto load_exec = lib->GetFunction("vm_load_executable", /*query_imports=*/true);
  if (!load_exec.has_value()) {
    throw ModelError(so + ": no 'vm_load_executable' (not a Relax VM executable from tvm.compile?)");
  }
  ffi::Module vm = (*load_exec)().cast<ffi::Module>();
  auto init = vm->GetFunction("vm_initialization", true);
  if (!init.has_value()) throw ModelError(so + ": the VM has no 'vm_initialization'");
  // The pooled allocator on each device, as Python's VirtualMachine does by default; a GPU
  // library also gets the CPU as its host device (last), like Python's.
  if (cuda) {
    (*init)(static_cast<int>(kDLCUDA), 0, kPooledAllocator, static_cast<int>(kDLCPU), 0,
            kPooledAllocator);
  } else {
    (*init)(static_cast<int>(kDLCPU), 0, kPooledAllocator);
  }
  auto entry = vm->GetFunction(ffi::String(meta.entry), true);
  if (!entry.has_value()) throw ModelError(so + ": no entry function '" + meta.entry + "'");
  const DLDataType f32{kDLFloat, 32, 1};
  ffi::Tensor input = ffi::Tensor::FromNDAlloc(
      AlignedCPUAlloc(), ffi::ShapeView(meta.input_shape.data(), meta.input_shape.size()), f32,
      DLDevice{kDLCPU, 0});
  auto impl = std::make_unique<Model::Impl>(
      Model::Impl{lib, vm, *entry, input, ffi::Tensor(), ffi::Function()});
  if (cuda) {
    impl->device_input = Global(so, "runtime.TVMTensorAllocWithScope")(
        ffi::Shape(meta.input_shape), f32, DLDevice{kDLCUDA, 0}, nullptr).cast<ffi::Tensor>();
    impl->copy = Global(so, "runtime.TVMTensorCopyFromTo");
  }
  return impl;
}

}  // namespace

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

std::vector<float> Model::Run(const float* input, size_t n) {
  const std::string so = dir_ + "/model.so";
  if (n != input_size()) {
    throw ModelError(so + ": input has " + std::to_string(n) + " floats, the model takes " +
                     ShapeString(meta_.input_shape) + " = " + std::to_string(input_size()));
  }
  std::memcpy(impl_->input.data_ptr(), input, n * sizeof(float));
  try {
    ffi::Tensor arg = impl_->input;
    if (impl_->device_input.defined()) {
      impl_->copy(impl_->input, impl_->device_input);
      arg = impl_->device_input;
    }
    ffi::Any ret = impl_->entry(arg);
    // Relax returns a tuple when the exported program had one (torch.export does): take the
    // first field.
    if (auto tuple = ret.try_cast<ffi::Array<ffi::Any>>()) {
      if (tuple->empty()) throw ModelError(so + ": entry function returned an empty tuple");
      ret = (*tuple)[0];
    }
    auto out = ret.try_cast<ffi::Tensor>();
    if (!out.has_value()) throw ModelError(so + ": entry function did not return a tensor");
    const DLDataType dt = out->dtype();
    if (dt.code != kDLFloat || dt.bits != 32 || dt.lanes != 1) {
      throw ModelError(so + ": output is not float32");
    }
    if (out->device().device_type != kDLCPU && impl_->device_input.defined()) {
      // a blocking copy back: the GPU's work is done when Run() returns
      ffi::Tensor host = ffi::Tensor::FromNDAlloc(AlignedCPUAlloc(), out->shape(), dt,
                                                  DLDevice{kDLCPU, 0});
      impl_->copy(*out, host);
      out = host;
    }
    if (out->device().device_type != kDLCPU || !out->IsContiguous()) {
      throw ModelError(so + ": output is not a contiguous CPU tensor");
    }
    ffi::ShapeView shape = out->shape();
    last_output_shape_.assign(shape.begin(), shape.end());
    const float* data = reinterpret_cast<const float*>(static_cast<const char*>(out->data_ptr()) +
                                                       out->byte_offset());
    return std::vector<float>(data, data + out->numel());
  } catch (const ffi::Error& err) {
    throw ModelError(OneLine(so, err));
  }
}

int RuntimeThreads() {
  auto num_threads = ffi::Function::GetGlobal("runtime.NumThreads");
  if (!num_threads.has_value()) return 0;
  return (*num_threads)().cast<int>();
}

}  // namespace tvm_ofa
