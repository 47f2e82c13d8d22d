#!/usr/bin/env bash
# Reproduces the bundled model weights/germseg_unet3d.pt on a CPU, in nine `germseg train`
# stages on synthetic phantoms (seeds >= 10000 are reserved for evaluation, >= 20000 for
# tuning, so none is used here):
#   1. "thick" boundary targets, w0 = 10, on 80 stacks of (Z, 384, 384);
#   2. fine-tunes stage 1's best checkpoint with anisotropic boundary targets (thick
#      boundaries between Z planes covered ~40 % of small cells, and the network learned to
#      call whole cells boundary) and w0 = 5, same data;
#   3. fine-tunes stage 2's best checkpoint on 72 larger stacks of (Z, 512, 512) from the
#      current generator (folded gonad arms, tube filling the depth), keeping patches that
#      are almost all background, so that the network sees camera noise far from tissue;
#   4. continues from stage 3's best checkpoint at a lower learning rate that is halved less
#      eagerly (stage 3's noisy validation loss had cut it to 3e-5 within 45 epochs);
#   5. continues from stage 4's best checkpoint after the Z-flip fix of the training data
#      (a Z-flipped patch now gets the targets of its flipped labels; stages 2-4 ran before
#      it, so half their patches marked the upper instead of the lower plane of faces
#      between Z planes);
#   6. continues from stage 5's last checkpoint (epoch 58) with 32-plane patches that are
#      edge-padded and reach up to 8 planes past a stack's first or last plane, which is how
#      inference shows a 25-plane stack (edge-padded into a 32-plane window). The shipped
#      weights were stage 6's best checkpoint (epoch 35 of 45), model v4;
#   7. continues from stage 6's best checkpoint with "anisotropic-symmetric" boundary targets:
#      a face between two Z planes is 0.5 on both planes instead of 1 on the lower one, so a
#      thin cap of a cell cut by the stack's first plane is no longer all boundary. The
#      weights of model v5 were stage 7's best checkpoint (epoch 35 of 36);
#   8. continues from model v5 on phantoms of the photon-limited generator (issue 16: noise,
#      face contrast, blur, clipping and depth profile matched to a real stack's
#      statistics; weights/make_phantom_data.py, 64 stacks of (Z, 512, 512), seeds 200-263)
#      mixed with the real plant-membrane crop of ../shared/data/plant-membrane-patch (its
#      first 120 X pixels train, listed 12 times; the last 80 validate;
#      weights/make_plant_data.py), with the physical augmentation (signal blur with white
#      noise kept, photon level as shot noise, brighter or dimmer faces between cells) and
#      10 % single-channel patches. The
#      weights of model v6 were stage 8's best checkpoint; the run was stopped by hand after
#      50 epochs (the CPU time of one session); its best checkpoint is epoch 34;
#   9. continues from model v6 on 96 phantoms of the same generator (seeds 200-295, 50 %
#      more than stage 8) and the same plant crop split, at a lower learning rate (2e-4,
#      halved after 10 flat epochs), in float32 (a CPU without native bfloat16). The shipped
#      weights (model v7) are stage 9's best checkpoint (epoch 33); the run ended with the
#      session after 43 epochs;
#  10. continues from model v7 on the same 96 phantoms with the plant crop's training part
#      listed 24 times (about 6 % of the patches, twice stage 9's share), in bfloat16
#      autocast (a 2-core Xeon with AMX), 100 epochs along a cosine learning-rate schedule
#      from 2e-4 to 4e-6 (stage 9's validation loss was flat at a constant rate). The
#      shipped weights (model v8) are stage 10's last checkpoint.
# Stages 1 and 2 of the shipped model ran with the phantom generator of commit d8afca7
# (check it out to reproduce them exactly); stages 3-7 with the generator of commit 031c266
# (the last before the photon-limited generator); stages 8 and 9 with the generator of this
# commit;
# stages 2-4 with the training data code of commit 0bc4370 (before the Z-flip fix). Runs 1-5
# were stopped by hand; the epoch counts below reproduce them.
# Stages 1-8 ran with bfloat16 autocast (--bf16) on a CPU with native bfloat16, stage 9 in
# float32 (BF16 is not used by it). On a CPU
# without it (AVX2 only: PyTorch emulates bfloat16 there, far slower than float32), run
# with BF16= to train in float32; on a GPU --bf16 is fine.
# Usage: [BF16=] [FROM_V5=v5.pt | FROM_V6=v6.pt | FROM_V7=v7.pt] weights/train_bundled.sh [RUN_DIR]
set -euo pipefail
HERE=$(dirname "$0")
RUN=${1:-runs/bundled}
BF16=${BF16---bf16}
EPOCHS_STAGE1=${EPOCHS_STAGE1:-44}
EPOCHS_STAGE2=${EPOCHS_STAGE2:-27}
EPOCHS_STAGE3=${EPOCHS_STAGE3:-51}
EPOCHS_STAGE4=${EPOCHS_STAGE4:-49}
EPOCHS_STAGE5=${EPOCHS_STAGE5:-58}
EPOCHS_STAGE6=${EPOCHS_STAGE6:-45}
EPOCHS_STAGE7=${EPOCHS_STAGE7:-36}
EPOCHS_STAGE8=${EPOCHS_STAGE8:-50}
EPOCHS_STAGE9=${EPOCHS_STAGE9:-43}
EPOCHS_STAGE10=${EPOCHS_STAGE10:-100}
PLANT=${PLANT:-$HERE/../../shared/data/plant-membrane-patch}

