#!/bin/bash
# Every GPU measurement of README's Benchmarks in one lease of a CUDA machine, each step capped so
# the whole fits 9 minutes; results and logs go to OUT. (The Role-of-Squeeze training is
# scripts/role_of_squeeze.sh, run on its own: see checkpoints/MODEL_CARD.md.)
#   bench/gpu_session.sh OUT        (from the repository root; captum's wheel on PYTHONPATH)
# CLASSES, PER_CLASS and LIMIT shrink the JPEG folder for a smoke test on a CPU.
set -uo pipefail
out=${1:?usage: gpu_session.sh OUT}
classes=${CLASSES:-1000} per_class=${PER_CLASS:-20} limit=${LIMIT:-10240}
export PYTHONPATH=$PWD:$PWD/bench:${PYTHONPATH:-} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
step() { echo "== $(date +%T) $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/device.txt"
$py -c "import torch, torchvision, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__, 'timm', timm.__version__)" | tee -a "$out/device.txt"
$py bench/make_jpeg_folder.py /tmp/fake-imagenet --classes $classes --per-class $per_class --jobs 8 > "$out/jpeg_folder.txt" 2>&1 &
$py bench/stats_kernels.py | tee "$out/stats_kernels.txt"

step "collection against plain inference, eager, inputs on the device"
timeout 60 $py bench/gpu_throughput.py --models timm:seresnet50 --compile-modes eager 2>&1 | tee "$out/gpu_throughput.txt"
timeout 60 $py bench/gpu_throughput.py --models torchvision:efficientnet_b0,torchvision:regnet_y_800mf \
  --compile-modes eager 2>&1 | tee -a "$out/gpu_throughput.txt"

step "JPEG folder end to end (folder written meanwhile on the CPU)"
wait
cat "$out/jpeg_folder.txt"
timeout 120 $py bench/jpeg_pipeline.py /tmp/fake-imagenet --limit $limit --workers 16 --read-workers 4 \
  --repeats 2 2>&1 | tee "$out/jpeg_pipeline.txt"

step "collection against plain inference, compiled (each mode compiles for a minute or more)"
timeout 240 $py bench/gpu_throughput.py --models timm:seresnet50 --compile-modes compile 2>&1 | tee -a "$out/gpu_throughput.txt"

step "GPU tests"
timeout 90 $py -m pytest -q -p no:cacheprovider tests/capture/test_gpu.py tests/data/test_jpeg.py 2>&1 | tail -n 5 | tee "$out/gpu_tests.txt"
step done
