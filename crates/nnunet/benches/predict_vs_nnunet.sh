#!/bin/bash
# medseg predict vs nnUNetv2_predict on the same nnU-Net model folder, the same cases, the same
# TTA setting, one after the other on this machine: wall time, peak memory (GNU time), and the
# agreement of the two segmentations (voxels equal, Dice per label).
# A benchmark, not a test: needs the venv of crates/train/benches/nnunet (nnunetv2 2.8.1).
#
# usage: predict_vs_nnunet.sh MODEL_FOLDER INPUT_DIR OUT_DIR FOLD [--disable_tta] [ROUNDS=1]
set -euo pipefail
MODEL=$1; INPUT=$2; OUT=$3; FOLD=$4; TTA=${5:-}; ROUNDS=${6:-1}
MEDSEG=${MEDSEG_BIN:-$HOME/.cache/medseg-target/release/medseg}
PY=${NNUNET_VENV:-/tmp/nnunet-venv}/bin
export nnUNet_raw=${nnUNet_raw:-/tmp} nnUNet_preprocessed=${nnUNet_preprocessed:-/tmp} nnUNet_results=${nnUNet_results:-/tmp}
export OMP_WAIT_POLICY=PASSIVE RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
mkdir -p "$OUT"
MEDSEG_TTA=(); [ "$TTA" = "--disable_tta" ] && MEDSEG_TTA=(--no-tta)
NN_TTA=(); [ "$TTA" = "--disable_tta" ] && NN_TTA=(--disable_tta)
for r in $(seq 1 "$ROUNDS"); do   # interleaved rounds
  rm -rf "$OUT/medseg" "$OUT/nnunet"
  /usr/bin/time -f "medseg round=$r wall_s=%e max_rss_kb=%M" -a -o "$OUT/times.txt" \
    "$MEDSEG" predict --model "$MODEL" --folds "$FOLD" --input "$INPUT" -o "$OUT/medseg" "${MEDSEG_TTA[@]}" \
    > "$OUT/medseg.log" 2>&1
  /usr/bin/time -f "nnunet round=$r wall_s=%e max_rss_kb=%M" -a -o "$OUT/times.txt" \
    "$PY/nnUNetv2_predict_from_modelfolder" -i "$INPUT" -o "$OUT/nnunet" -m "$MODEL" -f "$FOLD" \
    -device cpu -npp 1 -nps 1 --disable_progress_bar "${NN_TTA[@]}" > "$OUT/nnunet.log" 2>&1
done
cat "$OUT/times.txt"
"$PY/python" - "$OUT/medseg" "$OUT/nnunet" <<'PY'
import sys, glob, os
import numpy as np, nibabel as nib
a_dir, b_dir = sys.argv[1:3]
tot = same = 0; dice = {}
for f in sorted(glob.glob(os.path.join(b_dir, "*.nii.gz"))):
    a = np.asarray(nib.load(os.path.join(a_dir, os.path.basename(f))).dataobj)
    b = np.asarray(nib.load(f).dataobj)
    tot += a.size; same += int((a == b).sum())
    for l in np.unique(np.concatenate([np.unique(a), np.unique(b)])):
        if l == 0: continue
        inter = int(((a == l) & (b == l)).sum()); s = int((a == l).sum() + (b == l).sum())
        dice.setdefault(int(l), []).append(1.0 if s == 0 else 2 * inter / s)
print(f"voxels equal: {same}/{tot} ({100 * same / tot:.4f} %)")
for l, d in sorted(dice.items()):
    print(f"label {l}: Dice medseg vs nnU-Net mean {np.mean(d):.5f} min {np.min(d):.5f} over {len(d)} cases")
PY
