"""STM benchmark: frames/s from a raw FAST file to a processed MP4, dass against pyfastspm.

Run it from the repository root::

    .venv/bin/python bench/stm.py [--repeats N] [--images FIRST LAST]

On each of the two real FAST files shipped in the ``pyfastspm==1.0.6`` wheel (fetched with
``pip download`` into ``.cache/stm-samples/`` as the tests do; without network the benchmark
says so and exits 0), it times, interleaved (one untimed warm-up each, then A B A B …):

* **dass**: ``open_fast`` → ``process`` with ``Recipe.standard()`` (automatic phase, FFT
  filters, sine creep fit, interpolation, median row alignment, Gaussian 2-D filter, ``udi``)
  → ``export_movie`` (MP4 through imageio-ffmpeg's ffmpeg);
* **pyfastspm**: the same steps called directly, in the order of pyfastspm's example notebook,
  ending with ``FastMovie.export_movie`` (its ffmpeg writer, given imageio-ffmpeg's binary on
  ``PATH`` under the name ``ffmpeg`` that pyfastspm looks for).

Both write H.264 at the same size, contrast (1 %–99 %), colour map and labels. It prints frames
per second (frames in the movie / wall seconds, medians) per file and side, the ratio of the
median times dass/pyfastspm against the target (``<= 1.05``), and whether the processed frames
were identical. Figures also go to ``bench/results/stm.json``. A missed target is reported,
never an error.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import table, write_results  # noqa: E402 - bench/ is sys.path[0] when run as a script

RESULTS = ROOT / "bench" / "results" / "stm.json"
CACHE = ROOT / ".cache" / "stm-samples"
SAMPLES = ("20141003_24.h5", "F20190424_1.h5")
WHEEL_SPEC = "pyfastspm==1.0.6"
TARGET_RATIO = 1.05
CONTRAST = (0.01, 0.99)
SCALING = 2.0


def fetch_samples() -> dict[str, Path] | None:
    """The two real FAST files, downloaded once into .cache/stm-samples; None without network."""
    import subprocess
    import zipfile

    if all((CACHE / n).is_file() for n in SAMPLES):
        return {n: CACHE / n for n in SAMPLES}
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", WHEEL_SPEC, "--no-deps",
                               "--only-binary=:all:", "-d", tmp], capture_output=True, text=True, timeout=300)
        wheels = sorted(Path(tmp).glob("pyfastspm-*.whl"))
        if proc.returncode or not wheels:
            print(f"cannot download {WHEEL_SPEC} for its sample FAST files: "
                  f"{(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
            return None
        CACHE.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[0]) as whl:
            for name in SAMPLES:
                part = CACHE / (name + ".part")
                part.write_bytes(whl.read(f"examples/{name}"))
                part.replace(CACHE / name)
    return {n: CACHE / n for n in SAMPLES}


def ffmpeg_on_path(folder: Path) -> None:
    """Put imageio-ffmpeg's binary on PATH as ``ffmpeg``, where pyfastspm's writer looks."""
    import imageio_ffmpeg

    link = folder / "ffmpeg"
    if not link.exists():
        link.symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"


def run_dass(path: Path, out: Path, images):
    from dass.stm import open_fast
    from dass.stm.export import export_movie
    from dass.stm.process import Recipe, process

    recipe = Recipe.standard().replace(images=images)
    with open_fast(path) as fast:
        movie = process(fast, recipe)
    export_movie(movie, out / f"dass_{path.stem}.mp4", contrast=CONTRAST, scaling=SCALING)
    return movie.frames, len(movie)


def run_pyfastspm(path: Path, out: Path, images):
    """pyfastspm's example notebook with Recipe.standard()'s settings."""
    import pyfastspm as pf

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        ft = pf.FastMovie(str(path), log_processing=False)
        ft.correct_phase(apply_auto_xphase=True, index_frame_to_correlate=0, sigma_gauss=0,
                         additional_x_phase=0, manual_y_phase=ft.metadata["Acquisition.Y_Phase"])
        pf.filter_movie(ft, [True, True, True, False, False, False, False], None, None, (), 3, 10, None)
        ft.reshape_to_movie("udi")
        creep = pf.Creep(ft, index_to_linear=0.2, creep_mode="sin")
        grid = creep.fit_creep((0.3,), frames=[0, 2])
        pf.interpolate(ft, grid=grid, image_range=images)
        pf.align_rows(ft, "median")
        pf.gaussian_2d(ft, 3)
        rng = images if images is not None else ft.full_image_range
        ft.export_movie(image_range=rng, contrast=CONTRAST, scaling=SCALING, output_folder=str(out))
        frame_ids = [f for _, _, f in ft.iter_frames(images)]
        frames = ft.data[frame_ids]
        ft.close()
    return frames, len(frame_ids)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per side and file (default 2)")
    ap.add_argument("--images", type=int, nargs=2, default=None, metavar=("FIRST", "LAST"),
                    help="image range processed and exported (default: all)")
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)

    samples = fetch_samples()
    if samples is None:
        print("skipped: the real FAST files are not available (no network?)")
        return 0
    import numpy as np

    images = tuple(args.images) if args.images else None
    rows, record = [], {"files": {}}
    with tempfile.TemporaryDirectory(prefix="bench-stm-") as tmp:
        tmp = Path(tmp)
        ffmpeg_on_path(tmp)
        import pyfastspm  # noqa: F401 - import outside the timings (matplotlib, scipy, skimage)

        for name, path in samples.items():
            print(f"{name}: warm-up (untimed)", flush=True)
            dass_frames, n = run_dass(path, tmp, images)
            ref_frames, n_ref = run_pyfastspm(path, tmp, images)
            identical = bool(n == n_ref and np.array_equal(dass_frames, ref_frames))
            times = {"dass": [], "pyfastspm": []}
            for i in range(args.repeats):
                for side, fn in (("dass", run_dass), ("pyfastspm", run_pyfastspm)):
                    t0 = time.perf_counter()
                    fn(path, tmp, images)
                    times[side].append(time.perf_counter() - t0)
                    print(f"  run {i + 1}/{args.repeats} {side:9s} {times[side][-1]:.3f}s", flush=True)
            med = {k: statistics.median(v) for k, v in times.items()}
            ratio = med["dass"] / med["pyfastspm"]
            record["files"][name] = {
                "frames": n, "identical_frames": identical, "ratio": round(ratio, 4),
                **{f"{k}_s": [round(x, 4) for x in v] for k, v in times.items()},
                **{f"{k}_fps": round(n / med[k], 3) for k in times},
            }
            rows.append([name, str(n), f"{n / med['dass']:.2f}", f"{n / med['pyfastspm']:.2f}",
                         f"{ratio:.3f}", "yes" if ratio <= TARGET_RATIO else "NO",
                         "yes" if identical else "NO"])

    print()
    print(f"Raw FAST file -> processed MP4 ({'images %d-%d' % images if images else 'all images'}, "
          f"Recipe.standard(), 'udi'), medians of {args.repeats} interleaved runs")
    print(table(rows, ["file", "frames", "dass fps", "pyfastspm fps", "time ratio", f"<= {TARGET_RATIO}",
                       "same frames"]))
    record.update({"repeats": args.repeats, "images": list(images) if images else None,
                   "target_ratio": TARGET_RATIO})
    write_results(RESULTS, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
