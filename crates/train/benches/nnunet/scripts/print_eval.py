#!/usr/bin/env python
"""Print per-label mean Dice / HD95 from medseg's summary.json (+ nnU-Net's own validation summary.json Dice)."""
import json, os, sys
s = json.load(open(sys.argv[1]))
print(f"medseg evaluate: {s['n_cases']} cases, missing {s['n_missing']}, unmatched preds {len(s['unmatched_predictions'])}")
for lab, name in s['labels'].items():
    m = s['summary'][lab]
    e = s['empty_mask_cases'][lab]
    d, h = m['dice'], m['hd95']
    print(f"  label {lab} ({name}): Dice mean {d['mean']:.4f} (median {d['median']:.4f}, std {d['std']:.4f}) | "
          f"HD95 mean {h['mean']:.3f} mm (median {h['median']:.3f}) | NSD@1mm {m['nsd']['mean']:.4f} | "
          f"empty pred {e['pred_empty']}, empty gt {e['gt_empty']}")
if len(sys.argv) > 2 and os.path.exists(sys.argv[2]):
    n = json.load(open(sys.argv[2]))
    per = ', '.join(f"label {k} {v['Dice']:.4f}" for k, v in n['mean'].items())
    print(f"nnU-Net's own end-of-training validation summary (Dice, vs its preprocessed gt): {per}; "
          f"foreground mean {n['foreground_mean']['Dice']:.4f}")
