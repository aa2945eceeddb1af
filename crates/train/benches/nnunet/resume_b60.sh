#!/bin/bash
# Resume the 60-minute-schedule nnU-Net run (116 x 10 it) from its epoch-50 checkpoint_latest (--c),
# after session 4 ended mid-run. Appends to runs/b60_fold0.
set -uo pipefail
source /tmp/nnunet/env.sh
export MEDSEG_NNUNET_EPOCHS=116 MEDSEG_NNUNET_ITERS=10
RUN=/tmp/nnunet/runs/b60_fold0
RES=$nnUNet_results/Dataset004_Hippocampus/nnUNetTrainer_Budget__nnUNetPlans__3d_fullres
FOLDDIR=$RES/fold_0
{ echo "resume_start=$(date +%s.%N) loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"; } >> $RUN/time.txt
nnUNetv2_train 4 3d_fullres 0 -tr nnUNetTrainer_Budget -device cpu --c > "$RUN/train_resume.log" 2>&1
RC=$?
{ echo "resume_end=$(date +%s.%N) rc=$RC loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"; } >> $RUN/time.txt
if [ -d "$FOLDDIR" ]; then
  mv "$FOLDDIR" "$RUN/fold_0"
  for f in dataset.json plans.json dataset_fingerprint.json; do [ -f "$RES/$f" ] && cp "$RES/$f" "$RUN/"; done
fi
exit $RC
