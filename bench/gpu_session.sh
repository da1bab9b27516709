#!/bin/bash
# Every GPU measurement of README's Benchmarks and MODEL_CARD's Role-of-Squeeze table, in one lease
# of a CUDA machine (each step capped so the whole fits ~9 minutes); results and logs go to OUT.
#   FASHION_MNIST_DIR=... bench/gpu_session.sh OUT        (from the repository root)
set -uo pipefail
out=${1:?usage: gpu_session.sh OUT}
export PYTHONPATH=$PWD:$PWD/bench:${PYTHONPATH:-} PYTHONUNBUFFERED=1 SE_ANALYSIS="${PYTHON:-python3} -m analysis"
py=${PYTHON:-python3}
step() { echo "== $(date +%T) $*"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee "$out/device.txt"
$py -c "import torch, torchvision, timm; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__, 'timm', timm.__version__)" | tee -a "$out/device.txt"

step "Role of Squeeze: 9 runs at once, 20 epochs each; JPEG folder written beside them on the CPU"
$py bench/make_jpeg_folder.py /tmp/fake-imagenet --classes 1000 --per-class 20 --jobs 6 > "$out/jpeg_folder.txt" 2>&1 &
OMP_NUM_THREADS=1 timeout ${TRAIN_S:-300} checkpoints/role_of_squeeze.sh /tmp/sq 9 20
$py checkpoints/role_of_squeeze.py /tmp/sq > "$out/role_of_squeeze.md" 2>&1
tar czf "$out/role_of_squeeze.tgz" -C /tmp sq
grep -aH -o 'epoch 1: .*\|epoch 20: .*\|test accuracy.*\|error.*' /tmp/sq/*.log
wait

step "collection against plain inference, already on the device"
timeout 60 $py bench/gpu_throughput.py --models timm:seresnet50 --compile-modes eager 2>&1 | tee "$out/gpu_throughput.txt"
timeout 130 $py bench/gpu_throughput.py --models timm:seresnet50 --compile-modes compile 2>&1 | tee -a "$out/gpu_throughput.txt"
step "JPEG folder end to end"
cat "$out/jpeg_folder.txt"
timeout 100 $py bench/jpeg_pipeline.py /tmp/fake-imagenet --limit 10240 --workers 16 --read-workers 4 \
  --repeats 2 2>&1 | tee "$out/jpeg_pipeline.txt"

step "collect, ablate, attribute on the GPU: shipped model, Fashion-MNIST test set"
timeout 90 bash -c "time $SE_ANALYSIS collect --model checkpoints/fmnist_se20 --data fashion-mnist --out /tmp/fm_run --quiet \
  && time $SE_ANALYSIS ablate --model checkpoints/fmnist_se20 --data fashion-mnist --out /tmp/fm_run --quiet \
  && time $SE_ANALYSIS attribute --model checkpoints/fmnist_se20 --data fashion-mnist --out /tmp/fm_run --quiet" \
  > "$out/fm_gpu.txt" 2>&1; tail -n 25 "$out/fm_gpu.txt"
step "collection against plain inference: torchvision SE models, eager"
timeout 45 $py bench/gpu_throughput.py --models torchvision:efficientnet_b0,torchvision:regnet_y_800mf \
  --compile-modes eager 2>&1 | tee -a "$out/gpu_throughput.txt"

step "GPU tests"
timeout 50 $py -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_jpeg.py 2>&1 | tail -n 5 | tee "$out/gpu_tests.txt"
step done
