// tvm_ofa_run: run one tvm-ofa artifact from the command line and print its top-5 and latency.
//
//   tvm_ofa_run <artifact-dir> [--input x.npy | --raw x.bin] [--repeat N] [--warmup N]
//               [--threads N] [--output logits.bin]
//
// Output (stable; one record per line, "key value" / "key=value" tokens, parse by the first word):
//   artifact <dir>
//   input <zeros|pattern|npy:path|raw:path> shape=1x3x224x224
//   output shape=1x1000
//   top rank=1 index=409 score=12.3456789
//   ... (5 lines, or fewer when there are fewer classes)
//   latency_ms median=1.234 p90=1.456 min=1.200 repeat=10 warmup=3 threads=2
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "tvm_ofa_model.h"

namespace {

using tvm_ofa::ModelError;

struct Options {
  std::string artifact;
  std::string npy_path;
  std::string raw_path;
  std::string output_path;
  int repeat = 10;
  int warmup = 3;
  int threads = 0;  // 0: TVM_NUM_THREADS if set, else every logical CPU
};

const char kUsage[] =
    "usage: tvm_ofa_run <artifact-dir> [--input x.npy | --raw x.bin] [--repeat N] [--warmup N]"
    " [--threads N] [--output logits.bin]\n"
    "  without --input/--raw the input is the deterministic pattern\n"
    "  x[i] = float32((i % 251) / 125.0 - 1.0) over the flattened NCHW input\n";

int ParseCount(const char* flag, const char* value, int min) {
  char* end = nullptr;
  long v = std::strtol(value, &end, 10);
  if (*value == '\0' || *end != '\0' || v < min || v > 1000000) {
    throw std::invalid_argument(std::string(flag) + ": expected an integer >= " +
                                std::to_string(min) + ", got '" + value + "'");
  }
  return static_cast<int>(v);
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) throw std::invalid_argument(a + ": missing value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--input") {
      o.npy_path = value();
    } else if (a == "--raw") {
      o.raw_path = value();
    } else if (a == "--output") {
      o.output_path = value();
    } else if (a == "--repeat") {
      o.repeat = ParseCount("--repeat", value(), 1);
    } else if (a == "--warmup") {
      o.warmup = ParseCount("--warmup", value(), 0);
    } else if (a == "--threads") {
      o.threads = ParseCount("--threads", value(), 1);
    } else if (!a.empty() && a[0] == '-') {
      throw std::invalid_argument("unknown option " + a);
    } else if (o.artifact.empty()) {
      o.artifact = a;
    } else {
      throw std::invalid_argument("unexpected argument " + a);
    }
  }
  if (o.artifact.empty()) throw std::invalid_argument("missing <artifact-dir>");
  if (!o.npy_path.empty() && !o.raw_path.empty()) {
    throw std::invalid_argument("--input and --raw are exclusive");
  }
  return o;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ModelError(path + ": cannot open");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "x" : "") + std::to_string(shape[i]);
  return s;
}

// Minimal .npy reader: little-endian float32, C order, format versions 1-3. Anything else is
// refused rather than converted, so a wrong file never runs silently.
std::vector<float> ReadNpy(const std::string& path, std::vector<int64_t>* shape) {
  const std::string data = ReadFile(path);
  if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) {
    throw ModelError(path + ": not a .npy file");
  }
  const int major = static_cast<unsigned char>(data[6]);
  size_t header_len = 0, header_start = 0;
  if (major == 1) {
    header_len = static_cast<unsigned char>(data[8]) | (static_cast<unsigned char>(data[9]) << 8);
    header_start = 10;
  } else if (major == 2 || major == 3) {
    if (data.size() < 12) throw ModelError(path + ": truncated .npy header");
    header_len = 0;
    for (int b = 3; b >= 0; --b) header_len = (header_len << 8) | static_cast<unsigned char>(data[8 + b]);
    header_start = 12;
  } else {
    throw ModelError(path + ": unsupported .npy version " + std::to_string(major));
  }
  if (header_start + header_len > data.size()) throw ModelError(path + ": truncated .npy header");
  const std::string header = data.substr(header_start, header_len);

  auto field = [&](const std::string& key) -> std::string {
    size_t k = header.find("'" + key + "'");
    if (k == std::string::npos) throw ModelError(path + ": .npy header lacks '" + key + "'");
    size_t colon = header.find(':', k);
    size_t start = header.find_first_not_of(' ', colon + 1);
    if (colon == std::string::npos || start == std::string::npos) {
      throw ModelError(path + ": malformed .npy header");
    }
    size_t end = header[start] == '(' ? header.find(')', start) + 1 : header.find_first_of(",}", start);
    return header.substr(start, end - start);
  };
  const std::string descr = field("descr");
  if (descr != "'<f4'" && descr != "'=f4'") {
    throw ModelError(path + ": dtype " + descr + " is not little-endian float32 (use x.astype(np.float32))");
  }
  if (field("fortran_order") != "False") throw ModelError(path + ": Fortran order is not supported");

  shape->clear();
  const std::string dims = field("shape");  // e.g. "(1, 3, 224, 224)" or "(10,)"
  size_t pos = 1;
  while (pos < dims.size()) {
    size_t digit = dims.find_first_of("0123456789", pos);
    if (digit == std::string::npos) break;
    size_t end = dims.find_first_not_of("0123456789", digit);
    shape->push_back(std::stoll(dims.substr(digit, end - digit)));
    pos = end;
  }
  const size_t count = tvm_ofa::NumElements(*shape);
  const size_t offset = header_start + header_len;
  if (data.size() - offset != count * sizeof(float)) {
    throw ModelError(path + ": data size does not match shape " + dims);
  }
  std::vector<float> out(count);
  std::memcpy(out.data(), data.data() + offset, count * sizeof(float));
  return out;
}

