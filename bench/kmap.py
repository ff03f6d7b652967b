"""KMAP benchmark: the "dass" engine (conversion + fit) against xsocs called directly.

Run it from the repository root::

    .venv/bin/python bench/kmap.py            # 2,500 and 10,000 positions, 1 and 2 processes
    .venv/bin/python bench/kmap.py --quick    # 400 and 900 positions, 3 runs, --direct (minutes)
    .venv/bin/python bench/kmap.py --sizes 2500 --procs 1 2 4 --repeats 2

For each scan size it writes one synthetic scan (:func:`dass.kmap.synthetic.generate`, square
raster, ``--angles`` rocking angles, ``--frame`` square frames, Poisson counts, gzip-compressed
frames as xsocs' merge writes them; the generation time is reported too) and, for each number
of processes, times the same work both ways, same input and parameters:

* dass: ``dass.kmap.fast.convert_fit`` (``check_master`` and the parameter checks included),
  Gaussian fit, no background, the q-space file and the xsocs fit file written;
* xsocs: ``xsocs.process.qspace.kmap_2_qspace`` then ``PeakFitter(...).peak_fit()`` and
  ``FitResult.to_fit_h5``, with the same grid and processes.

"Processes" is ``n_proc`` on both sides. dass with 1: everything (reading, histogram, fit,
deflating the q-space chunks, writing) in the one process and thread that calls it; with N > 1:
N forked workers (read, histogram, fit, deflate) and the calling process writing the chunks
they return. xsocs with N: a pool of N workers (conversion: read, histogram, deflate and write
under a lock; fit: re-read and fit) plus its calling process and, for the conversion, a manager
process that serves the index queue and the lock. Both sides run with ``OMP_NUM_THREADS=1``
(set in the fresh interpreter before numpy loads) and the same gzip level for the q-space file
(the dataset xsocs creates; dass writes the same chunks, deflated by ``zlib`` at that level).

Before timing, one run of each side on each scan keeps its files and the two are compared:
every dataset of the q-space files and every fit parameter must be identical (max abs
difference 0; printed). ``--maps-only`` adds a third side, the dass engine without the
q-space file (``write_qspace=False``). With ``--direct`` it also runs the direct 3-D fit engine
(:mod:`dass.kmap.direct`) on a small noise-free scan and prints its strain error against the
generator's truth next to xsocs' (accuracy and time).

Every timed run is a fresh interpreter (``bench/kmap.py --worker ...``) so neither side
inherits the other's caches; the wall time is taken inside it around the work only (imports
excluded), and the parent samples the resident memory of the worker's whole process tree
(xsocs' pool workers included, psutil, every 20 ms) for the peak. One untimed warm-up of each
side on the smallest scan comes first, then the sides alternate (dass, xsocs, xsocs, dass, ...),
``--repeats`` times each (default 3; the median is reported).
It prints a table and the speed-up xsocs/dass of the median total times against the target
(>= 3), the same ratio of CPU time (the worker's and its pool's user + system time: less
sensitive to other load on the machine) and the load average; the figures also go to ``bench/results/kmap.json``. It never asserts on time: a
missed target is reported and the exit status stays 0 when the measurement itself worked.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import table, write_results  # noqa: E402 - bench/ is sys.path[0] when run as a script

RESULTS = ROOT / "bench" / "results" / "kmap.json"
TARGET_SPEEDUP = 3.0
SAMPLE_S = 0.02


def _work(side: str, master: str, out: str, grid: list[int], n_proc: int) -> dict[str, float]:
    """The timed work of one side, in this (fresh) interpreter."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from xsocs.process.fit import PeakFitter
    from xsocs.process.qspace import kmap_2_qspace

    from dass.kmap.fast import convert_fit

    import resource

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # pool workers, once joined
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    qfile = os.path.join(out, "qspace.h5")
    ffile = os.path.join(out, "fit.h5")
    c0 = cpu()
    t0 = time.perf_counter()
    if side.startswith("dass"):
        convert_fit(master, None if side == "dass-maps" else qfile, ffile, grid=grid, method="gaussian",
                    background="none", n_proc=n_proc)
        t1 = time.perf_counter()  # one pass: the fit time is inside the conversion
    else:
        kmap_2_qspace(master, qfile, grid, n_proc=n_proc)
        t1 = time.perf_counter()
        result = PeakFitter(qfile, n_proc=n_proc).peak_fit()
        result.to_fit_h5(ffile, mode="w")
    t2 = time.perf_counter()
    return {"convert_s": t1 - t0, "fit_s": t2 - t1, "total_s": t2 - t0, "cpu_s": cpu() - c0}


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def identical(dass_dir: Path, xsocs_dir: Path) -> tuple[bool, str]:
    """Compare the two sides' q-space and fit files: (all identical, what differs)."""
    import h5py
    import numpy as np

    def datasets(path: Path) -> dict:
        with h5py.File(path) as h5:
            names: list[str] = []
            h5.visit(names.append)
            return {n: h5[n][()] for n in names if isinstance(h5[n], h5py.Dataset)}

    diffs = []
    for name in ("qspace.h5", "fit.h5"):
        a, b = datasets(dass_dir / name), datasets(xsocs_dir / name)
        if set(a) != set(b):
            diffs.append(f"{name}: datasets {sorted(set(a) ^ set(b))}")
        for key in set(a) & set(b):
            x, y = np.asarray(a[key]), np.asarray(b[key])
            same = x.shape == y.shape and (np.array_equal(x, y, equal_nan=True) if x.dtype.kind in "fc"
                                           else np.array_equal(x, y))
            if not same:
                diffs.append(f"{name}:{key}")
    return not diffs, ", ".join(diffs[:5])


