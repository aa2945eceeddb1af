#!/bin/bash
# usage: /tmp/nnunet/calibrate.sh [EPOCHS=2] [ITERS=10] [FOLD=0]
# Short nnU-Net training (default 2 epochs x 10 iterations, fold 0, val iters ceil(ITERS/5)) to measure
# iterations/minute of nnU-Net's 3d_fullres recipe on this CPU. Run it on a QUIET machine (check `uptime`).
# Epoch 0 includes warm-up; the steady-state number is train_it_per_min_excl_epoch0 (training phase only,
# the per-epoch validation batches are timed separately). The run ends with nnU-Net's final validation
# (21 cases, TTA), whose duration is printed as final_validation_s. Output: /tmp/nnunet/runs/calib_<time>_fold0.
set -uo pipefail
EPOCHS=${1:-2}; ITERS=${2:-10}; FOLD=${3:-0}
TAG=calib_$(date +%Y%m%d_%H%M%S)
echo "loadavg before: $(cut -d' ' -f1-3 /proc/loadavg)  (nproc $(nproc); numbers are only meaningful on an idle machine)"
/tmp/nnunet/train.sh "$EPOCHS" "$ITERS" "$FOLD" "$TAG" > /dev/null 2>&1
RC=$?
RUN=/tmp/nnunet/runs/${TAG}_fold${FOLD}
echo "loadavg after:  $(cut -d' ' -f1-3 /proc/loadavg)   rc=$RC   run: $RUN"
grep -E '^(elapsed_s|rc)=' "$RUN/time.txt"
/tmp/nnunet-venv/bin/python /tmp/nnunet/scripts/summarize_log.py "$RUN"
exit $RC
