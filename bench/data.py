"""Read throughput through ``dass://`` (the service's data gateway) against direct fsspec.

One run, on the same storage, interleaved (direct, dass, direct, dass … after one untimed
warm-up of each):

1. **one large file** read whole in blocks: ``fs.open(path).read()`` with the same block size
   on both sides; the figure is the throughput ratio dass/direct (target ≥ 0.8; on S3 with
   ``--redirect``, a presigned-URL redirect per block, ≥ 0.95).
2. **many small files** read one by one (``cat_file``): the figure is the extra time per file,
   ``(dass - direct) / files`` in milliseconds (target ≤ 5 ms).

The dass service runs as its own process (``python -m dass.service``, as JupyterHub starts it)
against the small real hub of the service tests (``tests.service.service_support.FakeHub``:
the hub API calls ``HubOAuth`` makes, on loopback); it checks every request with the
catalogue and writes its audit row, as in production. Storage is a ``file://`` folder -- read,
as sessions and jobs on the service's machine read it, through the same-machine file handoff
(:mod:`dass.data.localfiles`: the service checks the token and hands over a read-only
descriptor), or with ``--http`` over HTTP -- or with ``--s3`` a real S3 endpoint (moto on
loopback). Sizes are small by default so that a run takes
a minute; the issue's figures are ``--large-mb 500 --files 1000``.

Targets are reported, never asserted; figures also go to ``bench/results/data.json``.
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

RESULTS = ROOT / "bench" / "results" / "data.json"
PROPOSAL = "p-bench"
TOKEN = "bench-token"


def write_repository(root: Path, large_mb: int, files: int, small_kb: int) -> None:
    from tests.service.service_support import dataset_json

    for name, title in (("large", "one large file"), ("small", "many small files")):
        folder = root / PROPOSAL / name
        folder.mkdir(parents=True)
        (folder / "dataset.json").write_text(json.dumps(dataset_json(f"bench: {title}")))
    chunk = os.urandom(1024 * 1024)
    with open(root / PROPOSAL / "large" / "large.bin", "wb") as f:
        for _ in range(large_mb):
            f.write(chunk)
    small = os.urandom(small_kb * 1024)
    for i in range(files):
        (root / PROPOSAL / "small" / f"f{i:05d}.bin").write_bytes(small)


def start_service(tmp: Path, api_url: str, repo_url: str, options: dict, db_url: str, redirect: bool):
    from tests.service.service_support import free_port, service_env
    from tests.support import wait_for

    import requests

    port = free_port()
    config = tmp / "dass_config.py"
    config.write_text("\n".join([
        f"c.Storage.url = {repo_url!r}",
        f"c.Storage.options = {options!r}",
        f"c.Catalog.db_url = {db_url!r}",
        f"c.Storage.lock_dir = {str(tmp / 'locks')!r}",
        f"c.JobManager.jobs_dir = {str(tmp / 'jobs')!r}",
        f"c.DataGateway.s3_redirect = {bool(redirect)!r}",
        "c.StackRegistry.stacks = {}",
    ]) + "\n")
    env = dict(os.environ, **service_env(api_url))
    env.update(JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}", PYTHONPATH=str(ROOT),
               DASS_STATE_DIR=str(tmp / "state"))
    env.pop("DASS_CONFIG", None)
    log = open(tmp / "service.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "dass.service", f"--config={config}", "--log-level=WARN"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/services/dass/"

    def up() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"the dass service exited with {proc.returncode}:\n{Path(log.name).read_text()[-3000:]}")
        return requests.get(url + "api/health", timeout=2).ok

    try:
        wait_for(up, 60, "the dass service")
    except BaseException:
        proc.terminate()
        raise
    return proc, url


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large-mb", type=int, default=64, help="size of the large file in MiB (issue: 500)")
    parser.add_argument("--files", type=int, default=200, help="number of small files (issue: 1000)")
    parser.add_argument("--small-kb", type=int, default=4, help="size of each small file in KiB")
    parser.add_argument("--block-mb", type=int, default=8, help="block size of reads on both sides, MiB")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per side (after one warm-up)")
    parser.add_argument("--s3", action="store_true", help="storage on S3 (moto on loopback) instead of file://")
    parser.add_argument("--redirect", action="store_true", help="with --s3: c.DataGateway.s3_redirect = True")
    parser.add_argument("--http", action="store_true",
                        help="file://: read over HTTP, not through the same-machine file handoff")
    args = parser.parse_args(argv)
    if args.redirect and not args.s3:
        parser.error("--redirect needs --s3")

    import fsspec

    from dass.data.catalog import Catalog
    from dass.data.dassfs import DassFileSystem
    from dass.data.storage import Storage
    from tests.service.service_support import FakeHub, LoopThread

    tmp = Path(tempfile.mkdtemp(prefix="dass-bench-data-"))
    local = tmp / "repository"
    print(f"writing {args.large_mb} MiB + {args.files} x {args.small_kb} KiB in {local} …", flush=True)
    write_repository(local, args.large_mb, args.files, args.small_kb)
    moto = None
    if args.s3:
        from tests.support import MotoServer

        moto = MotoServer()
        moto.make_bucket("bench")
        options = dict(moto.options)
        fsspec.filesystem("s3", skip_instance_cache=True, **options).put(str(local) + "/", "bench/repository",
                                                                         recursive=True)
        repo_url, direct_root = "s3://bench/repository", "bench/repository"
        direct = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    else:
        options = {}
        repo_url, direct_root = f"file://{local}", str(local)
        direct = fsspec.filesystem("file")
    db_url = f"sqlite:///{tmp / 'catalog.sqlite'}"
    catalog = Catalog(db_url=db_url)
    report = catalog.scan(Storage(url=repo_url, options=options))
    catalog.dispose()
    assert not report.errors, str(report)

    loop = LoopThread()
    hub = FakeHub()
    hub.users["bencher"] = ([PROPOSAL], False)
    hub.tokens[TOKEN] = "bencher"
    loop.run(hub.start())
    proc = None
    try:
        proc, url = start_service(tmp, hub.api_url, repo_url, options, db_url, args.redirect)
        block = args.block_mb * 1024 * 1024
        from dass.data.localfiles import socket_name

        # file:// on one machine: the file handoff, as sessions and jobs here get it (--http: bytes over HTTP)
        local = "" if (args.s3 or args.http) else socket_name(state=tmp / "state", repository=repo_url)
        gw = DassFileSystem(url=url, token=TOKEN, block_size=block, local_socket=local, skip_instance_cache=True)
        large = f"{PROPOSAL}/large/large.bin"
        smalls = [f"{PROPOSAL}/small/f{i:05d}.bin" for i in range(args.files)]
        size = args.large_mb * 1024 * 1024

        def read_large(fs, path):
            with fs.open(path, "rb", block_size=block, cache_type="none") as f:
                got = 0
                while True:
                    data = f.read(block)
                    if not data:
                        break
                    got += len(data)
            assert got == size, (got, size)

        sides = {
            "large": {"direct": lambda: read_large(direct, f"{direct_root}/{large}"),
                      "dass": lambda: read_large(gw, large)},
            "small": {"direct": lambda: [direct.cat_file(f"{direct_root}/{p}") for p in smalls],
                      "dass": lambda: [gw.cat_file(p) for p in smalls]},
        }
        times: dict[str, dict[str, list[float]]] = {k: {"direct": [], "dass": []} for k in sides}
        for kind, pair in sides.items():
            pair["direct"]()  # warm-up, untimed
            pair["dass"]()
            for _ in range(args.repeats):
                for side in ("direct", "dass"):
                    times[kind][side].append(timed(pair[side]))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(20)
        loop.run(hub.stop())
        loop.close()
        if moto is not None:
            moto.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: {s: statistics.median(v) for s, v in d.items()} for k, d in times.items()}
    mb = size / 1e6
    ratio = med["large"]["direct"] / med["large"]["dass"]
    overhead_ms = 1000 * (med["small"]["dass"] - med["small"]["direct"]) / max(1, args.files)
    target_large = 0.95 if args.redirect else 0.8
    storage = ("s3 (moto)" + (" + redirect" if args.redirect else "") if args.s3
               else "file:// over HTTP" if args.http else "file:// (same-machine file handoff)")
    print()
    print(table([
        [f"{args.large_mb} MiB file", f"{mb / med['large']['direct']:.0f} MB/s", f"{mb / med['large']['dass']:.0f} MB/s",
         f"{ratio:.2f}", f">= {target_large}", "met" if ratio >= target_large else "MISSED"],
        [f"{args.files} x {args.small_kb} KiB", f"{1000 * med['small']['direct'] / args.files:.2f} ms/file",
         f"{1000 * med['small']['dass'] / args.files:.2f} ms/file", f"+{overhead_ms:.2f} ms",
         "<= 5 ms", "met" if overhead_ms <= 5 else "MISSED"],
    ], ["read", "direct", "dass://", "figure", "target", ""]))
    print(f"storage {storage}; medians of {args.repeats} interleaved rounds; block {args.block_mb} MiB")
    write_results(RESULTS, {
        "storage": storage, "large_mb": args.large_mb, "files": args.files, "small_kb": args.small_kb,
        "block_mb": args.block_mb, "repeats": args.repeats, "seconds": times,
        "large_ratio": ratio, "large_target": target_large, "small_overhead_ms": overhead_ms,
        "small_target_ms": 5.0,
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