std::vector<float> ReadRaw(const std::string& path, size_t expected) {
  const std::string data = ReadFile(path);
  if (data.size() != expected * sizeof(float)) {
    throw ModelError(path + ": " + std::to_string(data.size()) + " bytes, expected " +
                     std::to_string(expected * sizeof(float)) + " (raw float32)");
  }
  std::vector<float> out(expected);
  std::memcpy(out.data(), data.data(), data.size());
  return out;
}

// Deterministic, non-constant input: zeros would make every class score equal to its bias.
std::vector<float> PatternInput(size_t n) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>((i % 251) / 125.0 - 1.0);
  return x;
}

double Percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  // nearest rank: the smallest value with at least q of the samples at or below it
  size_t rank = static_cast<size_t>(std::ceil(q * v.size()));
  return v[std::max<size_t>(rank, 1) - 1];
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : 0.5 * (v[m - 1] + v[m]);
}

int Main(const Options& o) {
  // TVM's thread pool reads this once, when it starts on the first run. Unset, TVM takes half
  // the logical CPUs on x86 (it assumes SMT): one thread on a 2-core VM without SMT.
  if (o.threads > 0) {
    setenv("TVM_NUM_THREADS", std::to_string(o.threads).c_str(), 1);
  } else if (std::getenv("TVM_NUM_THREADS") == nullptr) {
    unsigned n = std::thread::hardware_concurrency();
    if (n > 0) setenv("TVM_NUM_THREADS", std::to_string(n).c_str(), 1);
  }
  tvm_ofa::Model model(o.artifact);
  const auto& meta = model.metadata();

  std::vector<float> input;
  std::string source;
  if (!o.npy_path.empty()) {
    std::vector<int64_t> shape;
    input = ReadNpy(o.npy_path, &shape);
    if (input.size() != model.input_size()) {
      throw ModelError(o.npy_path + ": shape " + ShapeString(shape) + " does not match the model input " +
                       ShapeString(meta.input_shape));
    }
    source = "npy:" + o.npy_path;
  } else if (!o.raw_path.empty()) {
    input = ReadRaw(o.raw_path, model.input_size());
    source = "raw:" + o.raw_path;
  } else {
    input = PatternInput(model.input_size());
    source = "pattern";
  }

  for (int i = 0; i < o.warmup; ++i) model.Run(input);
  std::vector<double> ms;
  std::vector<float> logits;
  for (int i = 0; i < o.repeat; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    logits = model.Run(input);
    auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }

  if (!o.output_path.empty()) {
    std::ofstream out(o.output_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(logits.data()), logits.size() * sizeof(float));
    if (!out) throw ModelError(o.output_path + ": cannot write");
  }

  std::vector<size_t> order(logits.size());
  std::iota(order.begin(), order.end(), 0);
  const size_t k = std::min<size_t>(5, order.size());
  // ties keep the lower index first, as a stable argsort of -scores does
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](size_t a, size_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });

  std::printf("artifact %s\n", o.artifact.c_str());
  std::printf("input %s shape=%s\n", source.c_str(), ShapeString(meta.input_shape).c_str());
  std::printf("output shape=%s\n", ShapeString(model.output_shape()).c_str());
  for (size_t r = 0; r < k; ++r) {
    std::printf("top rank=%zu index=%zu score=%.9g\n", r + 1, order[r], logits[order[r]]);
  }
  std::printf("latency_ms median=%.4f p90=%.4f min=%.4f repeat=%d warmup=%d threads=%d\n",
              Median(ms), Percentile(ms, 0.9), *std::min_element(ms.begin(), ms.end()), o.repeat,
              o.warmup, tvm_ofa::RuntimeThreads());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = ParseArgs(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tvm_ofa_run: error: %s\n%s", e.what(), kUsage);
    return 2;
  }
  try {
    return Main(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tvm_ofa_run: error: %s\n", e.what());
    return 1;
  }
}
