#!/usr/bin/env bash
# Reproduces pipelines/assets/demo/{warp,generator}.safetensors, the small demo model `gpvton demo`
# uses by default: a width-1/16 GP-VTON (Dress Code variant: upper, lower and dresses) trained with
# the project's own `gpvton train` on the procedural catalogue (pipelines/synthetic.py, seed 0:
# 32 garments, 96 paired model photos) at 256x192, without the perceptual (VGG) terms, one worker
# in-process, seed 0: 200 warp steps + 150 generator steps, batch 4. About 12 minutes on 2 idle CPU cores.
# Demo quality only — not a production model (the warp is still undertrained: garments shrink to a
# patch, lower garments mostly vanish; more WARP_STEPS is the first thing to raise).
#   bash pipelines/assets/demo/train_demo.sh [WORKDIR]      (run from the repository root, venv active)
# The shipped files were made with WORKDIR=/tmp/dt (the path is recorded in their metadata only;
# the warp ran as 80 steps, then --resume to 200, which the loop reproduces step for step).
set -euo pipefail
W=${1:-/tmp/demo-train}
WARP_STEPS=${WARP_STEPS:-200}
GEN_STEPS=${GEN_STEPS:-150}
python - "$W" <<'PY'
import sys
from pipelines.demo import build_shards
from pipelines.synthetic import make_catalogue
w = sys.argv[1]
make_catalogue(f"{w}/data/catalogue", n_garments=32, n_persons=96, height=256, width=192, seed=0)
print(build_shards(f"{w}/data/catalogue", f"{w}/data/shards", 256)["counts"])
PY
COMMON=(--shards "$W/data/shards" --resolution 256x192 --width 0.0625 --no-perceptual
        --set variant=dresscode --set batch_size=4 --set seed=0 --set lr_d=0.0002 --set niter=1000
        --set niter_decay=0 --set progress=false)
gpvton train warp "${COMMON[@]}" --output "$W/warp" --steps "$WARP_STEPS" \
  --set lr=0.001 --set mask_epoch=4 --set checkpoint_every=20 --set threads=2
gpvton train generator "${COMMON[@]}" --output "$W/generator" --steps "$GEN_STEPS" \
  --warp-checkpoint "$W/warp/warp.safetensors" --set lr=0.001 --set checkpoint_every=20 --set threads=2
cp "$W/warp/warp.safetensors" "$W/generator/generator.safetensors" pipelines/assets/demo/
