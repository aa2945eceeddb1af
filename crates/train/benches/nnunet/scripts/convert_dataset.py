#!/usr/bin/env python
"""Convert /work/shared/datasets/hippocampus-dev to nnU-Net v2 raw Dataset004_Hippocampus.
Images are copied byte-for-byte. Labels already uint8 are copied byte-for-byte; float32 labels
are rewritten as uint8 (values must be exactly 0/1/2) with the original header geometry."""
import json, os, shutil, glob, sys
import numpy as np, nibabel as nib

SRC = '/work/shared/datasets/hippocampus-dev'
DST = os.path.join(os.environ.get('nnUNet_raw', '/tmp/nnunet/raw'), 'Dataset004_Hippocampus')
os.makedirs(f'{DST}/imagesTr', exist_ok=True)
os.makedirs(f'{DST}/labelsTr', exist_ok=True)
src_json = json.load(open(f'{SRC}/dataset.json'))
labels = src_json['labels']
assert labels == {'background': 0, 'Anterior': 1, 'Posterior': 2}, labels

cases = sorted(os.path.basename(f)[:-len('.nii.gz')] for f in glob.glob(f'{SRC}/labelsTr/*.nii.gz'))
converted = []
for c in cases:
    shutil.copyfile(f'{SRC}/imagesTr/{c}_0000.nii.gz', f'{DST}/imagesTr/{c}_0000.nii.gz')
    src_lab = f'{SRC}/labelsTr/{c}.nii.gz'
    dst_lab = f'{DST}/labelsTr/{c}.nii.gz'
    im = nib.load(src_lab)
    if im.get_data_dtype() == np.uint8:
        shutil.copyfile(src_lab, dst_lab)
        continue
    d = np.asanyarray(im.dataobj)
    r = np.rint(d)
    assert np.array_equal(r, d) and set(np.unique(r).tolist()) <= {0, 1, 2}, (c, np.unique(d))
    hdr = im.header.copy()
    hdr.set_data_dtype(np.uint8)
    hdr['scl_slope'] = 1.0  # nibabel writes slope/inter itself; keep unscaled
    hdr['scl_inter'] = 0.0
    out = nib.Nifti1Image(r.astype(np.uint8), None, header=hdr)
    # keep qform and sform exactly as in the original (codes and matrices)
    out.set_qform(im.header.get_qform(), int(im.header['qform_code']))
    out.set_sform(im.header.get_sform(), int(im.header['sform_code']))
    nib.save(out, dst_lab)
    chk = nib.load(dst_lab)
    assert chk.get_data_dtype() == np.uint8
    assert np.array_equal(np.asanyarray(chk.dataobj), r.astype(np.uint8))
    assert np.allclose(chk.affine, im.affine) and chk.shape == im.shape
    assert int(chk.header['qform_code']) == int(im.header['qform_code'])
    assert int(chk.header['sform_code']) == int(im.header['sform_code'])
    assert np.allclose(chk.header.get_zooms(), im.header.get_zooms())
    converted.append((c, str(im.get_data_dtype())))

ds = {
    'channel_names': {'0': 'MRI'},
    'labels': labels,
    'numTraining': len(cases),
    'file_ending': '.nii.gz',
    'name': 'Hippocampus',
    'description': src_json.get('description', ''),
    'reference': src_json.get('reference', ''),
    'licence': src_json.get('licence', ''),
}
json.dump(ds, open(f'{DST}/dataset.json', 'w'), indent=2)
print(f'{len(cases)} cases -> {DST}; labels rewritten as uint8: {converted}')
