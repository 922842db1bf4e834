#!/bin/bash
# Runs on the GPU machine, from a folder written by bench/cuda_device/prepare.py:
#   bash <folder>/run.sh [out-dir]
# The C++ runner runs each artifact three times (300 calls after 30 warm-up), writing its logits
# to out-dir; torch_ref.py times PyTorch eager on the same GPU when torch is installed there.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/out}"
mkdir -p "$out"
export LD_LIBRARY_PATH="$here/lib:/usr/local/cuda/lib64:/usr/local/cuda/lib:${LD_LIBRARY_PATH:-}"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
for a in "$here"/art/cuda-sm90/*/; do
  id=$(basename "$a")
  for i in 1 2 3; do
    timeout 120 "$here/tvm_ofa_run" "$a" --input "$a/x.npy" --output "$out/logits_$id.bin" \
      --repeat 300 --warmup 30 2>&1 | grep -E '^(artifact|latency_ms)|error'
  done
done
if python3 -c "import torch" 2>/dev/null; then
  timeout 200 python3 "$here/torch_ref.py" "$here" 2>&1 | tail -5
fi
