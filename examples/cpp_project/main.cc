// classify: run the subnet that tvm_ofa_add_model(NAME mbv3 ...) compiled at build time.
// Usage: classify [artifact-dir]   (default: the directory baked into <mbv3_model.h>)
#include <algorithm>
#include <cstdio>
#include <vector>

#include <mbv3_model.h>  // generated: tvm_ofa_models::mbv3::kModelDir
#include <tvm_ofa_model.h>

int main(int argc, char** argv) {
  const char* dir = argc > 1 ? argv[1] : tvm_ofa_models::mbv3::kModelDir;
  try {
    tvm_ofa::Model model(dir);
    // A real application fills this with a normalized RGB image, NCHW, metadata().input_shape.
    std::vector<float> image(model.input_size(), 0.5f);
    std::vector<float> logits = model.Run(image);
    size_t best = std::max_element(logits.begin(), logits.end()) - logits.begin();
    std::printf("classes=%zu argmax=%zu score=%.6g\n", logits.size(), best, logits[best]);
  } catch (const tvm_ofa::ModelError& e) {
    std::fprintf(stderr, "classify: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
