#!/bin/bash
# Copy the Budget trainer into the venv's nnunetv2 so that `-tr nnUNetTrainer_Budget` finds it.
set -euo pipefail
DST=$(/tmp/nnunet-venv/bin/python -c 'import nnunetv2,os;print(os.path.join(os.path.dirname(nnunetv2.__file__),"training","nnUNetTrainer","variants"))')
cp /tmp/nnunet/trainer/nnUNetTrainer_Budget.py "$DST/nnUNetTrainer_Budget.py"
echo "installed $DST/nnUNetTrainer_Budget.py"
