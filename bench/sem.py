"""SEM classification benchmark: the ``api/classify`` endpoint against the raw model.

Run it from the repository root (``make bench`` may call it too)::

    .venv/bin/python bench/sem.py [--images N] [--repeats R] [--threads T] [--size HxW]
    .venv/bin/python bench/sem.py --architectures mobilenet_v3_small,resnet18  # a quicker run

It starts one real dass service in this process (:func:`tests.service.service_support.start_service`:
the real handlers and JupyterHub's ``HubOAuth`` against the small real hub of the service
tests, a SQLite catalogue and a ``file://`` repository in a temporary folder) and registers a
seeded, untrained checkpoint per architecture (every registered architecture of
:data:`dass.sem.models.ARCHITECTURES` at its default input size, or those of
``--architectures``) in the repository's model registry, and the demo model that ``make up``
registers (``demo-synthetic``, :mod:`dass.sem.demo`: resnet18 at 64 px trained on SYNTHETIC
images, taken from its per-machine cache or trained first). The images are N SYNTHETIC SEM-like
PNGs (:func:`dass.sem.synthetic.generate`, default 32 of 384x512, data bar included), or
uncompressed TIFFs with ``--format tiff``. Then, per architecture and device (CPU, and the GPU
when torch sees one), it prints, measured in this run:

1. **forward pass by acceleration** (:func:`dass.sem.inference.accelerate`): ms per image of a
   batch of 32 and of one image for ``eager``, ``channels_last``, ``freeze`` (and ``compile``
   with ``--compile``), at T threads and (CPU) at one thread, interleaved, so the mode
   ``auto`` picks can be checked on the machine;
2. **throughput**: images/s of one ``POST api/classify`` holding all N images (images in,
   categories out: a folder upload, stored as a new dataset, indexed, decoded, data bar
   cropped, resized, classified and recorded, and the answer parsed), sent and timed by a
   client in its own process (``requests``, as a user's script; in the service's process it
   would share the service's GIL, which no real client does), against the **raw
   model**: the plain eager module as a user of torch runs it, on the already-preprocessed
   inputs of the same images (made once, untimed, by the endpoint's own preprocessing), in
   batches of 32 (the service's batch size) under ``torch.inference_mode``, top category per
   image -- at the faster of T threads and one thread, because under load from other
   processes one thread can be the faster and the reference must not be a slowed-down one.
   The ratio endpoint/raw of the medians is compared with the target **>= 0.8**. Also shown:
   the same forward through the module the endpoint runs (its acceleration), so that
   endpoint/served-forward is what the service costs beyond the network (decoding a PNG and
   preprocessing take about as long as mobilenet_v3_small's forward pass, so this stays well
   below 1 for the smallest networks on a 2-core machine); and
   :meth:`dass.sem.classify.Classifier.classify` alone on the file bytes. One untimed warm-up
   each, then A B A B ..., R times each;
3. **latency of one image**: the median wall time of ``POST api/classify`` with one image,
   against the raw model on that image's input, and against the goal **< 50 ms** on CPU for
   a mobilenet-class model (``mobilenet_v3_small``, ``mobilenet_v3_large``); the original
   NFFA service took "a few seconds per image".

The service and the raw model run in this process with ``torch.set_num_threads(T)`` (default:
all cores) and the OpenMP wait policy the service sets (``--omp-wait-policy``, default
``passive`` like ``c.SemClassifyService.openmp_wait_policy``; applied before torch is
imported); the service runs a request on T workers, each at one intra-op thread
(``c.SemClassifyService.threads``). Every
row shows the 1-minute load average before and after its rounds: on a shared machine the
seconds are noisy, the interleaved ratios less so. The figures also go to
``bench/results/sem.json``. A missed target is reported, never an error: the exit status is 0
whenever the measurement itself worked.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from common import table, write_results  # noqa: E402 - bench/ is sys.path[0] when run as a script

from dass.sem.demo import DEMO_MODEL_NAME as DEMO  # noqa: E402 - the model `make up` registers (torch-free)

RESULTS = ROOT / "bench" / "results" / "sem.json"
TARGET_RATIO = 0.8
SINGLE_GOAL_MS = 50.0
MOBILENET_CLASS = ("mobilenet_v3_small", "mobilenet_v3_large")
USER_TOKEN = "alice-token"
PROPOSAL = "p-2026-001"
PLAIN_BATCH = 32
ORIGINAL_SECONDS_PER_IMAGE = 2.0  # "within a few seconds per image" (the NFFA service, issue 4)


#: File formats the images can be sent in (``--format``): PIL's name and the file suffix.
FORMATS = {"png": ("PNG", ".png"), "tiff": ("TIFF", ".tif")}


def synthetic_images(n: int, size: tuple[int, int], fmt: str = "png") -> list[bytes]:
    """N SYNTHETIC SEM-like images as PNG or (uncompressed) TIFF files, cycling through the ten categories."""
    from PIL import Image

    from dass.sem.categories import CATEGORY_IDS
    from dass.sem.synthetic import generate

    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(generate(CATEGORY_IDS[i % len(CATEGORY_IDS)], size=size, seed=i)).save(
            buf, format=FORMATS[fmt][0])
        out.append(buf.getvalue())
    return out


def write_checkpoint(folder: Path, architecture: str) -> Path:
    """A seeded, untrained checkpoint of ``architecture`` at its default input size."""
    import torch

    from dass.sem.categories import CATEGORY_IDS
    from dass.sem.checkpoint import ModelInfo, save_checkpoint
    from dass.sem.models import build_model, default_input_size

    torch.manual_seed(0)
    model = build_model(architecture, len(CATEGORY_IDS)).eval()
    info = ModelInfo(
        name=f"bench-{architecture.replace('_', '-')}",
        architecture=architecture,
        classes=list(CATEGORY_IDS),
        input_size=default_input_size(architecture),
        trained_on={"url": "synthetic://untrained", "n_images": 0, "synthetic": True},
        notes="SYNTHETIC: untrained benchmark model",
    )
    path = folder / f"{info.name}.pt"
    save_checkpoint(str(path), model, info)
    return path


def demo_checkpoint() -> Path:
    """The cached checkpoint of the demo model (:mod:`dass.sem.demo`), trained first if need be."""
    from tqdm import tqdm

    from dass.sem.demo import cached_demo_checkpoint

    bar = tqdm(desc="training the demo model (first time only)", unit="step", leave=False)

    def progress(done: int, total: int, message: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(message[:60])
        bar.refresh()

    try:
        return cached_demo_checkpoint(progress=progress)
    finally:
        bar.close()


class RawModel:
    """The raw model, as a user of torch runs it: the module on already-preprocessed tensors.

    ``inputs`` are the model inputs of the N images, ``(N, 1, S, S)`` float32, made once,
    untimed, by the very preprocessing the endpoint uses (:meth:`Classifier.prepare`: decode,
    data-bar crop, resize); :meth:`run` puts them through ``module`` in batches of 32 (the
    service's batch size) under ``torch.inference_mode`` and takes the top category of each:
    tensors in, categories out, nothing else. ``threads``: torch's intra-op threads for it.
    """

    def __init__(self, module, inputs, device: str, threads: int) -> None:
        self.module = module
        self.inputs = inputs
        self.device = device
        self.threads = threads

    def run(self, start: int = 0, stop: int | None = None) -> list[int]:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            x_all = self.inputs[start:stop]
            out: list[int] = []
            with torch.inference_mode():
                for start in range(0, len(x_all), PLAIN_BATCH):
                    x = x_all[start:start + PLAIN_BATCH].to(self.device)
                    out += torch.softmax(self.module(x), dim=1).argmax(dim=1).tolist()
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            return out
        finally:
            torch.set_num_threads(before)


def forward_modes(checkpoint: Path, device: str, compile_too: bool, repeats: int) -> dict:
    """ms per image of the forward pass alone, batch of 32 and single image, per acceleration,
    at torch's thread count and (CPU) at one thread."""
    import torch

    from dass.sem.checkpoint import load_checkpoint
    from dass.sem.inference import accelerate

    model, info, _ = load_checkpoint(str(checkpoint), device=device)
    s = info.input_size
    x32 = torch.rand(PLAIN_BATCH, 1, s, s).to(device).contiguous(memory_format=torch.channels_last)
    x1 = x32[:1].contiguous(memory_format=torch.channels_last)
    threads = torch.get_num_threads()
    choices = [threads] + ([1] if device == "cpu" and threads > 1 else [])
    out = {}
    for mode in ("eager", "channels_last", "freeze") + (("compile",) if compile_too else ()):
        runner, used = accelerate(model, input_size=s, device=device, mode=mode)
        if used != mode:
            out[mode] = {"fell_back_to": used}
            continue
        with torch.inference_mode():
            runner(x32), runner(x1)  # warm-up (and compilation)
            batch: dict[int, list[float]] = {t: [] for t in choices}
            single: dict[int, list[float]] = {t: [] for t in choices}
            for _ in range(max(1, repeats)):
                for t in choices:  # interleaved
                    torch.set_num_threads(t)
                    batch[t].append(timed(lambda: (runner(x32), device.startswith("cuda") and torch.cuda.synchronize())))
                    single[t].append(timed(lambda: (runner(x1), device.startswith("cuda") and torch.cuda.synchronize())))
            torch.set_num_threads(threads)
        out[mode] = {str(t): {"batch_ms_per_image": 1000 * statistics.median(batch[t]) / PLAIN_BATCH,
                              "single_ms": 1000 * statistics.median(single[t])} for t in choices}
    return out


def post(session: requests.Session, url: str, images: list[tuple[str, bytes]]) -> dict:
    """``POST api/classify`` with `images` (file name, bytes) as alice; the parsed answer (every
    image classified)."""
    files = [("files", (name, data, "application/octet-stream")) for name, data in images]
    r = session.post(url + "api/classify", headers={"Authorization": f"token {USER_TOKEN}"},
                     files=files, data={"proposal": PROPOSAL}, timeout=600)
    if r.status_code != 200:
        raise RuntimeError(f"POST api/classify answered {r.status_code}: {r.text[:500]}")
    body = r.json()
    if body["classified"] != len(images):
        raise RuntimeError(f"only {body['classified']} of {len(images)} images were classified: {body['results'][:2]}")
    return body


def client_main(url: str, folder: str) -> int:
    """The endpoint's client, in its own process (``--client URL FOLDER``): a user's client
    never runs in the service's process, and in it, it would share the service's GIL. Reads
    ``START STOP`` lines on stdin, posts those images of `folder` (sorted) in one request and
    answers each with a JSON line: the request's wall seconds, or the error."""
    import json

    images = [(p.name, p.read_bytes()) for p in sorted(Path(folder).iterdir())]
    session = requests.Session()
    for line in sys.stdin:
        start, stop = (int(v) for v in line.split())
        t = time.perf_counter()
        try:
            post(session, url, images[start:stop])
            answer = {"seconds": time.perf_counter() - t}
        except Exception as exc:  # reported by the bench, which stops
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer), flush=True)
    return 0