# FROM_V5=FILE skips stages 1-7 and starts stage 8 from that file, e.g. model v5 as
# committed: git show 031c266:weights/germseg_unet3d.pt > v5.pt (and its .json beside it);
# FROM_V6=FILE skips stages 1-8 and starts stage 9 from it (model v6: commit 149c208);
# FROM_V7=FILE skips stages 1-9 and starts stage 10 from it (model v7: commit 2cf60df)
if [ -z "${FROM_V7:-}" ]; then
if [ -z "${FROM_V6:-}" ]; then
if [ -z "${FROM_V5:-}" ]; then
python "$HERE/make_phantom_data.py" "$RUN-data" 80 384 0
python "$HERE/make_phantom_data.py" "$RUN-data-v2" 72 512 100

germseg train --data "$RUN-data/data.csv" --out "$RUN" --epochs "$EPOCHS_STAGE1" \
  --patch 24,128,128 --batch 2 --lr 1e-3 $BF16 --seed 0 --patches-per-epoch 64 \
  --f-maps 16 --patience 15 --boundary-mode thick --connectivity 2 --w0 10 \
  --name germseg-unet3d-phantom-v1 --device cpu

germseg train --data "$RUN-data/data.csv" --out "$RUN-stage2" --epochs "$EPOCHS_STAGE2" \
  --init "$RUN/best_checkpoint.pytorch" \
  --patch 24,128,128 --batch 2 --lr 5e-4 $BF16 --seed 1 --patches-per-epoch 64 \
  --patience 12 --boundary-mode anisotropic --w0 5 \
  --name germseg-unet3d-phantom-v1 --device cpu

germseg train --data "$RUN-data-v2/data.csv" --out "$RUN-stage3" --epochs "$EPOCHS_STAGE3" \
  --init "$RUN-stage2/best_checkpoint.pytorch" \
  --patch 24,128,128 --batch 2 --lr 5e-4 $BF16 --seed 2 --patches-per-epoch 64 \
  --patience 30 --boundary-mode anisotropic --w0 5 --keep-background-patches \
  --name germseg-unet3d-phantom-v2 --device cpu

germseg train --data "$RUN-data-v2/data.csv" --out "$RUN-stage4" --epochs "$EPOCHS_STAGE4" \
  --init "$RUN-stage3/best_checkpoint.pytorch" \
  --patch 24,128,128 --batch 2 --lr 2.5e-4 $BF16 --seed 3 --patches-per-epoch 64 \
  --patience 40 --lr-patience 12 --boundary-mode anisotropic --w0 5 --keep-background-patches \
  --name germseg-unet3d-phantom-v2 --device cpu

germseg train --data "$RUN-data-v2/data.csv" --out "$RUN-stage5" --epochs "$EPOCHS_STAGE5" \
  --init "$RUN-stage4/best_checkpoint.pytorch" \
  --patch 24,128,128 --batch 2 --lr 2.5e-4 $BF16 --seed 5 --patches-per-epoch 64 \
  --patience 40 --lr-patience 12 --boundary-mode anisotropic --w0 5 --keep-background-patches \
  --name germseg-unet3d-phantom-v3 --device cpu

germseg train --data "$RUN-data-v2/data.csv" --out "$RUN-stage6" --epochs "$EPOCHS_STAGE6" \
  --init "$RUN-stage5/last_checkpoint.pytorch" \
  --patch 32,128,128 --batch 2 --lr 2e-4 $BF16 --seed 7 --patches-per-epoch 64 \
  --patience 45 --lr-patience 12 --boundary-mode anisotropic --w0 5 --keep-background-patches \
  --padding edge --z-margin 8 --name germseg-unet3d-phantom-v4 --device cpu

