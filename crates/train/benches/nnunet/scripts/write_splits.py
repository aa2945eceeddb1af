#!/usr/bin/env python
"""Write nnU-Net splits_final.json from medseg's /tmp/hippo/run/splits.json (same list-of-{train,val} format)."""
import json, os, glob
SRC = '/tmp/hippo/run/splits.json'
PRE = os.path.join(os.environ.get('nnUNet_preprocessed', '/tmp/nnunet/preprocessed'), 'Dataset004_Hippocampus')
RAW = os.path.join(os.environ.get('nnUNet_raw', '/tmp/nnunet/raw'), 'Dataset004_Hippocampus')
s = json.load(open(SRC))
cases = sorted(os.path.basename(f)[:-7] for f in glob.glob(f'{RAW}/labelsTr/*.nii.gz'))
out = []
allval = []
for i, f in enumerate(s):
    tr, va = [c.removesuffix('.nii.gz').removesuffix('_0000') for c in f['train']], \
             [c.removesuffix('.nii.gz').removesuffix('_0000') for c in f['val']]
    assert not set(tr) & set(va), i
    assert set(tr) | set(va) == set(cases), (i, set(cases) ^ (set(tr) | set(va)))
    allval += va
    out.append({'train': sorted(tr), 'val': sorted(va)})
assert sorted(allval) == cases, 'val sets are not a partition'
json.dump(out, open(f'{PRE}/splits_final.json', 'w'), indent=2)
for i, f in enumerate(out):
    print(f'fold {i}: {len(f["train"])} train / {len(f["val"])} val; val[:3]={f["val"][:3]}')
