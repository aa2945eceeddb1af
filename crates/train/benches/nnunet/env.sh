# source me: common environment for all nnU-Net scripts in /tmp/nnunet
export nnUNet_raw=/tmp/nnunet/raw
export nnUNet_preprocessed=/tmp/nnunet/preprocessed
export nnUNet_results=/tmp/nnunet/results
export PATH=/tmp/nnunet-venv/bin:$PATH
# Data augmentation worker processes (per nnU-Net "GPU"); see NOTES.md. Override by exporting before calling.
export nnUNet_n_proc_DA=${nnUNet_n_proc_DA:-1}
# Size of nnU-Net's multiprocessing pools (final-validation export, metric computation; default 8).
export nnUNet_def_n_proc=${nnUNet_def_n_proc:-2}
# Let idle OpenMP threads sleep instead of spinning (matters on 2 shared cores; see /work/shared/ref/README.md).
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
export MPLBACKEND=Agg
export PYTHONUNBUFFERED=1
MEDSEG_BIN=${MEDSEG_BIN:-/root/.cache/medseg-main-target/release/medseg}
if [ ! -x "$MEDSEG_BIN" ]; then
  MEDSEG_BIN=$(ls -1t ~/.cache/*/release/medseg 2>/dev/null | head -1 || true)
fi
export MEDSEG_BIN