germseg train --data "$RUN-data-v2/data.csv" --out "$RUN-stage7" --epochs "$EPOCHS_STAGE7" \
  --init "$RUN-stage6/best_checkpoint.pytorch" \
  --patch 32,128,128 --batch 2 --lr 2e-4 $BF16 --seed 11 --patches-per-epoch 64 \
  --patience 40 --lr-patience 12 --boundary-mode anisotropic-symmetric --w0 5 \
  --keep-background-patches --padding edge --z-margin 8 --name germseg-unet3d-phantom-v5 \
  --device cpu

fi

python "$HERE/make_phantom_data.py" "$RUN-data-v6" 64 512 200
python "$HERE/make_plant_data.py" "$PLANT" "$RUN-data-v6" 12

germseg train --data "$RUN-data-v6/data.csv" --out "$RUN-stage8" --epochs "$EPOCHS_STAGE8" \
  --init "${FROM_V5:-$RUN-stage7/best_checkpoint.pytorch}" \
  --patch 32,128,128 --batch 2 --lr 3e-4 $BF16 --seed 13 --patches-per-epoch 64 \
  --patience 80 --lr-patience 12 --boundary-mode anisotropic-symmetric --w0 5 \
  --keep-background-patches --padding edge --z-margin 8 --single-channel-fraction 0.1 \
  --name germseg-unet3d-v6 --device cpu

# the card keeps every stage: stage 8's run is added to the card of the weights it started
# from (with FROM_V5, the card beside that file, e.g. git show 031c266:weights/germseg_unet3d.json)
INIT=${FROM_V5:-$RUN-stage7/best_checkpoint.pytorch}
python "$HERE/stage_card.py" --init-card "${INIT%.*}.json" \
  --run-card "$RUN-stage8/best_checkpoint.json" --last-card "$RUN-stage8/last_checkpoint.json" \
  --stage 8 --out "$RUN-stage8/bundled_card.json"
cp "$RUN-stage8/best_checkpoint.pytorch" "$RUN-stage8/v6.pt"
cp "$RUN-stage8/bundled_card.json" "$RUN-stage8/v6.json"
fi

python "$HERE/make_phantom_data.py" "$RUN-data-v7" 96 512 200
python "$HERE/make_plant_data.py" "$PLANT" "$RUN-data-v7" 12

INIT=${FROM_V6:-$RUN-stage8/v6.pt}
germseg train --data "$RUN-data-v7/data.csv" --out "$RUN-stage9" --epochs "$EPOCHS_STAGE9" \
  --init "$INIT" \
  --patch 32,128,128 --batch 2 --lr 2e-4 --seed 17 --patches-per-epoch 64 \
  --patience 80 --lr-patience 10 --boundary-mode anisotropic-symmetric --w0 5 \
  --keep-background-patches --padding edge --z-margin 8 --single-channel-fraction 0.1 \
  --name germseg-unet3d-v7 --device cpu

python "$HERE/stage_card.py" --init-card "${INIT%.*}.json" \
  --run-card "$RUN-stage9/best_checkpoint.json" --last-card "$RUN-stage9/last_checkpoint.json" \
  --stage 9 --out "$RUN-stage9/bundled_card.json"
cp "$RUN-stage9/best_checkpoint.pytorch" "$RUN-stage9/v7.pt"
cp "$RUN-stage9/bundled_card.json" "$RUN-stage9/v7.json"
fi

python "$HERE/make_phantom_data.py" "$RUN-data-v7" 96 512 200
python "$HERE/make_plant_data.py" "$PLANT" "$RUN-data-v7" 24

INIT=${FROM_V7:-$RUN-stage9/v7.pt}
germseg train --data "$RUN-data-v7/data.csv" --out "$RUN-stage10" --epochs "$EPOCHS_STAGE10" \
  --init "$INIT" \
  --patch 32,128,128 --batch 2 --lr 2e-4 --lr-schedule cosine $BF16 --seed 19 \
  --patches-per-epoch 64 --patience 200 --boundary-mode anisotropic-symmetric --w0 5 \
  --keep-background-patches --padding edge --z-margin 8 --single-channel-fraction 0.1 \
  --name germseg-unet3d-v8 --device cpu

python "$HERE/stage_card.py" --init-card "${INIT%.*}.json" \
  --run-card "$RUN-stage10/last_checkpoint.json" --stage 10 --out "$RUN-stage10/bundled_card.json"
cp "$RUN-stage10/last_checkpoint.pytorch" "$HERE/germseg_unet3d.pt"
cp "$RUN-stage10/bundled_card.json" "$HERE/germseg_unet3d.json"
# The card's "metrics" come from: python benchmarks/eval_model.py --seeds 10000-10003

# The learned region-graph edge weights, fitted to the new network's outputs (into its card)
python "$HERE/train_edge_classifier.py" --weights "$HERE/germseg_unet3d.pt" --plant "$PLANT" \
  --cache "$RUN-edge-classifier-cache"
