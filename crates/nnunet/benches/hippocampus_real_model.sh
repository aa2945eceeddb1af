#!/bin/bash
# medseg predict vs nnUNetv2_predict on the real nnU-Net hippocampus model (60-minute run, fold 0),
# the 21 validation cases, TTA on; then TTA off. Rounds interleaved.
set -euo pipefail
# The model and cases of BENCHMARKS.md (issue 14 section); needs crates/train/benches/nnunet set up in /tmp/nnunet.
RUN=/tmp/nnunet/runs/b60_fold0
IN=/tmp/exp/real_in; rm -rf $IN; mkdir -p $IN
CASES=$(/tmp/nnunet-venv/bin/python -c "import json;print(' '.join(json.load(open('/tmp/nnunet/preprocessed/Dataset004_Hippocampus/splits_final.json'))[0]['val']))")
for c in $CASES; do ln -s /work/shared/datasets/hippocampus-dev/imagesTr/${c}_0000.nii.gz $IN/${c}_0000.nii.gz; done
export MEDSEG_BIN=${MEDSEG_BIN:-$HOME/.cache/medseg-target/release/medseg}
B=/work/main/crates/nnunet/benches/predict_vs_nnunet.sh
rm -rf /tmp/exp/real_tta /tmp/exp/real_notta
$B $RUN $IN /tmp/exp/real_tta 0 "" 2
$B $RUN $IN /tmp/exp/real_notta 0 --disable_tta 2
