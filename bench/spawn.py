"""Spawn benchmark: hub start time, and spawn-to-ready of the dass spawner against a plain one.

Run it from the repository root (``make bench`` does)::

    .venv/bin/python bench/spawn.py [--repeats N]

It starts two real platforms with ``dass up`` (:class:`tests.support.PlatformProcess`, on free
loopback ports, each in its own temporary state folder):

* ``dass``  — the platform as shipped: ``DassLocalSpawner``;
* ``plain`` — the same platform whose hub uses ``jupyterhub.spawner.SimpleLocalProcessSpawner``
  (same Python, same ``jupyterhub-singleuser``, JupyterLab as the start page): the reference.

and prints, measured in this one run:

1. hub start: from launching ``dass up`` until the hub API and the dass service answer;
2. spawn-to-ready: REST spawn (``POST /hub/api/users/alice/server``) until the hub reports the
   server ready, then the server is stopped (untimed); ``dass`` spawns stack ``sem``, size
   ``small`` and two datasets, ``plain`` spawns with empty options. One untimed warm-up spawn
   each, then the two are measured alternately (A B A B ...), N times each;
3. the ratio dass/plain of the medians against the target (``<= 1.10``).

With ``--slurm`` it measures the Slurm back end instead (root, ``make slurm``): on a one-node
Slurm cluster (:class:`tests.slurm_support.SlurmCluster`), spawn-to-ready of
``dass.hub.slurm.DassSlurmSpawner`` (stack ``sem``, size ``small``) against plain
``batchspawner.SlurmSpawner`` with the same commands, for a Unix user made for the run; the
ratio of the medians against the same target. Figures go to ``bench/results/spawn_slurm.json``.

With ``--backend container`` the two platforms run sessions in podman containers of one image
(the CI test image, built once per change like the tests do, or ``--image``):

* ``dass``  — ``DassContainerSpawner`` (the user's account, home bound, limits, read-only image);
* ``plain`` — a minimal spawner written here (:data:`PLAIN_PODMAN`) that does a plain
  ``podman run -d --network host IMAGE jupyterhub-singleuser`` and nothing else: the reference.

The figures also go to ``bench/results/spawn.json`` (``spawn-container.json``). A missed
target is reported, never an error: the exit status is 0 whenever the measurement itself worked.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support import PlatformProcess  # noqa: E402

from common import table, write_results  # noqa: E402 - bench/ is sys.path[0] when run as a script

RESULTS = ROOT / "bench" / "results" / "spawn.json"
SLURM_RESULTS = ROOT / "bench" / "results" / "spawn_slurm.json"
TARGET_RATIO = 1.10
USER = "alice"
DASS_OPTIONS = {
    "stack": "sem",
    "size": "small",
    "datasets": ["p-2026-001/sem-nanowires", "p-2025-900/sem-reference-public"],
}
PLAIN_OPTIONS: dict = {}
POLL = 0.05  # seconds between readiness checks of a pending spawn
HUB_TOOK = re.compile(r"User (\S+) took ([0-9.]+) seconds to start")
STAMP = re.compile(r"^\[[A-Z] (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")
# log lines that mark the phases of one spawn (first match after the spawn was requested)
MARKS = {
    "request": f"Creating oauth client jupyterhub-user-{USER}",
    "popen": "jupyterhub-singleuser",  # on the spawner's "Spawning <cmd>" line
    "serving": "Serving notebooks from local directory",
    "hub_saw_it": f"User {USER} took ",
}
PHASES = {  # name: (from mark, to mark, what it is)
    "before_process": ("request", "popen", "hub side before Popen: options, checks, home"),
    "server_boot": ("popen", "serving", "jupyterhub-singleuser imports and starts"),
    "hub_detect": ("serving", "hub_saw_it", "hub's wait_up polling notices the server"),
    "to_serving": ("request", "serving", "the first two: spawn without the hub's polling"),
}


#: the reference of ``--backend container``: a plain ``podman run`` of the same image as a
#: JupyterHub spawner (config text: the class is defined in the platform's config file)
PLAIN_PODMAN = """
import asyncio as _asyncio, json as _json, os as _os
from jupyterhub.spawner import Spawner as _Spawner
from jupyterhub.utils import random_port as _random_port


