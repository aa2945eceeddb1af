#!/bin/bash
# usage: /tmp/nnunet/train.sh EPOCHS ITERS FOLD TAG
# Trains nnU-Net 3d_fullres (default recipe, nnUNetTrainer_Budget: EPOCHS x ITERS) on medseg's fold FOLD, CPU.
# Result: /tmp/nnunet/runs/TAG_foldFOLD/ = an nnU-Net model folder (dataset.json, plans.json, fold_FOLD/ with
# checkpoint_final.pth, validation/, training_log_*.txt, progress.png) + train.log + time.txt.
# Prefix with `nice -n 19` if the machine is shared. Do not run two trainings of the same FOLD at once.
set -uo pipefail
if [ $# -ne 4 ]; then echo "usage: $0 EPOCHS ITERS FOLD TAG" >&2; exit 2; fi
EPOCHS=$1; ITERS=$2; FOLD=$3; TAG=$4
source /tmp/nnunet/env.sh
export MEDSEG_NNUNET_EPOCHS=$EPOCHS MEDSEG_NNUNET_ITERS=$ITERS
RUN=/tmp/nnunet/runs/${TAG}_fold${FOLD}
RES=$nnUNet_results/Dataset004_Hippocampus/nnUNetTrainer_Budget__nnUNetPlans__3d_fullres
FOLDDIR=$RES/fold_$FOLD
if [ -e "$RUN" ]; then echo "$RUN already exists; use another TAG or remove it" >&2; exit 1; fi
mkdir -p "$RUN" "$RES"
exec 9>"$RES/.lock_fold_$FOLD"
if ! flock -n 9; then echo "another training of fold $FOLD is running (lock $RES/.lock_fold_$FOLD)" >&2; rmdir "$RUN"; exit 1; fi
if [ -e "$FOLDDIR" ]; then mv "$FOLDDIR" "$RES/stale_fold_${FOLD}_$(date +%s)"; fi
/tmp/nnunet/install_trainer.sh > /dev/null
{
  echo "tag=$TAG fold=$FOLD epochs=$EPOCHS iters=$ITERS val_iters=${MEDSEG_NNUNET_VAL_ITERS:-auto(ceil(ITERS/5))}"
  echo "nnUNet_n_proc_DA=$nnUNet_n_proc_DA nnUNet_def_n_proc=$nnUNet_def_n_proc OMP_WAIT_POLICY=$OMP_WAIT_POLICY nice=$(nice)"
  echo "host=$(hostname) nproc=$(nproc) loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "start=$(date +%s.%N)"
} > "$RUN/time.txt"
nnUNetv2_train 4 3d_fullres "$FOLD" -tr nnUNetTrainer_Budget -device cpu > "$RUN/train.log" 2>&1
RC=$?
{
  echo "end=$(date +%s.%N)"
  echo "rc=$RC loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)"
} >> "$RUN/time.txt"
python3 - "$RUN/time.txt" >> "$RUN/time.txt" <<'PY'
import sys
d = dict(l.strip().split('=', 1) for l in open(sys.argv[1]) if l.startswith(('start=', 'end=')))
print(f"elapsed_s={float(d['end']) - float(d['start']):.1f}")
PY
# move nnU-Net's output into the run folder, which then is a self-contained nnU-Net model folder
if [ -d "$FOLDDIR" ]; then
  mv "$FOLDDIR" "$RUN/fold_$FOLD"
  for f in dataset.json plans.json dataset_fingerprint.json; do [ -f "$RES/$f" ] && cp "$RES/$f" "$RUN/"; done
  /tmp/nnunet-venv/bin/python /tmp/nnunet/scripts/summarize_log.py "$RUN" > "$RUN/epoch_times.txt" 2>&1 || true
fi
cat "$RUN/time.txt"
[ -f "$RUN/epoch_times.txt" ] && cat "$RUN/epoch_times.txt"
[ $RC -ne 0 ] && { echo "nnUNetv2_train failed (rc=$RC), see $RUN/train.log" >&2; tail -20 "$RUN/train.log" >&2; }
exit $RC
