# A 32-320 nnU-Net model folder (nnU-Net's default widths, 6 stages, patch 128^3) with He-initialised
# random weights, and two synthetic 160^3 MR-like cases: for timing medseg vs nnUNetv2_predict only
# (BENCHMARKS.md, issue 14). Run in the nnunetv2 2.8.1 venv:
#   python make_wide_model.py SOURCE_MODEL_FOLDER OUT_DIR
# SOURCE_MODEL_FOLDER: any one-channel nnU-Net v2 3d_fullres model folder (its plans, dataset.json
# and fingerprint are copied; the architecture and patch are replaced). Writes
# OUT_DIR/model/nnUNetTrainer__nnUNetPlans__3d_fullres/fold_0/checkpoint_final.pth and
# OUT_DIR/in/big_00{0,1}_0000.nii.gz (OUT_DIR/in1 holds the first case only).
import json, os, shutil, sys
import numpy as np, nibabel as nib, torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer  # noqa: F401 (import side effects)
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
src, out = sys.argv[1], sys.argv[2]
dst = f'{out}/model/nnUNetTrainer__nnUNetPlans__3d_fullres'
os.makedirs(dst + '/fold_0', exist_ok=True)
for f in ('dataset.json', 'dataset_fingerprint.json'):
    shutil.copy(f'{src}/{f}', dst)
plans = json.load(open(f'{src}/plans.json'))
c = plans['configurations']['3d_fullres']
c['patch_size'] = [128, 128, 128]
a = c['architecture']['arch_kwargs']
a['n_stages'] = 6
a['features_per_stage'] = [32, 64, 128, 256, 320, 320]
a['kernel_sizes'] = [[3, 3, 3]] * 6
a['strides'] = [[1, 1, 1]] + [[2, 2, 2]] * 5
a['n_conv_per_stage'] = [2] * 6
a['n_conv_per_stage_decoder'] = [2] * 5
json.dump(plans, open(f'{dst}/plans.json', 'w'), indent=2)
pm = PlansManager(plans)
cm = pm.get_configuration('3d_fullres')
ds = json.load(open(f'{dst}/dataset.json'))
torch.manual_seed(0)
net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                             cm.network_arch_init_kwargs_req_import, 1, len(ds['labels']),
                             allow_init=True, deep_supervision=True)
net.apply(InitWeights_He(1e-2))
torch.save({'network_weights': net.state_dict(), 'init_args': {'plans': plans, 'configuration': '3d_fullres',
            'fold': 0, 'dataset_json': ds, 'device': 'cpu'}, 'trainer_name': 'nnUNetTrainer',
            'inference_allowed_mirroring_axes': (0, 1, 2), 'current_epoch': 0},
           f'{dst}/fold_0/checkpoint_final.pth')
os.makedirs(f'{out}/in', exist_ok=True)
os.makedirs(f'{out}/in1', exist_ok=True)
rng = np.random.default_rng(0)
g = np.mgrid[:160, :160, :160].astype(np.float32) / 160
for i in range(2):
    vol = 100 + 40 * np.sin(6 * g[0] + i) * np.cos(5 * g[1]) + 30 * g[2] + rng.normal(0, 5, (160,) * 3)
    img = nib.Nifti1Image(vol.astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    nib.save(img, f'{out}/in/big_{i:03d}_0000.nii.gz')
    if i == 0:
        nib.save(img, f'{out}/in1/big_000_0000.nii.gz')
print('ok', sum(p.numel() for p in net.parameters()))
