#!/usr/bin/env bash
# Reproduces the bundled model weights/germseg_unet3d.pt: phantom training data from seeds
# 0..N-1 (seeds >= 10000 are reserved for evaluation), then two `germseg train` runs on the
# CPU: stage 1 with "thick" boundary targets and w0 = 10; stage 2 fine-tunes stage 1's best
# checkpoint with anisotropic boundary targets (thick boundaries between Z planes covered
# ~40 % of small cells, and the network learned to call whole cells boundary) and w0 = 5.
# Usage: weights/train_bundled.sh [DATA_DIR] [RUN_DIR]
set -euo pipefail
DATA=${1:-runs/bundled-data}
RUN=${2:-runs/bundled}
N_STACKS=${N_STACKS:-80}
EPOCHS_STAGE1=${EPOCHS_STAGE1:-44}
EPOCHS_STAGE2=${EPOCHS_STAGE2:-27}

mkdir -p "$DATA"
python - "$DATA" "$N_STACKS" <<'PY'
import sys
from pathlib import Path

from segmentation.synthetic import write_phantom

data, n_stacks = Path(sys.argv[1]), int(sys.argv[2])
rows = ["image,mask,split"]
for seed in range(n_stacks):
    depth = 20 + (seed % 5) * 5  # Z from 20 to 40, as in real stacks
    split = "val" if seed % 10 == 9 else "train"
    if not (data / f"s{seed}" / "labels.tif").is_file():
        write_phantom(data / f"s{seed}", shape=(depth, 384, 384), seed=seed)
    rows.append(f"s{seed}/image.tif,s{seed}/labels.tif,{split}")
(data / "data.csv").write_text("\n".join(rows) + "\n")
PY

germseg train --data "$DATA/data.csv" --out "$RUN" --epochs "$EPOCHS_STAGE1" \
  --patch 24,128,128 --batch 2 --lr 1e-3 --bf16 --seed 0 --patches-per-epoch 64 \
  --f-maps 16 --patience 15 --boundary-mode thick --connectivity 2 --w0 10 \
  --name germseg-unet3d-phantom-v1 --device cpu

germseg train --data "$DATA/data.csv" --out "$RUN-stage2" --epochs "$EPOCHS_STAGE2" \
  --init "$RUN/best_checkpoint.pytorch" \
  --patch 24,128,128 --batch 2 --lr 5e-4 --bf16 --seed 1 --patches-per-epoch 64 \
  --patience 12 --boundary-mode anisotropic --w0 5 \
  --name germseg-unet3d-phantom-v1 --device cpu

cp "$RUN-stage2/best_checkpoint.pytorch" weights/germseg_unet3d.pt
cp "$RUN-stage2/best_checkpoint.json" weights/germseg_unet3d.json
# The card's "metrics" come from: python benchmarks/eval_model.py --seeds 10000-10003
