#!/usr/bin/env bash
# Reproduces pipelines/assets/demo/{warp,generator}.safetensors, the small demo model `gpvton demo`
# uses by default: a width-1/16 GP-VTON (Dress Code variant: upper, lower and dresses) trained with
# the project's own `gpvton train` at 256x192 on the procedural catalogue (pipelines/synthetic/,
# seed 1: 64 garments, 192 paired model photos — `gpvton demo` draws its catalogue with seed 0, so
# the demo shows garments and people the model never saw), without the perceptual (VGG) terms,
# one worker in-process, seed 0, batch 4: WARP_STEPS warp steps (DGT after epoch 4) then GEN_STEPS
# generator steps on that warper's output. About 60 + 8 minutes on 2 CPU cores. Training log, curves
# and the checkpoints' quality: TRAINING.md.
# Demo quality only — not a production model.
#   bash pipelines/assets/demo/train_demo.sh [WORKDIR]      (run from the repository root, venv active)
# Interrupted? Run it again: both stages resume step-exact from their last checkpoint.
set -euo pipefail
W=${1:-/tmp/demo-train}
WARP_STEPS=${WARP_STEPS:-1000}
GEN_STEPS=${GEN_STEPS:-300}
if [ ! -f "$W/data/shards/manifest.json" ]; then
python - "$W" <<'PY'
import sys
from pipelines.demo import build_shards
from pipelines.synthetic.catalogue import make_catalogue
w = sys.argv[1]
make_catalogue(f"{w}/data/catalogue", n_garments=64, n_persons=192, height=256, width=192, seed=1)
print(build_shards(f"{w}/data/catalogue", f"{w}/data/shards", 256)["counts"])
PY
fi
COMMON=(--shards "$W/data/shards" --resolution 256x192 --width 0.0625 --no-perceptual --resume
        --set variant=dresscode --set batch_size=4 --set seed=0 --set lr=0.001 --set lr_d=0.0002
        --set niter=1000 --set niter_decay=0 --set checkpoint_every=100 --set threads=2 --set progress=false)
gpvton train warp "${COMMON[@]}" --output "$W/warp" --steps "$WARP_STEPS" --set mask_epoch=4
gpvton train generator "${COMMON[@]}" --output "$W/generator" --steps "$GEN_STEPS" \
  --warp-checkpoint "$W/warp/warp.safetensors"
cp "$W/warp/warp.safetensors" "$W/generator/generator.safetensors" pipelines/assets/demo/