async def _podman(*args, env=None):
    p = await _asyncio.create_subprocess_exec("podman", *args, env=env or dict(_os.environ),
                                              stdout=_asyncio.subprocess.PIPE, stderr=_asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    return p.returncode, out.decode(), err.decode()


class PlainPodmanSpawner(_Spawner):
    container = ""

    def get_state(self):
        state = super().get_state()
        if self.container:
            state["container"] = self.container
        return state

    def load_state(self, state):
        super().load_state(state)
        self.container = state.get("container", "")

    def clear_state(self):
        super().clear_state()
        self.container = ""

    async def start(self):
        self.port = _random_port()
        env = self.get_env()
        env.pop("PATH", None)
        env["HOME"] = "/tmp"  # the image's user (nobody) has no home
        name = "bench-plain-" + self.user.name
        await _podman("rm", "--force", "--ignore", name)
        argv = ["run", "--detach", "--name", name, "--network", "host"]
        for key in env:
            argv += ["--env", key]
        argv += [IMAGE, "jupyterhub-singleuser", *self.get_args()]
        code, _, err = await _podman(*argv, env={**_os.environ, **env})
        if code:
            raise RuntimeError(err)
        self.container = name
        return "127.0.0.1", self.port

    async def poll(self):
        if not self.container:
            return 0
        code, out, _ = await _podman("container", "inspect", "--format", "{{json .State}}", self.container)
        if code:
            return 0
        state = _json.loads(out)
        return None if state.get("Running") else int(state.get("ExitCode") or 0)

    async def stop(self, now=False):
        if self.container:
            await _podman("rm", "--force", "--time", "10", self.container)


c.JupyterHub.spawner_class = PlainPodmanSpawner
c.Spawner.default_url = "/lab"
"""


def container_image(image: str | None) -> str:
    """The image both container platforms run: ``image``, else the CI test image (built
    unless it exists, as the tests do)."""
    if image:
        return image
    from tests.support import ARTIFACTS, build_test_image

    ARTIFACTS.mkdir(exist_ok=True)
    tag, seconds = build_test_image(ARTIFACTS / "test-image-build.log")
    print(f"  image {tag} ready in {seconds:.1f}s", flush=True)
    return tag


def container_configs(image: str) -> tuple[str, str]:
    """Config text of the ``dass`` (DassContainerSpawner) and ``plain`` (podman run) platforms."""
    from tests.support import TEST_ACCOUNT_IDS, TEST_ACCOUNT_PREFIX

    stacks = {name: {"image": image} for name in ("sem", "kmap", "stm")}
    dass = "\n".join([
        f"c.UserAccounts.name_prefix = {TEST_ACCOUNT_PREFIX!r}",
        f"c.UserAccounts.uid_min = {TEST_ACCOUNT_IDS[0]}",
        f"c.UserAccounts.uid_max = {TEST_ACCOUNT_IDS[1]}",
        "c.JupyterHub.spawner_class = 'dass.hub.container.DassContainerSpawner'",
        f"c.StackRegistry.stacks = {stacks!r}",
    ])
    return dass, f"IMAGE = {image!r}\n" + PLAIN_PODMAN


def plain_config(state: Path) -> str:
    """Hub config of the reference platform: JupyterHub's own local-process spawner."""
    singleuser = Path(sys.executable).parent / "jupyterhub-singleuser"  # what DassLocalSpawner runs
    lines = [
        'c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"',
        f'c.SimpleLocalProcessSpawner.home_dir_template = {str(state / "homes" / "{username}")!r}',
        f"c.Spawner.cmd = [{str(singleuser)!r}]",
        'c.Spawner.default_url = "/lab"',
    ]
    if os.geteuid() == 0:
        lines.append('c.Spawner.args = ["--allow-root"]')
    return "\n".join(lines)


class Runner:
    """Spawns and stops the server of one user on one platform, timing each spawn."""

    def __init__(self, label: str, proc: PlatformProcess, options: dict, user: str = USER):
        self.label = label
        self.user = user
        self.p = proc
        self.options = options
        self.samples: list[float] = []
        self.stops: list[float] = []
        self.hub_reported: list[float] = []
        self.phases: dict[str, list[float]] = {k: [] for k in PHASES}
        self._log_offset = 0
        self._last_log = ""

    def _log_phases(self, text: str) -> dict[str, float] | None:
        """Seconds of each phase of the spawn whose log lines are ``text`` (hub log stamps)."""
        stamps: dict[str, datetime.datetime] = {}
        for line in text.splitlines():
            m = STAMP.match(line)
            if not m:
                continue
            for mark, needle in MARKS.items():
                if mark not in stamps and needle in line and (mark != "popen" or "Spawning" in line):
                    stamps[mark] = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
        if len(stamps) != len(MARKS):
            return None
        return {k: (stamps[b] - stamps[a]).total_seconds() for k, (a, b, _) in PHASES.items()}

    def _hub_took(self) -> float | None:
        """The hub's own "User alice took X seconds to start" for the spawn just made."""
        found = [float(m.group(2)) for m in HUB_TOOK.finditer(self._last_log) if m.group(1) == self.user]
        return found[-1] if found else None

    def spawn_once(self, timeout: float = 120) -> float:
        p = self.p
        self._log_offset = p.log_path.stat().st_size
        t0 = time.perf_counter()
        r = p.api("POST", f"/users/{self.user}/server", json=self.options)
        if r.status_code not in (201, 202):
            raise RuntimeError(f"{self.label}: spawn refused ({r.status_code}): {r.text}")
        # 201: the spawn finished within slow_spawn_timeout and the server is ready;
        # 202: still pending, poll the user model until the hub calls it ready
        while r.status_code != 201:
            model = p.api("GET", f"/users/{self.user}").json()
            server = model.get("servers", {}).get("")
            if server and server.get("ready"):
                break
            if server is None and not model.get("pending"):
                raise RuntimeError(f"{self.label}: the server of {self.user} is gone; see {p.log_path}")
            if time.perf_counter() - t0 > timeout:
                raise TimeoutError(f"{self.label}: not ready after {timeout}s; see {p.log_path}")
            time.sleep(POLL)
        elapsed = time.perf_counter() - t0
        with open(p.log_path, "rb") as f:
            f.seek(self._log_offset)
            self._last_log = f.read().decode(errors="replace")
        t1 = time.perf_counter()
        p.stop_server(self.user)
        self.stops.append(time.perf_counter() - t1)
        return elapsed

    def measure(self, warmup: bool = False) -> float:
        elapsed = self.spawn_once()
        took = self._hub_took()
        if not warmup:
            self.samples.append(elapsed)
            if took is not None:
                self.hub_reported.append(took)
            phases = self._log_phases(self._last_log)
            for k, v in (phases or {}).items():
                self.phases[k].append(v)
        return elapsed

    def summary(self) -> dict:
        s = self.samples
        return {
            "samples_s": [round(x, 4) for x in s],
            "median_s": round(statistics.median(s), 4),
            "min_s": round(min(s), 4),
            "max_s": round(max(s), 4),
            "hub_reported_median_s": (
                round(statistics.median(self.hub_reported), 4) if self.hub_reported else None
            ),
            "stop_median_s": round(statistics.median(self.stops), 4) if self.stops else None,
            "phases_median_s": {
                k: round(statistics.median(v), 4) if v else None for k, v in self.phases.items()
            },
        }


def slurm_main(args) -> int:
    """The Slurm rows: DassSlurmSpawner against plain batchspawner on a one-node cluster."""
    from tests.slurm_support import SlurmCluster, slurm_missing, unix_user

    why = slurm_missing()
    if why:
        print(f"dass spawn benchmark on Slurm: skipped ({why})")
        return 0
    prefix = Path(args.session_env)
    work = Path(tempfile.mkdtemp(prefix="dass-bench-slurm-"))
    os.chmod(work, 0o755)
    cluster = SlurmCluster(work / "slurm")
    procs: list[PlatformProcess] = []
    try:
        cluster.start()
        os.environ["SLURM_CONF"] = str(cluster.conf)  # both hubs' Slurm commands reach this cluster
        common = [
            f"c.Spawner.cmd = [{str(prefix / 'bin' / 'jupyterhub-singleuser')!r}]",
            f"c.SlurmSpawner.batchspawner_singleuser_cmd = {str(prefix / 'bin' / 'batchspawner-singleuser')!r}",
            'c.SlurmSpawner.req_srun = ""',
            'c.SlurmSpawner.req_partition = "debug"',
            f"c.Spawner.environment = {{'SLURM_CONF': {str(cluster.conf)!r}}}",  # sbatch runs in the session's env
            "c.Spawner.start_timeout = 300",
            "c.Spawner.http_timeout = 120",
        ]
        dass_cfg = "\n".join(common + [
            'c.JupyterHub.spawner_class = "dass.hub.slurm.DassSlurmSpawner"',
            f"c.DassSlurmSpawner.session_prefix = {str(prefix)!r}",
            'c.DassSlurmSpawner.partition = "debug"',
        ])
        plain_cfg = "\n".join(common + [
            'c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"',
            'c.Spawner.default_url = "/lab"',
        ])
        with unix_user("bench", home=True) as account:
            print(f"dass spawn benchmark on Slurm: {args.repeats} timed spawns per spawner, user "
                  f"{account.pw_name} (state in {work})", flush=True)
            p_dass = PlatformProcess(work / "dass", name="bench-slurm-dass", extra_config=dass_cfg)
            procs.append(p_dass)
            p_plain = PlatformProcess(work / "plain", name="bench-slurm-plain", extra_config=plain_cfg)
            procs.append(p_plain)
            a = Runner("dass", p_dass, {"stack": "sem", "size": "small"}, user=account.pw_name)
            b = Runner("plain", p_plain, {}, user=account.pw_name)
            for r in (a, b):
                r.p.token_for(r.user)
                w = r.measure(warmup=True)
                print(f"  warm-up {r.label:<5} {w:.3f}s (untimed)", flush=True)
            for i in range(args.repeats):
                for r in (a, b):
                    t = r.measure()
                    print(f"  run {i + 1}/{args.repeats} {r.label:<5} {t:.3f}s", flush=True)
            sa, sb = a.summary(), b.summary()
        ratio = sa["median_s"] / sb["median_s"]
        print()
        print(f"Slurm spawn to ready, {args.repeats} runs each, interleaved (seconds)")
        print(table(
            [["dass (DassSlurmSpawner, sem/small)", f"{sa['median_s']:.3f}", f"{sa['min_s']:.3f}", f"{sa['max_s']:.3f}"],
             ["plain (batchspawner.SlurmSpawner)", f"{sb['median_s']:.3f}", f"{sb['min_s']:.3f}", f"{sb['max_s']:.3f}"]],
            ["spawner", "median", "min", "max"],
        ))
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        print(f"Ratio dass/plain of the medians: {ratio:.3f}   target <= {TARGET_RATIO:.2f}: {verdict}")
        write_results(SLURM_RESULTS, {"repeats": args.repeats, "dass": sa, "plain": sb,
                                      "ratio_dass_over_plain": round(ratio, 4), "target_ratio_max": TARGET_RATIO,
                                      "target_met": ratio <= TARGET_RATIO})
        return 0
    finally:
        for proc in reversed(procs):
            try:
                proc.stop()
            except Exception as e:
                print(f"warning: stopping {proc.name}: {e!r}", file=sys.stderr)
        cluster.stop()
        os.environ.pop("SLURM_CONF", None)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed spawns per spawner (default 5)")
    ap.add_argument("--slurm", action="store_true",
                    help="measure DassSlurmSpawner against plain batchspawner on a one-node Slurm cluster")
    ap.add_argument("--session-env", default=sys.prefix,
                    help="with --slurm: prefix of the environment sessions run in (jupyterhub-singleuser, "
                         "batchspawner-singleuser; readable by other users). Default: this one")
    ap.add_argument("--keep", action="store_true", help="keep the temporary state folders")
    ap.add_argument("--backend", choices=("local", "container"), default="local",
                    help="local processes (default) or podman containers (needs root and podman)")
    ap.add_argument("--image", help="with --backend container: the image (default: the CI test image)")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    if args.slurm:
        return slurm_main(args)

    work = Path(tempfile.mkdtemp(prefix="dass-bench-"))
    procs: list[PlatformProcess] = []
    started = time.perf_counter()
    try:
        print(f"dass spawn benchmark: {args.repeats} timed spawns per spawner (state in {work})",
              flush=True)
        dass_state = work / "dass"
        plain_state = work / "plain"
        containers = args.backend == "container"
        if containers:
            from tests.support import podman_missing

            reason = podman_missing()
            if reason:
                print(f"cannot run --backend container here: {reason}", file=sys.stderr)
                return 2
            dass_config, plain_extra = container_configs(container_image(args.image))
        else:
            dass_config, plain_extra = "", plain_config(plain_state)
        p_dass = PlatformProcess(dass_state, name="bench-dass", extra_config=dass_config, accounts=containers)
        procs.append(p_dass)
        print(f"  dass platform ready in {p_dass.ready_after:.2f}s (log: {p_dass.log_path})", flush=True)
        p_plain = PlatformProcess(plain_state, extra_config=plain_extra, name="bench-plain")
        procs.append(p_plain)
        print(f"  plain platform ready in {p_plain.ready_after:.2f}s (log: {p_plain.log_path})",
              flush=True)

        a = Runner("dass", p_dass, DASS_OPTIONS)
        b = Runner("plain", p_plain, PLAIN_OPTIONS)
        for r in (a, b):
            r.p.token_for(USER)  # the user exists before anything is timed
            w = r.measure(warmup=True)
            print(f"  warm-up {r.label:<5} {w:.3f}s (untimed)", flush=True)
        for i in range(args.repeats):
            for r in (a, b):
                t = r.measure()
                print(f"  run {i + 1}/{args.repeats} {r.label:<5} {t:.3f}s", flush=True)

        sa, sb = a.summary(), b.summary()
        ratio = sa["median_s"] / sb["median_s"]
        ratio_min = sa["min_s"] / sb["min_s"]
        serving_a, serving_b = sa["phases_median_s"]["to_serving"], sb["phases_median_s"]["to_serving"]
        ratio_serving = serving_a / serving_b if serving_a and serving_b else None
        met = ratio <= TARGET_RATIO
        labels = (("dass.hub.container.DassContainerSpawner", "podman run (PlainPodmanSpawner)") if containers
                  else ("dass.hub.spawner.DassLocalSpawner", "jupyterhub.spawner.SimpleLocalProcessSpawner"))
        result = {
            "backend": args.backend,
            "repeats": args.repeats,
            "hub_start_s": {"dass": round(p_dass.ready_after, 4), "plain": round(p_plain.ready_after, 4)},
            "spawn_to_ready": {
                "dass": {"spawner": labels[0], "options": DASS_OPTIONS, **sa},
                "plain": {"spawner": labels[1], "options": PLAIN_OPTIONS, **sb},
            },
            "ratio_dass_over_plain": round(ratio, 4),
            "ratio_of_minimums": round(ratio_min, 4),
            "ratio_to_serving": None if ratio_serving is None else round(ratio_serving, 4),
            "target_ratio_max": TARGET_RATIO,
            "target_met": met,
        }

        print()
        print("Hub start (dass up -> hub API and dass service answer)")
        print(table(
            [["dass platform", f"{p_dass.ready_after:.3f}"],
             ["plain-spawner platform", f"{p_plain.ready_after:.3f}"]],
            ["platform", "seconds"],
        ))
        print()
        print(f"Spawn to ready, user {USER}, {args.repeats} runs each, interleaved (seconds)")
        rows = []
        for label, s in ((f"dass ({labels[0].rsplit('.', 1)[-1]}, sem/small, 2 datasets)", sa),
                         (f"plain ({labels[1].rsplit('.', 1)[-1]})", sb)):
            hub = s["hub_reported_median_s"]
            rows.append([label, f"{s['median_s']:.3f}", f"{s['min_s']:.3f}", f"{s['max_s']:.3f}",
                         "-" if hub is None else f"{hub:.3f}"])
        print(table(rows, ["spawner", "median", "min", "max", "hub log median"]))
        print()
        print("Where the time goes: median seconds per phase, from the hub log's timestamps")
        rows = [[name, "-" if sa["phases_median_s"][name] is None else f"{sa['phases_median_s'][name]:.3f}",
                 "-" if sb["phases_median_s"][name] is None else f"{sb['phases_median_s'][name]:.3f}", what]
                for name, (_, _, what) in PHASES.items()]
        print(table(rows, ["phase", "dass", "plain", "what"]))
        print()
        verdict = "met" if met else "NOT met"
        print(f"Ratio dass/plain of the medians: {ratio:.3f}   target <= {TARGET_RATIO:.2f}: {verdict}")
        extra = "" if ratio_serving is None else f"; of request->serving, without the hub's polling: {ratio_serving:.3f}"
        print(f"(for information: ratio of the minimums {ratio_min:.3f}{extra})")

        write_results(RESULTS.with_name("spawn-container.json") if containers else RESULTS, result)
        print(f"(total {time.perf_counter() - started:.0f}s)")
        return 0
    finally:
        for proc in reversed(procs):
            try:
                proc.stop()
            except Exception as e:  # report, keep stopping the others
                print(f"warning: stopping {proc.name}: {e!r}", file=sys.stderr)
        if args.backend == "container":
            from tests.support import remove_test_accounts

            remove_test_accounts()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
