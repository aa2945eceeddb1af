"""DICOM series read speed: medseg's read_dicom_series against SimpleITK's ImageSeriesReader.

    cargo build --release -p medseg-volume --example bench_dicom
    python crates/volume/benches/dicom_read.py [SERIES_DIR] [ROUNDS] [BENCH_DICOM_BINARY]

Writes (once, if SERIES_DIR is missing; default /tmp/medseg-bench/ct_dicom_512x512x300) a CT-like
int16 series of 300 slices of 512 x 512 with SimpleITK's GDCM series writer (RescaleIntercept
-1024, uncompressed), reads it once each way to warm the file cache, then runs ROUNDS
(default 5) interleaved rounds: one medseg read (the example binary, timing read_dicom_series
in-process, process start excluded) and one SimpleITK read (GetGDCMSeriesFileNames + Execute +
GetArrayFromImage, timed in this process). Prints each side's rounds and medians as JSON, and
checks that both read the same voxels (sum) and spacing.
"""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SERIES = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/tmp/medseg-bench/ct_dicom_512x512x300")
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
BINARY = sys.argv[3] if len(sys.argv) > 3 else os.path.expanduser(
    os.environ.get("CARGO_TARGET_DIR", "target") + "/release/examples/bench_dicom")


def write_series(folder, n=300, size=512):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size]
    body = ((x - size / 2) / (size * 0.42)) ** 2 + ((y - size / 2) / (size * 0.33)) ** 2 < 1
    writer = sitk.ImageFileWriter()
    writer.SetImageIO("GDCMImageIO")
    writer.KeepOriginalImageUIDOn()
    series = "2.25.1700000000000000000000000000099999"
    for k in range(n):
        # stored = HU + 1024: air 24, soft tissue ~1064 with noise, a bone disc
        hu = np.where(body, 40 + rng.normal(0, 20, (size, size)), -1000)
        hu[(x - size / 2) ** 2 + (y - size / 2 - 60) ** 2 < 30 ** 2] = 700
        sl = sitk.GetImageFromArray((hu + 1024).astype(np.int16)[None])[:, :, 0]
        sl.SetSpacing((0.7, 0.7))
        pos = (-179.2, -179.2, -300.0 + 1.0 * k)
        for key, value in {
            "0008|0060": "CT", "0020|000e": series, "0008|0018": f"{series}.{k + 1}",
            "0020|0013": str(k + 1), "0020|0032": "\\".join(f"{v:g}" for v in pos),
            "0020|0037": "1\\0\\0\\0\\1\\0", "0018|0050": "1", "0028|1053": "1",
            "0028|1052": "-1024", "0028|0030": "0.7\\0.7",
        }.items():
            sl.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"IM{k:04d}.dcm"))
        writer.Execute(sl)


def sitk_read(folder):
    t = time.perf_counter()
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    arr = sitk.GetArrayViewFromImage(img)
    return time.perf_counter() - t, float(arr.sum(dtype=np.float64)), list(img.GetSpacing()), str(arr.dtype)


def medseg_read(folder):
    out = subprocess.run([BINARY, str(folder), "1"], check=True, capture_output=True, text=True)
    r = json.loads(out.stdout)
    return r["seconds"][0], r["sum"], r["spacing"], r["threads"]


def main():
    if not SERIES.exists():
        t = time.perf_counter()
        write_series(SERIES)
        print(f"wrote {SERIES} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    # warm the file cache, both sides
    ms_sum, sk_sum = medseg_read(SERIES)[1], sitk_read(SERIES)[1]
    medseg, simpleitk = [], []
    for _ in range(ROUNDS):
        t, ms_sum, ms_spacing, threads = medseg_read(SERIES)
        medseg.append(t)
        t, sk_sum, sk_spacing, dtype = sitk_read(SERIES)
        simpleitk.append(t)
    assert abs(ms_sum - sk_sum) <= 1e-6 * abs(sk_sum), (ms_sum, sk_sum)
    assert np.allclose(ms_spacing, sk_spacing), (ms_spacing, sk_spacing)
    print(json.dumps({
        "series": str(SERIES),
        "files": len(list(SERIES.iterdir())),
        "medseg_s": medseg, "simpleitk_s": simpleitk,
        "medseg_median_s": statistics.median(medseg),
        "simpleitk_median_s": statistics.median(simpleitk),
        "ratio_simpleitk_over_medseg": statistics.median(simpleitk) / statistics.median(medseg),
        "medseg_threads": threads, "simpleitk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads(),
        "simpleitk_dtype": dtype, "simpleitk": sitk.Version_VersionString(),
        "voxel_sum": ms_sum, "load": os.getloadavg(),
    }, indent=1))


if __name__ == "__main__":
    main()
