# An nnU-Net model folder with many labels (as TotalSegmentator's), random He-initialised weights,
# and one synthetic two-channel case: for measuring the export's memory only (BENCHMARKS.md,
# issue 14). Run in the nnunetv2 2.8.1 venv:
#   python make_many_class_model.py SOURCE_MODEL_FOLDER OUT_DIR [CLASSES] [SHAPE]
# SOURCE_MODEL_FOLDER: a two-channel nnU-Net v2 3d_fullres model folder, e.g. the fixture
# tests/fixtures/nnunet/models/Dataset901_FixtureMR/nnUNetTrainer_MedsegFixture__nnUNetPlans__3d_fullres
# (its plans and fingerprint are copied, the architecture kept; dataset.json gets CLASSES labels,
# default 40). Writes OUT_DIR/model/nnUNetTrainer__nnUNetPlans__3d_fullres/ and
# OUT_DIR/in/many_000_000{0,1}.nii.gz (SHAPE, default 224x224x160, 1 mm, nonzero everywhere).
import json, os, shutil, sys
import numpy as np, nibabel as nib, torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager
from dynamic_network_architectures.initialization.weight_init import InitWeights_He

src, out = sys.argv[1], sys.argv[2]
classes = int(sys.argv[3]) if len(sys.argv) > 3 else 40
shape = tuple(int(v) for v in sys.argv[4].split('x')) if len(sys.argv) > 4 else (224, 224, 160)
dst = f'{out}/model/nnUNetTrainer__nnUNetPlans__3d_fullres'
os.makedirs(dst + '/fold_0', exist_ok=True)
for f in ('plans.json', 'dataset_fingerprint.json'):
    shutil.copy(f'{src}/{f}', dst)
ds = json.load(open(f'{src}/dataset.json'))
ds['labels'] = {'background': 0, **{f'structure_{i}': i for i in range(1, classes)}}
json.dump(ds, open(f'{dst}/dataset.json', 'w'), indent=2)
plans = json.load(open(f'{dst}/plans.json'))
cm = PlansManager(plans).get_configuration('3d_fullres')
torch.manual_seed(0)
net = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                             cm.network_arch_init_kwargs_req_import, len(ds['channel_names']), classes,
                             allow_init=True, deep_supervision=True)
net.apply(InitWeights_He(1e-2))
torch.save({'network_weights': net.state_dict(), 'init_args': {'plans': plans, 'configuration': '3d_fullres',
            'fold': 0, 'dataset_json': ds, 'device': 'cpu'}, 'trainer_name': 'nnUNetTrainer',
            'inference_allowed_mirroring_axes': (0, 1, 2), 'current_epoch': 0},
           f'{dst}/fold_0/checkpoint_final.pth')
os.makedirs(f'{out}/in', exist_ok=True)
rng = np.random.default_rng(0)
g = np.mgrid[:shape[0], :shape[1], :shape[2]].astype(np.float32) / max(shape)
for c in range(len(ds['channel_names'])):
    vol = 100 + 40 * np.sin(6 * g[0] + c) * np.cos(5 * g[1]) + 30 * g[2] + rng.normal(0, 5, shape)
    img = nib.Nifti1Image(vol.astype(np.float32), np.diag([1.0, 1.0, 1.0, 1.0]))
    nib.save(img, f'{out}/in/many_000_{c:04d}.nii.gz')
print('ok', classes, 'classes', shape)
