"""Jobs benchmark: submit-to-COMPLETED latency and queue throughput of dass headless jobs.

Run it from the repository root (``make bench`` does)::

    .venv/bin/python bench/jobs.py [--repeats N] [--batch M]

It starts one real platform with ``dass up`` (:class:`tests.support.PlatformProcess`, free
loopback ports, a temporary state folder, ``c.JobManager.max_concurrency = 2``, everything else
as shipped) and times a trivial notebook, generated with nbformat: a parameters cell
``x: int = 1`` and a cell ``y = x + 1``. It prints, measured in this one run:

1. latency: from the REST submission (``POST api/jobs``, user ``alice``, stack ``stm``,
   ``x = 2``) until ``GET api/jobs/<id>`` says ``COMPLETED`` (polled every 0.05 s), against the
   bare papermill CLI on the same notebook (``papermill in.ipynb out.ipynb -p x 2``, the wall
   time of the subprocess). One untimed warm-up each, then N interleaved pairs A B; each pair's
   ratio dass/papermill, and their median against the target (``<= 1.0``), besides each side's
   median, min and max. dass runs as shipped, with its standby runners (a runner with imports
   done and a kernel started, kept per stack and size); before each pair the bench waits until
   the standby that replaced the last one is ready, so neither side is timed while the other's
   preparation still uses the CPU;
2. where the dass time goes: the phases of each job, from the job's ``created_at``,
   ``started_at`` and ``finished_at`` and the modification times of the files the runner
   writes (``runner.json``, ``executed.ipynb``, ``executed.html``, the results'
   ``dataset.json``, ``result.json``) — the same clock, the same machine;
3. throughput: M jobs (default 20) submitted at once, timed until all are ``COMPLETED``, as
   jobs/min and seconds per job, against M sequential bare papermill runs divided by 2 (the
   ideal for two workers) as a reference ratio.

With ``--slurm`` it measures the Slurm executor instead (root, Debian's slurm-wlm and munge:
``make slurm``): a one-node Slurm cluster (:class:`tests.slurm_support.SlurmCluster`) and a
platform with ``c.JobManager.executor_class = "dass.jobs.slurm.SlurmExecutor"``; N interleaved
pairs of a dass job, REST submit to ``COMPLETED``, against a bare ``sbatch --export=NONE`` of
the same papermill command, polled with ``squeue`` until ``COMPLETED`` (every 0.05 s), their
median ratio against the target (``<= 1.2``). Figures go to ``bench/results/jobs_slurm.json``.

The figures also go to ``bench/results/jobs.json``. A missed target is reported, never an
error: the exit status is 0 whenever the measurement itself worked.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import PlatformProcess  # noqa: E402

from common import table, write_results  # noqa: E402 - bench/ is sys.path[0] when run as a script

RESULTS = ROOT / "bench" / "results" / "jobs.json"
TARGET_RATIO = 1.0
SLURM_RESULTS = ROOT / "bench" / "results" / "jobs_slurm.json"
SLURM_TARGET_RATIO = 1.2
STANDBY_WAIT = 180  # seconds: a standby runner warming on a loaded 2-core machine
USER = "alice"
STACK = "stm"
CONCURRENCY = 2
POLL = 0.05  # seconds between two looks at a job in the latency measurement
BATCH_POLL = 0.1  # seconds between two looks at the batch in the throughput measurement
FINISHED = ("COMPLETED", "FAILED", "STOPPED")
PAPERMILL = Path(sys.executable).parent / "papermill"

# name: (from mark, to mark, what it is); marks are wall-clock seconds of one job
PHASES = {
    "submit": ("submit", "created", "POST api/jobs until the job row exists (validation, workdir)"),
    "queue": ("created", "started", "scheduler wakes, asks the hub for the owner, re-checks access, spec.json"),
    "process_start": ("started", "runner_json", "Popen, interpreter start, import of dass.jobs.runner"),
    "notebook": ("runner_json", "executed", "mounts, manifest, papermill import, kernel start, cells"),
    "html": ("executed", "html", "nbconvert HTML rendering (import included)"),
    "publish": ("html", "dataset_json", "results upload, job.log, RO-Crate, dataset.json"),
    "runner_end": ("dataset_json", "result_json", "unmount, result.json"),
    "detect": ("result_json", "finished", "runner exits; the service's next poll tick notices"),
    "register": ("finished", "seen", "catalogue scan and commit, then the client's next poll"),
}
COARSE = {
    "submit": ("submit", "created", "POST until created_at"),
    "queue_wait": ("created", "started", "created_at -> started_at"),
    "run": ("started", "finished", "started_at -> finished_at"),
    "finalize": ("finished", "seen", "finished_at -> COMPLETED seen by the client"),
}


def trivial_notebook() -> dict:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    params = new_code_cell("x: int = 1")
    params.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[params, new_code_cell("y = x + 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return json.loads(nbformat.writes(nb))


def _ts(value: str | None) -> float | None:
    return None if value is None else datetime.datetime.fromisoformat(value).timestamp()


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _stats(values: list[float]) -> dict:
    return {
        "samples_s": [round(x, 4) for x in values],
        "median_s": round(statistics.median(values), 4),
        "min_s": round(min(values), 4),
        "max_s": round(max(values), 4),
    }


def _phases_of(m: dict) -> dict:
    """Seconds of each phase of one job (None where a mark is missing)."""
    return {name: None if m.get(a) is None or m.get(b) is None else round(m[b] - m[a], 4)
            for name, (a, b, _) in PHASES.items()}


def _phase_medians(marks_list: list[dict], phases: dict) -> dict:
    out = {}
    for name, (a, b, _) in phases.items():
        vals = [m[b] - m[a] for m in marks_list if m.get(a) is not None and m.get(b) is not None]
        out[name] = round(statistics.median(vals), 4) if vals else None
    return out


class Dass:
    """Submits jobs to one platform and reads back when each of their phases ended."""

    def __init__(self, proc: PlatformProcess, notebook: dict):
        self.p = proc
        self.body = {"notebook": {"upload": notebook, "name": "bench.ipynb"},
                     "parameters": {"x": 2}, "stack": STACK}
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {proc.token_for(USER)}"
        self.base = f"{proc.url}/services/dass/"

    def submit(self) -> dict:
        r = self.http.post(self.base + "api/jobs", json=self.body, timeout=30)
        if r.status_code != 201:
            raise RuntimeError(f"submission refused ({r.status_code}): {r.text}")
        return r.json()

    def get(self, job_id: str) -> dict:
        r = self.http.get(self.base + f"api/jobs/{job_id}", timeout=30)
        r.raise_for_status()
        return r.json()

    def all_jobs(self) -> dict[str, dict]:
        r = self.http.get(self.base + "api/jobs", params={"limit": 500}, timeout=30)
        r.raise_for_status()
        return {j["id"]: j for j in r.json()["jobs"]}

    def run_one(self, timeout: float = 120) -> tuple[float, dict]:
        """One job, submit to COMPLETED; returns (seconds, marks of its phases)."""
        wall0, t0 = time.time(), time.perf_counter()
        job = self.submit()
        while True:
            job = self.get(job["id"])
            if job["status"] in FINISHED:
                break
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"job {job['id']} not finished after {timeout}s; see {self.p.log_path}")
            time.sleep(POLL)
        elapsed = time.perf_counter() - t0
        seen = wall0 + elapsed
        if job["status"] != "COMPLETED":
            raise RuntimeError(f"job {job['id']} {job['status']}: {job['reason']}")
        return elapsed, self.marks(job, wall0, seen)

    def marks(self, job: dict, submit: float | None, seen: float | None) -> dict:
        workdir = self.p.state / "jobs" / job["id"]
        results = Path(unquote(urlparse(job["results_url"]).path)) if job.get("results_url") else None
        return {
            "submit": submit,
            "created": _ts(job["created_at"]),
            "started": _ts(job["started_at"]),
            "runner_json": _mtime(workdir / "runner.json"),
            "executed": _mtime(workdir / "executed.ipynb"),
            "html": _mtime(workdir / "executed.html"),
            "dataset_json": _mtime(results / "dataset.json") if results else None,
            "result_json": _mtime(workdir / "result.json"),
            "finished": _ts(job["finished_at"]),
            "seen": seen,
        }


def papermill_once(work: Path) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([str(PAPERMILL), "in.ipynb", "out.ipynb", "-p", "x", "2"], cwd=work,
                       capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"papermill failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return elapsed


def wait_standby(state: Path) -> float:
    """Wait until the jobs' standby pool holds a ready runner; returns the seconds waited."""
    pool = state / "jobs" / ".standby"
    t0 = time.perf_counter()
    while not any(pool.glob("*.ready")):
        if time.perf_counter() - t0 > STANDBY_WAIT:
            print(f"  (no standby runner ready after {STANDBY_WAIT}s: the next dass run starts cold)", flush=True)
            break
        time.sleep(0.2)
    return time.perf_counter() - t0


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def sbatch_papermill_once(cluster, work: Path, papermill: str) -> float:
    """A bare ``sbatch --export=NONE`` of the papermill command, polled (like the dass job,
    every 0.05 s, with ``squeue``) until Slurm says ``COMPLETED``; returns the wall time.
    (``sbatch --wait`` would poll at growing intervals, up to 10 s, and flatter dass.)"""
    command = f"{papermill} {work}/in.ipynb {work}/out.ipynb -p x 2"
    t0 = time.perf_counter()
    r = subprocess.run(["sbatch", "--parsable", "--export=NONE", f"--chdir={work}",
                        f"--output={work}/sbatch.out", "--cpus-per-task=1", "--wrap", command],
                       capture_output=True, text=True, env=cluster.env)
    if r.returncode != 0:
        raise RuntimeError(f"sbatch failed ({r.returncode}): {r.stderr[-2000:]}")
    slurm_id = r.stdout.strip().split(";")[0]
    while True:
        state = subprocess.run(["squeue", "-h", "-t", "all", "-j", slurm_id, "-o", "%T"], capture_output=True,
                               text=True, env=cluster.env).stdout.strip()
        if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
            break
        if time.perf_counter() - t0 > 300:
            raise TimeoutError(f"Slurm job {slurm_id} not finished after 300 s")
        time.sleep(POLL)
    elapsed = time.perf_counter() - t0
    if state != "COMPLETED":
        raise RuntimeError(f"bare sbatch of papermill: Slurm job {slurm_id} {state}")
    return elapsed