def run_side(side: str, master: Path, grid: list[int], n_proc: int, work_dir: Path,
             keep: bool = False) -> dict:
    """Run one side in a fresh interpreter; return its times and peak tree memory."""
    import psutil

    out = Path(tempfile.mkdtemp(prefix=f"{side}-", dir=work_dir))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", side, str(master), str(out),
           ",".join(map(str, grid)), str(n_proc)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(ps))
        time.sleep(SAMPLE_S)
    stdout, stderr = proc.communicate()
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    if proc.returncode:
        raise RuntimeError(f"{side} worker failed ({proc.returncode}):\n{stderr[-3000:]}")
    line = [ln for ln in stdout.splitlines() if ln.startswith("{")][-1]
    res = json.loads(line)
    res["peak_rss_mb"] = peak / 2**20
    res["out"] = str(out)
    return res


def bench_direct(work: Path) -> list[dict]:
    """Strain error against the truth and time: xsocs' method vs the direct 3-D fit."""
    import numpy as np

    from dass.kmap import synthetic
    from dass.kmap.direct import fit_direct
    from dass.kmap.fast import convert_fit

    master, truth = synthetic.generate(work / "direct", shape=(6, 8), n_angles=11, noise=False,
                                       frame_shape=(32, 40), center_chan=(12.0, 24.0),
                                       pixel_size_m=(55e-6, 65e-6), strain=(2e-4, 6e-4, -4e-4),
                                       island=None)
    rows = []
    for engine in ("xsocs method (dass engine)", "direct 3-D fit"):
        t0 = time.perf_counter()
        if engine.startswith("direct"):
            res = fit_direct(master, work / "direct_fit.h5", overwrite=True)
        else:
            res = convert_fit(master, None, work / "xsocs_fit.h5", grid=(40, 40, 40), overwrite=True)
        dt = time.perf_counter() - t0
        err = truth.q0 / res.q_norm - 1.0 - truth.strain.ravel()
        rows.append({"engine": engine, "rms_strain": float(np.sqrt(np.mean(err**2))),
                     "max_strain": float(np.abs(err).max()), "time_s": dt})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="sizes 400 and 900 positions, 3 repeats, with --direct (several minutes)")
    ap.add_argument("--sizes", type=int, nargs="+", help="numbers of positions (square scans)")
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="processes to compare")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed runs per side and setting (the median is reported)")
    ap.add_argument("--angles", type=int, default=7, help="rocking angles per scan")
    ap.add_argument("--frame", type=int, default=32, help="detector frame side, pixels")
    ap.add_argument("--grid", type=int, default=28, help="q-space bins per axis")
    ap.add_argument("--keep", action="store_true", help="keep the synthetic scans")
    ap.add_argument("--maps-only", action="store_true",
                    help="also time the dass engine without the q-space file (side 'dass-maps')")
    ap.add_argument("--direct", action="store_true",
                    help="also the direct 3-D fit engine's accuracy and time (small noise-free scan)")
    ap.add_argument("--worker", nargs=5, metavar=("SIDE", "MASTER", "OUT", "GRID", "NPROC"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        side, master, out, grid, n_proc = args.worker
        res = _work(side, master, out, [int(g) for g in grid.split(",")], int(n_proc))
        print(json.dumps(res), flush=True)
        return 0

    from tqdm import tqdm

    from dass.kmap import synthetic

    sizes = args.sizes or ([400, 900] if args.quick else [2500, 10000])
    args.direct = args.direct or args.quick
    grid = [args.grid] * 3
    work = Path(tempfile.mkdtemp(prefix="dass-bench-kmap-"))
    rows, ratios, records, maps_rows = [], [], [], []
    try:
        scans = {}
        for n in sizes:
            side = max(1, round(n**0.5))
            shape = (side, max(1, n // side))
            bar = tqdm(total=1.0, desc=f"generate {shape[0] * shape[1]} positions", unit="scan",
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}")
            t0 = time.perf_counter()

            def tick(frac: float, bar=bar) -> None:
                bar.n = frac
                bar.refresh()

            master, _ = synthetic.generate(work / f"scan-{n}", shape=shape, n_angles=args.angles,
                                           frame_shape=(args.frame, args.frame), compression="gzip",
                                           island={"center": (shape[1] * 0.25, shape[0] * 0.25),
                                                   "radius": shape[0] * 0.15, "strain": 1e-3},
                                           progress=tick)
            bar.close()
            scans[n] = (master, shape[0] * shape[1], time.perf_counter() - t0)
        # untimed warm-up of both sides on every scan (disk cache, .pyc); the files compared
        same_rows = []
        for n in sizes:
            kept = {side: Path(run_side(side, scans[n][0], grid, 1, work, keep=True)["out"])
                    for side in ("dass", "xsocs")}
            same, what = identical(kept["dass"], kept["xsocs"])
            same_rows.append([str(scans[n][1]), "yes" if same else "NO", what or "-"])
            for folder in kept.values():
                shutil.rmtree(folder, ignore_errors=True)
        order_flip = False
        sides = ("dass", "xsocs", *(("dass-maps",) if args.maps_only else ()))
        total_runs = len(sizes) * len(args.procs) * args.repeats * len(sides)
        with tqdm(total=total_runs, desc="timed runs", unit="run") as bar:
            for n in sizes:
                master, npos, gen_s = scans[n]
                for n_proc in args.procs:
                    got: dict[str, list[dict]] = {side: [] for side in sides}
                    for _ in range(args.repeats):
                        order = sides[::-1] if order_flip else sides
                        order_flip = not order_flip
                        for side in order:
                            got[side].append(run_side(side, master, grid, n_proc, work))
                            bar.update(1)
                    med = {}
                    for side in sides:
                        runs = got[side]
                        m = {k: statistics.median(r[k] for r in runs)
                             for k in ("convert_s", "fit_s", "total_s", "cpu_s")}
                        m["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
                        med[side] = m
                        rows.append([str(npos), str(n_proc), side, f"{m['convert_s']:.2f}",
                                     f"{m['fit_s']:.2f}", f"{m['total_s']:.2f}", f"{m['cpu_s']:.2f}",
                                     f"{npos / m['total_s']:.0f}", f"{m['peak_rss_mb']:.0f}"])
                        records.append({"positions": npos, "n_proc": n_proc, "side": side,
                                        "runs": runs, "median": m, "generate_s": gen_s})
                    ratio = med["xsocs"]["total_s"] / med["dass"]["total_s"]
                    cpu_ratio = med["xsocs"]["cpu_s"] / med["dass"]["cpu_s"]
                    ratios.append([str(npos), str(n_proc), f"{ratio:.2f}", f"{TARGET_SPEEDUP:.1f}",
                                   "met" if ratio >= TARGET_SPEEDUP else "MISSED", f"{cpu_ratio:.2f}"])
                    if "dass-maps" in med:
                        maps_rows.append([str(npos), str(n_proc),
                                          f"{med['xsocs']['total_s'] / med['dass-maps']['total_s']:.2f}",
                                          f"{med['xsocs']['cpu_s'] / med['dass-maps']['cpu_s']:.2f}"])
        print()
        print(f"KMAP conversion + Gaussian fit, {args.angles} angles, {args.frame}x{args.frame} "
              f"frames, grid {args.grid}^3, {args.repeats} run(s) per side and setting "
              f"(medians); machine: {os.cpu_count()} CPUs")
        print(table(rows, ["positions", "procs", "side", "convert s", "fit s", "total s", "CPU s",
                           "positions/s", "peak MB"]))
        print()
        print(table([[str(scans[n][1]), f"{scans[n][2]:.1f}",
                      f"{scans[n][1] / scans[n][2]:.0f}"] for n in sizes],
                    ["positions", "generate s", "positions/s"]))
        print()
        print(table(ratios, ["positions", "procs", "xsocs/dass", "target", "result", "CPU xsocs/dass"]))
        if maps_rows:
            print()
            print("without the 4-D q-space file (write_qspace=False: maps only):")
            print(table(maps_rows, ["positions", "procs", "xsocs/dass-maps", "CPU xsocs/dass-maps"]))
        print(f"load average: {' '.join(f'{v:.1f}' for v in os.getloadavg())} "
              "(wall-time ratios are noisy when it exceeds the CPU count; CPU-time ratios less so)")
        print()
        print(table(same_rows, ["positions", "identical to xsocs", "differs"]))
        direct = None
        if args.direct:
            direct = bench_direct(work)
            print()
            print(table([[r["engine"], f"{r['rms_strain']:.2e}", f"{r['max_strain']:.2e}", f"{r['time_s']:.2f}"]
                         for r in direct], ["engine (noise-free scan)", "rms strain error", "max", "time s"]))
        write_results(RESULTS, {
            "settings": {"angles": args.angles, "frame": args.frame, "grid": args.grid,
                         "repeats": args.repeats, "procs": args.procs, "sizes": sizes},
            "target_speedup": TARGET_SPEEDUP,
            "results": records,
            "speedups": [dict(zip(["positions", "n_proc", "speedup"], r[:3]), cpu_speedup=r[5]) for r in ratios],
            "load_average": os.getloadavg(),
            "identical": [dict(zip(["positions", "identical", "differs"], r)) for r in same_rows],
            "direct": direct,
            "maps_only": [dict(zip(["positions", "n_proc", "speedup", "cpu_speedup"], r)) for r in maps_rows],
        })
    finally:
        if args.keep:
            print(f"scans kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
