#!/bin/bash
# The "Role of Squeeze" runs of MODEL_CARD.md: SE-ResNet-20 with SE, NoSqueeze and no gate, 3 seeds
# each, trained as fmnist_se20 (cosine, batch 128) but for 6 epochs and without snapshots; test
# accuracy on the full test set. JOBS runs go at once (each is launch-bound on a GPU: one CPU core
# and a sliver of the card); SE_ANALYSIS names the command (default .venv/bin/se-analysis).
#   scripts/role_of_squeeze.sh OUT [JOBS] [EPOCHS]   (then: python scripts/role_of_squeeze.py OUT)
set -euo pipefail
out=${1:?usage: role_of_squeeze.sh OUT [JOBS] [EPOCHS]}
jobs=${2:-1}
export epochs=${3:-6} out SE_ANALYSIS=${SE_ANALYSIS:-.venv/bin/se-analysis}
mkdir -p "$out"
for seed in 0 1 2; do
  for se in se nosqueeze none; do
    [ -f "$out/${se}_seed${seed}/final.json" ] || echo "$se $seed"
  done
done | xargs -P "$jobs" -L 1 bash -c '$SE_ANALYSIS train --arch se_resnet20 --se $0 --reduction 4 \
  --data fashion-mnist:train --epochs $epochs --seed $1 --snapshots "" --out "$out/$0_seed$1" \
  --overwrite > "$out/$0_seed$1.log" 2>&1'
