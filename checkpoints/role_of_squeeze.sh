#!/bin/bash
# The "Role of Squeeze" runs of MODEL_CARD.md: SE-ResNet-20 with SE, NoSqueeze and no gate, 3 seeds
# each, 4 epochs (cosine), on Fashion-MNIST train; test accuracy on the full test set.
#   checkpoints/role_of_squeeze.sh OUT      (then: .venv/bin/python checkpoints/role_of_squeeze.py OUT)
set -euo pipefail
out=${1:?usage: role_of_squeeze.sh OUT}
for seed in 0 1 2; do
  for se in se nosqueeze none; do
    [ -f "$out/${se}_seed${seed}/final.json" ] && continue
    .venv/bin/se-analysis train --arch se_resnet20 --se $se --reduction 4 --data fashion-mnist:train \
      --epochs 4 --seed $seed --snapshots "" --out "$out/${se}_seed${seed}" --quiet --overwrite
  done
done