class Client:
    """:func:`client_main` in a subprocess; :meth:`post` times one request there."""

    def __init__(self, url: str, images: list[bytes], folder: Path, suffix: str = ".png") -> None:
        import subprocess

        folder.mkdir(parents=True, exist_ok=True)
        for i, data in enumerate(images):
            (folder / f"img{i:04d}{suffix}").write_bytes(data)
        self.proc = subprocess.Popen([sys.executable, __file__, "--client", url, str(folder)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=ROOT)

    def post(self, start: int, stop: int) -> float:
        """Seconds of ``POST api/classify`` with images ``start:stop``, measured by the client."""
        import json

        self.proc.stdin.write(f"{start} {stop}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the bench's client process ended (exit status {self.proc.wait()})")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer["seconds"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def measure(service, client: Client, registry, checkpoint: Path, name: str, device: str, images: list[bytes],
            repeats: int, threads: int, progress=print) -> dict:
    import os

    import numpy as np
    import torch

    from dass.sem.classify import Classifier

    load_before = os.getloadavg()
    sem = service.app.web_app.settings["sem_service"]  # the SEM stack's part of the service (dass.sem.web)
    sem.device = device
    sem.unload()  # the next request loads the model on the chosen device
    registry.set_default(name)
    client.post(0, 2)  # warm-up: loads (and accelerates) the model in the service
    served = sem.classifier_sync()
    # the model inputs, made once and untimed by the endpoint's own preprocessing
    inputs = torch.from_numpy(np.stack([served.prepare(data) for data in images]))[:, None]
    # torch's default threads, and one: under load from other processes one thread can be the
    # faster (OpenMP threads wait for each other at every layer); the faster is the reference
    choices = sorted({threads, 1}) if device == "cpu" else [threads]
    raw = {t: RawModel(served.model, inputs, device, t) for t in choices}  # eager, as a torch user runs it
    fwd = {t: RawModel(served.runner, inputs, device, t) for t in choices}  # the module the endpoint runs
    direct = Classifier.load(str(checkpoint), device=device, accelerate=sem.accelerate)
    for r in (*raw.values(), *fwd.values()):
        r.run()
    direct.classify(images[:2])
    endpoint_s, direct_s, single_s = [], [], []
    raw_s: dict[int, list[float]] = {t: [] for t in choices}
    fwd_s: dict[int, list[float]] = {t: [] for t in choices}
    raw_single_s: dict[int, list[float]] = {t: [] for t in choices}
    for i in range(repeats):
        k = i % len(images)
        endpoint_s.append(client.post(0, len(images)))
        for t in choices:
            raw_s[t].append(timed(raw[t].run))
            fwd_s[t].append(timed(fwd[t].run))
        direct_s.append(timed(direct.classify, images))
        single_s.append(client.post(k, k + 1))
        for t in choices:
            raw_single_s[t].append(timed(raw[t].run, k, k + 1))
        progress(f"  {name} on {device} ({served.acceleration}): round {i + 1}/{repeats}: endpoint "
                 f"{endpoint_s[-1]:.2f} s, raw model " + ", ".join(f"{raw_s[t][-1]:.2f} s ({t} thr)" for t in choices)
                 + ", served module " + ", ".join(f"{fwd_s[t][-1]:.2f} s ({t} thr)" for t in choices)
                 + f", Classifier.classify {direct_s[-1]:.2f} s, one image {1000 * single_s[-1]:.0f} ms")
    n = len(images)
    raw_threads = min(choices, key=lambda t: statistics.median(raw_s[t]))
    fwd_threads = min(choices, key=lambda t: statistics.median(fwd_s[t]))
    single_threads = min(choices, key=lambda t: statistics.median(raw_single_s[t]))
    endpoint_ips = n / statistics.median(endpoint_s)
    raw_ips = n / statistics.median(raw_s[raw_threads])
    fwd_ips = n / statistics.median(fwd_s[fwd_threads])
    single_ms = 1000 * statistics.median(single_s)
    architecture = served.info.architecture
    mobile = device == "cpu" and architecture in MOBILENET_CLASS
    return {
        "architecture": architecture,
        "device": device,
        "acceleration": served.acceleration,
        "input_size": served.info.input_size,
        "images": n,
        "endpoint_images_per_s": endpoint_ips,
        "raw_images_per_s": raw_ips,
        "raw_threads": raw_threads,
        "served_forward_images_per_s": fwd_ips,
        "served_forward_threads": fwd_threads,
        "classify_images_per_s": n / statistics.median(direct_s),
        "ratio": endpoint_ips / raw_ips,
        "target_ratio": TARGET_RATIO,
        "met": endpoint_ips / raw_ips >= TARGET_RATIO,
        "overhead_ratio": endpoint_ips / fwd_ips,
        "single_upload_ms": single_ms,
        "single_goal_ms": SINGLE_GOAL_MS if mobile else None,
        "single_met": (single_ms < SINGLE_GOAL_MS) if mobile else None,
        "raw_single_ms": 1000 * statistics.median(raw_single_s[single_threads]),
        "endpoint_seconds": endpoint_s,
        "raw_seconds": {str(t): v for t, v in raw_s.items()},
        "served_forward_seconds": {str(t): v for t, v in fwd_s.items()},
        "classify_seconds": direct_s,
        "single_upload_seconds": single_s,
        "raw_single_seconds": {str(t): v for t, v in raw_single_s.items()},
        "load_average": [load_before[0], os.getloadavg()[0]],
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--client"]:  # the endpoint's client process (Client)
        return client_main(*argv[1:3])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32, help="images per throughput request (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per side (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--size", default="384x512", help="image height x width (default 384x512)")
    parser.add_argument("--format", default="png", choices=sorted(FORMATS),
                        help="file format of the images sent (default png; SEMs write uncompressed TIFF, "
                             "which decodes several times faster)")
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU even when there is one")
    parser.add_argument("--architectures", default="",
                        help=f"comma-separated architectures, {DEMO!r} for the demo model that `make up` "
                             "registers (default: every registered architecture and the demo model)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile in the forward table")
    parser.add_argument("--omp-wait-policy", default="passive", choices=["passive", "active", ""],
                        help="OpenMP wait policy of this process, both sides (default: the service's "
                             "default, c.SemClassifyService.openmp_wait_policy)")
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))

    from dass.sem.inference import set_openmp_wait_policy

    set_openmp_wait_policy(args.omp_wait_policy)  # before torch is imported, as the service does
    import os

    import torch
    from tqdm import tqdm

    from dass.data.storage import Storage
    from dass.sem.models import ARCHITECTURES
    from dass.sem.registry import ModelRegistry
    from tests.service.service_support import FakeHub, LoopThread, make_repository, start_service

    architectures = [a.strip() for a in args.architectures.split(",") if a.strip()] or [*ARCHITECTURES, DEMO]
    unknown = sorted(set(architectures) - {*ARCHITECTURES, DEMO})
    if unknown:
        parser.error(f"unknown architecture(s) {', '.join(unknown)}; choose from {', '.join(ARCHITECTURES)} "
                     f"or {DEMO}")
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    print(f"SEM benchmark: {args.images} SYNTHETIC {h}x{w} {args.format.upper()}s, {args.repeats} rounds, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, devices {', '.join(devices)}, "
          f"architectures {', '.join(architectures)}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(default)')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    images = synthetic_images(args.images, (h, w), args.format)
    loop = LoopThread()
    hub = FakeHub()
    loop.run(hub.start())
    rows, fwd_rows, results = [], [], []
    with tempfile.TemporaryDirectory(prefix="dass-bench-sem-") as tmp:
        tmp_path = Path(tmp)
        urls = make_repository(tmp_path / "repo")
        (tmp_path / "service").mkdir()
        service = start_service(loop, tmp_path / "service", hub.api_url, **urls,
                                extra_config="c.SemClassifyService.max_files = 1000\n"
                                             "c.DassService.log_level = 'WARN'")
        client = Client(service.url, images, tmp_path / "images", FORMATS[args.format][1])
        try:
            registry = ModelRegistry(Storage(url=urls["repo_url"]))
            work = [(a, d) for a in architectures for d in devices]
            for architecture, device in tqdm(work, desc="models", unit="model"):
                if architecture == DEMO:
                    checkpoint, name = demo_checkpoint(), DEMO
                else:
                    checkpoint = write_checkpoint(tmp_path, architecture)
                    name = f"bench-{architecture.replace('_', '-')}"
                if name not in {m["name"] for m in registry.list()}:
                    registry.register(str(checkpoint), name)
                modes = forward_modes(checkpoint, device, args.compile, args.repeats)
                for mode, f in modes.items():
                    if "fell_back_to" in f:
                        fwd_rows.append([architecture, device, mode, "-", "-", f"fell back to {f['fell_back_to']}"])
                        continue
                    for t, g in f.items():
                        fwd_rows.append([architecture, device, mode, t, f"{g['batch_ms_per_image']:.1f}",
                                         f"{g['single_ms']:.1f}"])
                r = measure(service, client, registry, checkpoint, name, device, images, args.repeats,
                            torch.get_num_threads(), progress=tqdm.write)
                r["forward_ms"] = modes
                results.append(r)
                goal = ("-" if r["single_met"] is None else ("yes" if r["single_met"] else "NO"))
                label = f"{DEMO} ({r['architecture']} @ {r['input_size']} px)" if architecture == DEMO else architecture
                rows.append([label, device, r["acceleration"],
                             f"{r['raw_images_per_s']:.1f} ({r['raw_threads']})",
                             f"{r['served_forward_images_per_s']:.1f} ({r['served_forward_threads']})",
                             f"{r['classify_images_per_s']:.1f}", f"{r['endpoint_images_per_s']:.1f}",
                             f"{r['ratio']:.2f}", "yes" if r["met"] else "NO", f"{r['overhead_ratio']:.2f}",
                             f"{r['raw_single_ms']:.0f}", f"{r['single_upload_ms']:.0f}", goal,
                             "%.1f-%.1f" % tuple(r["load_average"])])
        finally:
            client.close()
            service.stop()
            loop.run(hub.stop())
            loop.close()
    print()
    print(table(fwd_rows, ["model", "device", "acceleration", "threads", "batch-32 ms/img", "1 image ms"]))
    print()
    print(table(rows, ["model", "device", "acceleration", "raw img/s (thr)", "served fwd img/s (thr)",
                       "classify() img/s", "endpoint img/s", f"endpoint/raw (>= {TARGET_RATIO})", "met",
                       "endpoint/served fwd", "raw 1 img ms", "upload 1 img ms", f"< {SINGLE_GOAL_MS:.0f} ms",
                       "load avg"]))
    print(f"\nraw: the plain eager model, as a user of torch runs it, on the already-preprocessed inputs "
          f"(batches of {PLAIN_BATCH}, inference_mode, top category), at the faster of "
          f"{torch.get_num_threads()} and 1 torch thread(s) (thr); served fwd: the same through the module the "
          f"endpoint runs (its acceleration), so endpoint/served fwd is what the service adds beyond the network "
          f"(decoding, data-bar crop, resize, upload, storing, JSON). classify(): "
          f"dass.sem.classify.Classifier.classify on the file bytes in this process. endpoint: POST api/classify "
          f"with the {args.format.upper()}s (also stores, indexes and records). One image: POST api/classify "
          f"with one image, "
          f"against the raw model on that image; the goal < {SINGLE_GOAL_MS:.0f} ms applies on CPU to "
          f"mobilenet-class models; the original service took about {ORIGINAL_SECONDS_PER_IMAGE:.0f} s per image. "
          f"load avg: the 1-minute load average before and after the model's rounds.")
    write_results(
        RESULTS, {"images": args.images, "size": [h, w], "format": args.format, "repeats": args.repeats,
                  "results": results},
        torch=torch.__version__, threads=torch.get_num_threads(),
        gpu=torch.cuda.get_device_name(0) if "cuda" in devices else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
