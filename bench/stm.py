"""STM benchmark: raw FAST file to processed MP4, dass's engines against pyfastspm, same outputs.

Run it from the repository root::

    .venv/bin/python bench/stm.py [--repeats N] [--images FIRST LAST] [--quick]

On each of the two real FAST files shipped in the ``pyfastspm==1.0.6`` wheel (fetched with
``pip download`` into ``.cache/stm-samples/`` as the tests do; without network the benchmark
says so and exits 0) it runs four sides, all with ``Recipe.standard()``'s steps (automatic
phase, FFT filters, sine creep fit, interpolation, median row alignment, Gaussian 2-D filter,
``udi``) and all ending in an H.264 MP4 of the same size, bit rate, preset, colour map,
contrast (1 %-99 % of the whole movie) and labels:

* **pyfastspm** (the reference): pyfastspm's calls in the order of its example notebook, then
  ``FastMovie.export_movie(scaling=(2.0, 2.0))`` (a tuple: a float would make pyfastspm halve
  both axes of an interlaced movie, a smaller movie than dass writes); imageio-ffmpeg's binary
  is put on ``PATH`` as the ``ffmpeg`` pyfastspm looks for;
* **dass/pyfastspm**: ``open_fast`` -> ``process(engine="pyfastspm")`` -> ``export_movie``
  (dass's wrapping of the same calls; target: time ratio <= 1.05);
* **dass cold**: ``process(engine="dass")`` with the interpolation-matrix cache emptied before
  each run (target: >= 2x faster than pyfastspm);
* **dass warm**: the same with the matrices of this geometry already cached (a second movie of
  the same scan settings, a re-run with other frame steps).

Runs are interleaved, the order of the sides rotating from one repeat to the next, after one
untimed warm-up of each side. Each run's wall time and CPU time (this process plus its ffmpeg
children) are taken; the table shows medians and the speed-up of each side over pyfastspm
(reference time / side time). Before timing, it checks that every side's processed frames are
identical to pyfastspm's and that every MP4 decodes to the same size, codec and number of
frames. Figures go to ``bench/results/stm.json``. A missed target is reported, never an error.
``--quick`` (for ``make bench``): the smaller file, one repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import resource
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
TARGET_SAME = 1.05  # dass/pyfastspm time ratio at most
TARGET_FAST = 2.0  # speed-up of the dass engine at least
CONTRAST = (0.01, 0.99)
SCALING = 2.0
SIDES = ("pyfastspm", "dass/pyfastspm", "dass cold", "dass warm")


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


def run_dass(path: Path, out: Path, images, engine: str, cold: bool):
    from dass.stm import engine as fast_engine
    from dass.stm import open_fast
    from dass.stm.export import export_movie
    from dass.stm.process import Recipe, process

    if cold:
        fast_engine.clear_cache()
    recipe = Recipe.standard().replace(images=images)
    with open_fast(path) as fast:
        movie = process(fast, recipe, engine=engine)
    mp4 = export_movie(movie, out / f"dass_{engine}_{path.stem}.mp4", contrast=CONTRAST, scaling=SCALING)
    return movie.frames, mp4


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
        ft.export_movie(image_range=rng, contrast=CONTRAST, scaling=(SCALING, SCALING), output_folder=str(out))
        frame_ids = [f for _, _, f in ft.iter_frames(images)]
        frames = ft.data[frame_ids]
        ft.close()
    mp4 = out / f"{path.stem}_{rng[0]}-{rng[1]}_udi.mp4"
    return frames, str(mp4)


def run_side(side: str, path: Path, out: Path, images):
    if side == "pyfastspm":
        return run_pyfastspm(path, out, images)
    if side == "dass/pyfastspm":
        return run_dass(path, out, images, "pyfastspm", cold=False)
    return run_dass(path, out, images, "dass", cold=side == "dass cold")


def cpu_seconds() -> float:
    """CPU time of this process and of its waited-for children (the ffmpeg encoders)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def describe_mp4(path: str) -> tuple[tuple[int, int], str, int]:
    """(width, height), codec and number of decoded frames of an MP4."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(path)
    meta = next(reader)
    count = sum(1 for _ in reader)
    return tuple(meta["size"]), str(meta.get("codec", "?")).split()[0], count


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side and file (default 3)")
    ap.add_argument("--images", type=int, nargs=2, default=None, metavar=("FIRST", "LAST"),
                    help="image range processed and exported (default: all)")
    ap.add_argument("--quick", action="store_true", help="the smaller file only, one repeat")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = 1
    logging.disable(logging.WARNING)

    samples = fetch_samples()
    if samples is None:
        print("skipped: the real FAST files are not available (no network?)")
        return 0
    if args.quick:
        samples = {SAMPLES[0]: samples[SAMPLES[0]]}
    import numpy as np

    images = tuple(args.images) if args.images else None
    rows, record = [], {"files": {}}
    with tempfile.TemporaryDirectory(prefix="bench-stm-") as tmp:
        tmp = Path(tmp)
        ffmpeg_on_path(tmp)
        import pyfastspm  # noqa: F401 - import outside the timings (matplotlib, scipy, skimage)

        for name, path in samples.items():
            print(f"{name}: warm-up and output check (untimed)", flush=True)
            outputs = {side: run_side(side, path, tmp, images) for side in SIDES}
            ref_frames, ref_mp4 = outputs["pyfastspm"]
            ref_video = describe_mp4(ref_mp4)
            same = {}
            for side, (frames, mp4) in outputs.items():
                video = describe_mp4(mp4)
                same[side] = {"frames": bool(np.array_equal(frames, ref_frames)),
                              "mp4": video == ref_video, "video": list(video)}
            print(f"  reference MP4: {ref_video[0][0]}x{ref_video[0][1]} {ref_video[1]}, {ref_video[2]} frames",
                  flush=True)
            wall = {s: [] for s in SIDES}
            cpu = {s: [] for s in SIDES}
            for i in range(args.repeats):
                order = SIDES[i % len(SIDES):] + SIDES[:i % len(SIDES)]
                for side in order:
                    c0, t0 = cpu_seconds(), time.perf_counter()
                    run_side(side, path, tmp, images)
                    wall[side].append(time.perf_counter() - t0)
                    cpu[side].append(cpu_seconds() - c0)
                    print(f"  run {i + 1}/{args.repeats} {side:15s} wall {wall[side][-1]:6.2f}s "
                          f"cpu {cpu[side][-1]:6.2f}s", flush=True)
            med_wall = {s: statistics.median(v) for s, v in wall.items()}
            med_cpu = {s: statistics.median(v) for s, v in cpu.items()}
            n = len(ref_frames)
            entry = {"frames": n, "outputs": same, "wall_s": wall, "cpu_s": cpu}
            for side in SIDES[1:]:
                speed_cpu = med_cpu["pyfastspm"] / med_cpu[side]
                speed_wall = med_wall["pyfastspm"] / med_wall[side]
                if side == "dass/pyfastspm":
                    ratio = med_cpu[side] / med_cpu["pyfastspm"]
                    verdict = f"ratio {ratio:.3f} {'<=' if ratio <= TARGET_SAME else '>'} {TARGET_SAME}"
                elif side == "dass cold":
                    verdict = f"{'>=' if speed_cpu >= TARGET_FAST else '<'} {TARGET_FAST}x"
                else:
                    verdict = "(cached matrices)"
                entry[side] = {"speedup_cpu": round(speed_cpu, 3), "speedup_wall": round(speed_wall, 3)}
                rows.append([name, side, str(n), f"{med_cpu[side]:.2f}", f"{med_cpu['pyfastspm']:.2f}",
                             f"{speed_cpu:.2f}", f"{speed_wall:.2f}", verdict,
                             "yes" if same[side]["frames"] and same[side]["mp4"] else "NO"])
            record["files"][name] = entry

    print()
    print(f"Raw FAST file -> processed MP4 ({'images %d-%d' % images if images else 'all images'}, "
          f"Recipe.standard(), 'udi'), medians of {args.repeats} interleaved runs; "
          "speed-up = pyfastspm time / side time (CPU incl. ffmpeg, and wall)")
    print(table(rows, ["file", "side", "frames", "cpu s", "pyfastspm cpu s", "speed-up cpu",
                       "speed-up wall", "target", "same frames+mp4"]))
    record.update({"repeats": args.repeats, "images": list(images) if images else None,
                   "target_same_ratio": TARGET_SAME, "target_speedup": TARGET_FAST,
                   "blas_threads_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")
                                        if k in os.environ}})
    write_results(RESULTS, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
