#!/bin/bash
# usage: /tmp/nnunet/predict_eval.sh TAG FOLD [--use-validation]
# Predicts the fold's validation cases (whole volumes, checkpoint_final, default TTA = mirroring, step 0.5,
# gaussian) with nnUNetv2_predict_from_modelfolder into RUN/pred, compares them with the predictions nnU-Net
# wrote at the end of training (RUN/fold_F/validation), then evaluates RUN/pred with `medseg evaluate`
# against the ORIGINAL labels in /work/shared/datasets/hippocampus-dev/labelsTr -> RUN/eval.
# NNUNET_PREDICT_ARGS (env): extra nnUNetv2_predict args, e.g. '--disable_tta' (default: none = nnU-Net defaults).
# --use-validation: skip re-prediction and evaluate a copy of RUN/fold_F/validation/*.nii.gz instead.
set -uo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 TAG FOLD [--use-validation]" >&2; exit 2; fi
TAG=$1; FOLD=$2; MODE=${3:-predict}
source /tmp/nnunet/env.sh
SRC=/work/shared/datasets/hippocampus-dev
RUN=/tmp/nnunet/runs/${TAG}_fold${FOLD}
PY=/tmp/nnunet-venv/bin/python
[ -f "$RUN/fold_$FOLD/checkpoint_final.pth" ] || { echo "no $RUN/fold_$FOLD/checkpoint_final.pth" >&2; exit 1; }
[ -x "$MEDSEG_BIN" ] || { echo "medseg binary not found ($MEDSEG_BIN)" >&2; exit 1; }
CASES=$($PY -c "import json,sys;print(' '.join(json.load(open('$nnUNet_preprocessed/Dataset004_Hippocampus/splits_final.json'))[$FOLD]['val']))")
rm -rf "$RUN/pred" "$RUN/pred_input" "$RUN/eval" "$RUN/eval_gt"
mkdir -p "$RUN/pred" "$RUN/pred_input" "$RUN/eval" "$RUN/eval_gt"
for c in $CASES; do
  ln -s "$SRC/imagesTr/${c}_0000.nii.gz" "$RUN/pred_input/${c}_0000.nii.gz"   # original images
  ln -s "$SRC/labelsTr/${c}.nii.gz" "$RUN/eval_gt/${c}.nii.gz"                # original ground truth
done
echo "fold $FOLD: $(echo $CASES | wc -w) validation cases"
if [ "$MODE" = "--use-validation" ]; then
  for c in $CASES; do cp "$RUN/fold_$FOLD/validation/$c.nii.gz" "$RUN/pred/"; done
  echo "pred = copy of nnU-Net's end-of-training validation predictions (checkpoint_final)" | tee "$RUN/pred/SOURCE.txt"
else
  T0=$(date +%s.%N)
  nnUNetv2_predict_from_modelfolder -i "$RUN/pred_input" -o "$RUN/pred" -m "$RUN" -f "$FOLD" \
      -chk checkpoint_final.pth -device cpu -npp 1 -nps 1 --disable_progress_bar ${NNUNET_PREDICT_ARGS:-} > "$RUN/predict.log" 2>&1
  RC=$?; T1=$(date +%s.%N)
  [ $RC -eq 0 ] || { echo "nnUNetv2_predict failed (rc=$RC), see $RUN/predict.log" >&2; tail -20 "$RUN/predict.log" >&2; exit $RC; }
  python3 -c "print(f'predict wall time: {$T1-$T0:.1f} s')" | tee "$RUN/predict_time.txt"
  # same meaning as fold_F/validation? (both: checkpoint_final, whole volume, TTA) -> compare voxelwise
  $PY - "$RUN/pred" "$RUN/fold_$FOLD/validation" $CASES <<'PY' | tee "$RUN/pred_vs_validation.txt"
import sys, os, numpy as np, nibabel as nib
a, b, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
n_same = 0; worst = (1.0, None)
for c in cases:
    fa, fb = f'{a}/{c}.nii.gz', f'{b}/{c}.nii.gz'
    if not os.path.exists(fb):
        print(f'{c}: no training-time validation prediction'); continue
    x, y = nib.load(fa), nib.load(fb)
    da, db = np.asanyarray(x.dataobj), np.asanyarray(y.dataobj)
    agree = float((da == db).mean()) if da.shape == db.shape else 0.0
    n_same += agree == 1.0
    if agree < worst[0]: worst = (agree, c)
msg = f'; lowest voxel agreement {worst[0]:.6f} ({worst[1]})' if worst[1] else ''
print(f'pred vs fold validation/: {n_same}/{len(cases)} cases voxel-identical{msg}')
PY
fi
# header/geometry sanity: prediction vs original label
$PY - "$RUN/pred" "$RUN/eval_gt" $CASES <<'PY' | tee "$RUN/geometry_check.txt"
import sys, numpy as np, nibabel as nib
p, g, cases = sys.argv[1], sys.argv[2], sys.argv[3:]
bad = 0; dts = set()
for c in cases:
    x, y = nib.load(f'{p}/{c}.nii.gz'), nib.load(f'{g}/{c}.nii.gz')
    dts.add(str(x.get_data_dtype()))
    if x.shape != y.shape or not np.allclose(x.affine, y.affine, atol=1e-4):
        bad += 1; print(f'GEOMETRY MISMATCH {c}: pred {x.shape} {x.affine.tolist()} gt {y.shape} {y.affine.tolist()}')
print(f'geometry check: {len(cases) - bad}/{len(cases)} predictions match the original label shape+affine; pred dtypes {sorted(dts)}')
PY
"$MEDSEG_BIN" evaluate --pred "$RUN/pred" --gt "$RUN/eval_gt" --labels "$SRC/dataset.json" \
    --output "$RUN/eval" --json > "$RUN/eval/report.json" 2> "$RUN/eval/evaluate.stderr"
RC=$?
[ $RC -eq 0 ] || { echo "medseg evaluate failed (rc=$RC)" >&2; cat "$RUN/eval/evaluate.stderr" >&2; exit $RC; }
$PY /tmp/nnunet/scripts/print_eval.py "$RUN/eval/summary.json" "$RUN/fold_$FOLD/validation/summary.json" | tee "$RUN/eval/means.txt"
