#!/usr/bin/env python
"""Summarize nnU-Net training_log_*.txt of a run: per-epoch times, train it/min, final validation time.
usage: summarize_log.py RUN_DIR_or_FOLD_DIR [--json]"""
import glob, json, os, re, sys
from datetime import datetime

d = sys.argv[1]
logs = sorted(glob.glob(os.path.join(d, 'training_log_*.txt')) + glob.glob(os.path.join(d, 'fold_*', 'training_log_*.txt')))
if not logs:
    sys.exit(f'no training_log_*.txt under {d}')
log = logs[-1]
ts_re = re.compile(r'^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d+): (.*)$')
epochs, timing = [], []
first_epoch_ts = last_epoch_end_ts = val_done_ts = None
n_val_cases = 0
for line in open(log):
    m = ts_re.match(line.rstrip('\n'))
    if not m:
        continue
    ts, msg = datetime.strptime(m.group(1), '%Y-%m-%d %H:%M:%S.%f').timestamp(), m.group(2)
    if msg.startswith('Epoch ') and msg[6:].strip().isdigit() and first_epoch_ts is None:
        first_epoch_ts = ts
    if msg.startswith('Epoch time:'):
        epochs.append(float(msg.split()[2]))
        last_epoch_end_ts = ts
    mt = re.match(r'medseg_timing epoch (\d+): train ([\d.]+) s for (\d+) it .* val ([\d.]+) s for (\d+) it; loadavg ([\d.]+)', msg)
    if mt:
        timing.append(dict(epoch=int(mt[1]), train_s=float(mt[2]), iters=int(mt[3]), val_s=float(mt[4]),
                           val_iters=int(mt[5]), loadavg=float(mt[6])))
    if msg.startswith('predicting '):
        n_val_cases += 1
    if msg.startswith('Validation complete'):
        val_done_ts = ts
out = dict(log=log, epochs=len(epochs), epoch_time_s=epochs, timing=timing)
steady = timing[1:] if len(timing) > 1 else timing
if steady:
    tr = sum(t['train_s'] for t in steady); it = sum(t['iters'] for t in steady)
    out['train_it_per_min_excl_epoch0' if len(timing) > 1 else 'train_it_per_min'] = round(it / tr * 60, 3)
    out['train_s_per_it'] = round(tr / it, 4)
if last_epoch_end_ts and val_done_ts:
    out['final_validation_s'] = round(val_done_ts - last_epoch_end_ts, 1)
    out['final_validation_cases'] = n_val_cases
if '--json' in sys.argv:
    print(json.dumps(out, indent=1))
else:
    print(f'log: {log}')
    for i, e in enumerate(epochs):
        t = next((t for t in timing if t['epoch'] == i), None)
        extra = (f"  (train {t['train_s']:.2f} s / {t['iters']} it = {t['train_s']/t['iters']:.3f} s/it, "
                 f"val {t['val_s']:.2f} s / {t['val_iters']} it, loadavg {t['loadavg']:.2f})") if t else ''
        print(f'epoch {i}: {e:.2f} s{extra}')
    for k in ('train_it_per_min_excl_epoch0', 'train_it_per_min', 'train_s_per_it', 'final_validation_s', 'final_validation_cases'):
        if k in out:
            print(f'{k}: {out[k]}')
