#!/usr/bin/env bash
# The GPU checks in one go, on a machine with a CUDA GPU, from the repository root:
#   bash benchmarks/gpu.sh [OUT_DIR]
# writes the GPU's name, the CUDA tests' output (tests/test_gpu.py), and `lfrefsr bench --device cuda` in float32 and
# bf16 (stage table, JSON) into OUT_DIR (default gpu_report/).
set -o pipefail
out=${1:-gpu_report}
mkdir -p "$out"
python=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
"$python" -m pytest -q -p no:cacheprovider -rs tests/test_gpu.py 2>&1 | tee "$out/pytest_gpu.txt"
for precision in fp32 bf16; do
    "$python" -m lfrefsr.cli bench --device cuda --precision "$precision" --json "$out/bench_cuda_$precision.json" \
        2>&1 | tee "$out/bench_cuda_$precision.txt"
done