def slurm_main(args) -> int:
    """The Slurm rows: a dass job over the SlurmExecutor against a bare sbatch of papermill."""
    from tests.slurm_support import SlurmCluster, slurm_missing

    why = slurm_missing()
    if why:
        print(f"dass jobs benchmark on Slurm: skipped ({why})")
        return 0
    work = Path(tempfile.mkdtemp(prefix="dass-bench-slurm-"))
    cluster = SlurmCluster(work / "slurm")
    proc: PlatformProcess | None = None
    try:
        cluster.start()
        nb = trivial_notebook()
        pm_dir = work / "papermill"
        pm_dir.mkdir()
        (pm_dir / "in.ipynb").write_text(json.dumps(nb))
        # the jobs' Python: a stack of its own whose environment is --job-env
        stack = {"display_name": "Benchmark jobs", "landing_notebook": "stm/welcome.ipynb",
                 "default_size": "small", "allowed_sizes": ["small"], "environment": args.job_env}
        proc = PlatformProcess(work / "dass", name="bench-jobs-slurm", extra_config="\n".join([
            f"c.StackRegistry.stacks = {{'bench': {stack!r}}}",
            f"c.JobManager.max_concurrency = {CONCURRENCY}",
            'c.JobManager.executor_class = "dass.jobs.slurm.SlurmExecutor"',
            f"c.SlurmExecutor.slurm_conf = {str(cluster.conf)!r}",
            "c.SlurmExecutor.status_cache_seconds = 0.2",
            "c.JobManager.poll_interval = 0.2",
        ]))
        print(f"dass jobs benchmark on Slurm: {args.repeats} interleaved pairs (state in {work})", flush=True)
        dass = Dass(proc, nb)
        dass.body["stack"] = "bench"
        w, _ = dass.run_one()
        print(f"  warm-up dass job   {w:.3f}s (untimed)", flush=True)
        w = sbatch_papermill_once(cluster, pm_dir, str(Path(args.job_env) / 'bin' / 'papermill'))
        print(f"  warm-up bare sbatch {w:.3f}s (untimed)", flush=True)
        dass_s, bare_s = [], []
        for i in range(args.repeats):
            t, _ = dass.run_one()
            dass_s.append(t)
            b = sbatch_papermill_once(cluster, pm_dir, str(Path(args.job_env) / 'bin' / 'papermill'))
            bare_s.append(b)
            print(f"  pair {i + 1}/{args.repeats}: dass {t:.3f}s  sbatch {b:.3f}s  ratio {t / b:.3f}", flush=True)
        ratios = [a / b for a, b in zip(dass_s, bare_s)]
        ratio = statistics.median(ratios)
        sa, sb = _stats(dass_s), _stats(bare_s)
        print()
        print("Slurm: submit to COMPLETED (seconds)")
        print(table(
            [["dass job (SlurmExecutor, REST submit, poll 0.05 s)", f"{sa['median_s']:.3f}", f"{sa['min_s']:.3f}",
              f"{sa['max_s']:.3f}"],
             ["sbatch --export=NONE papermill (squeue poll 0.05 s)", f"{sb['median_s']:.3f}", f"{sb['min_s']:.3f}",
              f"{sb['max_s']:.3f}"]],
            ["", "median", "min", "max"],
        ))
        verdict = "met" if ratio <= SLURM_TARGET_RATIO else "NOT met"
        print(f"Median of the per-pair ratios dass/sbatch: {ratio:.3f}   target <= {SLURM_TARGET_RATIO:.2f}: {verdict}")
        write_results(SLURM_RESULTS, {
            "repeats": args.repeats, "dass": sa, "sbatch": sb,
            "pair_ratios": [round(r, 4) for r in ratios], "ratio_dass_over_sbatch": round(ratio, 4),
            "target_ratio_max": SLURM_TARGET_RATIO, "target_met": ratio <= SLURM_TARGET_RATIO,
            "note": "jobs run as the service's account here (no per-user accounts yet)",
        })
        return 0
    finally:
        if proc is not None:
            proc.stop()
        cluster.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slurm", action="store_true", help="measure the Slurm executor against bare sbatch")
    ap.add_argument("--job-env", default=sys.prefix,
                    help="with --slurm: prefix of the Python environment both sides run papermill in "
                         "(default: this one)")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs per side for latency (default 5)")
    ap.add_argument("--batch", type=int, default=20, help="jobs in the throughput batch (default 20)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary state folder")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.batch < 1:
        ap.error("--batch must be at least 1")
    if args.slurm:
        return slurm_main(args)

    work = Path(tempfile.mkdtemp(prefix="dass-bench-jobs-"))
    proc: PlatformProcess | None = None
    started = time.perf_counter()
    try:
        print(f"dass jobs benchmark: {args.repeats} timed runs per side, a batch of {args.batch} "
              f"(state in {work})", flush=True)
        nb = trivial_notebook()
        pm_dir = work / "papermill"
        pm_dir.mkdir()
        (pm_dir / "in.ipynb").write_text(json.dumps(nb))

        proc = PlatformProcess(work / "dass", name="bench-jobs",
                               extra_config=f"c.JobManager.max_concurrency = {CONCURRENCY}")
        print(f"  platform ready in {proc.ready_after:.2f}s (log: {proc.log_path})", flush=True)
        dass = Dass(proc, nb)

        # ---- 1. latency, interleaved ------------------------------------------------------
        w, _ = dass.run_one()
        print(f"  warm-up dass      {w:.3f}s (untimed)", flush=True)
        w = papermill_once(pm_dir)
        print(f"  warm-up papermill {w:.3f}s (untimed)", flush=True)
        dass_s: list[float] = []
        pm_s: list[float] = []
        marks: list[dict] = []
        for i in range(args.repeats):
            wait_standby(work / "dass")
            t, m = dass.run_one()
            dass_s.append(t)
            marks.append(m)
            print(f"  run {i + 1}/{args.repeats} dass      {t:.3f}s", flush=True)
            wait_standby(work / "dass")  # the replacement standby warms before papermill is timed
            t = papermill_once(pm_dir)
            pm_s.append(t)
            print(f"  run {i + 1}/{args.repeats} papermill {t:.3f}s   pair ratio {dass_s[-1] / t:.3f}", flush=True)

        sa, sb = _stats(dass_s), _stats(pm_s)
        pair_ratios = [a / b for a, b in zip(dass_s, pm_s)]
        ratio = statistics.median(pair_ratios)
        met = ratio <= TARGET_RATIO
        phases = _phase_medians(marks, PHASES)
        coarse = _phase_medians(marks, COARSE)

        # ---- 2. throughput ----------------------------------------------------------------
        print(f"  batch: submitting {args.batch} jobs at once", flush=True)
        wall0, t0 = time.time(), time.perf_counter()
        ids = [dass.submit()["id"] for _ in range(args.batch)]
        submitted_after = time.perf_counter() - t0
        seen: dict[str, float] = {}
        jobs: dict[str, dict] = {}
        while len(seen) < len(ids):
            now_jobs = dass.all_jobs()
            t = time.perf_counter() - t0
            for jid in ids:
                j = now_jobs.get(jid)
                if j and j["status"] in FINISHED and jid not in seen:
                    seen[jid], jobs[jid] = t, j
            if t > 60 + 30 * args.batch:
                raise TimeoutError(f"batch not finished after {t:.0f}s; see {proc.log_path}")
            time.sleep(BATCH_POLL)
        batch_s = max(seen.values())
        failed = {jid: j for jid, j in jobs.items() if j["status"] != "COMPLETED"}
        if failed:
            jid, j = next(iter(failed.items()))
            raise RuntimeError(f"{len(failed)} batch jobs did not complete; e.g. {jid}: {j['status']} {j['reason']}")
        batch_marks = [dass.marks(jobs[jid], None, wall0 + seen[jid]) for jid in ids]
        batch_phases = _phase_medians(batch_marks, PHASES)
        runs = [m["finished"] - m["started"] for m in batch_marks]
        waits = [m["started"] - m["created"] for m in batch_marks]
        regs = [m["seen"] - m["finished"] for m in batch_marks]
        overlap = max_overlap([(m["started"], m["finished"]) for m in batch_marks])
        print(f"  batch: all {args.batch} COMPLETED after {batch_s:.3f}s", flush=True)

        print(f"  reference: {args.batch} sequential papermill runs", flush=True)
        seq = [papermill_once(pm_dir) for _ in range(args.batch)]
        seq_total = sum(seq)
        ideal = seq_total / CONCURRENCY
        tp_ratio = batch_s / ideal

        result = {
            "platform_start_s": round(proc.ready_after, 4),
            "notebook": nb,
            "latency": {
                "repeats": args.repeats,
                "client_poll_s": POLL,
                "dass": {"request": {k: v for k, v in dass.body.items() if k != "notebook"}, **sa,
                         "phases_median_s": phases, "coarse_median_s": coarse,
                         "phases_samples_s": [_phases_of(m) for m in marks]},
                "papermill": {"command": "papermill in.ipynb out.ipynb -p x 2", **sb},
                "pair_ratios": [round(r, 4) for r in pair_ratios],
                "ratio_dass_over_papermill": round(ratio, 4),
                "ratio_of_medians": round(sa["median_s"] / sb["median_s"], 4),
                "ratio_of_minimums": round(sa["min_s"] / sb["min_s"], 4),
                "target_ratio_max": TARGET_RATIO,
                "target_met": met,
            },
            "throughput": {
                "jobs": args.batch,
                "max_concurrency": CONCURRENCY,
                "observed_max_overlap": overlap,
                "submit_all_s": round(submitted_after, 4),
                "dass_total_s": round(batch_s, 4),
                "dass_jobs_per_min": round(60 * args.batch / batch_s, 3),
                "dass_s_per_job": round(batch_s / args.batch, 4),
                "dass_run_median_s": round(statistics.median(runs), 4),
                "dass_queue_wait_median_s": round(statistics.median(waits), 4),
                "dass_register_median_s": round(statistics.median(regs), 4),
                "dass_phases_median_s": batch_phases,
                "dass_phases_samples_s": [_phases_of(m) for m in batch_marks],
                "papermill_sequential_total_s": round(seq_total, 4),
                "papermill_ideal_2_workers_s": round(ideal, 4),
                "papermill_ideal_jobs_per_min": round(60 * args.batch / ideal, 3),
                "ratio_dass_over_ideal": round(tp_ratio, 4),
            },
        }

        print()
        print(f"Latency: submit to COMPLETED, {args.repeats} runs each, interleaved (seconds)")
        print(table(
            [["dass (REST submit, poll 0.05 s)", f"{sa['median_s']:.3f}", f"{sa['min_s']:.3f}", f"{sa['max_s']:.3f}"],
             ["papermill CLI", f"{sb['median_s']:.3f}", f"{sb['min_s']:.3f}", f"{sb['max_s']:.3f}"]],
            ["", "median", "min", "max"],
        ))
        print()
        print("Where the dass time goes: median seconds per phase (job timestamps, file mtimes)")
        rows = [[name, _f(coarse[name]), what] for name, (_, _, what) in COARSE.items()]
        print(table(rows, ["phase", "median", "what"]))
        print()
        rows = [[name, _f(phases[name]), what] for name, (_, _, what) in PHASES.items()]
        print(table(rows, ["detail", "median", "what"]))
        print()
        verdict = "met" if met else "NOT met"
        print(f"Median of the per-pair ratios dass/papermill: {ratio:.3f}   target <= {TARGET_RATIO:.2f}: {verdict}")
        print()
        print(f"Throughput: {args.batch} jobs submitted at once, max_concurrency {CONCURRENCY} "
              f"(observed overlap {overlap})")
        print(table(
            [["dass", f"{batch_s:.3f}", f"{60 * args.batch / batch_s:.2f}", f"{batch_s / args.batch:.3f}"],
             [f"papermill x{args.batch} sequential / {CONCURRENCY} (ideal)", f"{ideal:.3f}",
              f"{60 * args.batch / ideal:.2f}", f"{ideal / args.batch:.3f}"]],
            ["", "total s", "jobs/min", "s per job"],
        ))
        print(f"dass per job in the batch (medians): queue wait {statistics.median(waits):.3f}s, "
              f"run {statistics.median(runs):.3f}s, finished_at -> seen {statistics.median(regs):.3f}s")
        print("dass phases in the batch (medians): "
              + ", ".join(f"{name} {_f(batch_phases[name])}" for name in PHASES if name != "queue"))
        print(f"Ratio dass/ideal of the batch time: {tp_ratio:.3f}   (reference, no target)")

        write_results(RESULTS, result)
        print(f"(total {time.perf_counter() - started:.0f}s)")
        return 0
    finally:
        if proc is not None:
            try:
                proc.stop()
            except Exception as e:
                print(f"warning: stopping {proc.name}: {e!r}", file=sys.stderr)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
