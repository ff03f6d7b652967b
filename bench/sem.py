"""SEM classification benchmark: the ``api/classify`` endpoint against a plain forward loop.

Run it from the repository root (``make bench`` may call it too)::

    .venv/bin/python bench/sem.py [--images N] [--repeats R] [--threads T] [--size HxW]

It starts one real dass service in this process (:func:`tests.service.service_support.start_service`:
the real handlers and JupyterHub's ``HubOAuth`` against the small real hub of the service
tests, a SQLite catalogue and a ``file://`` repository in a temporary folder) and registers a
seeded, untrained checkpoint per architecture (every registered architecture of
:data:`dass.sem.models.ARCHITECTURES` at its default input size, or those of
``--architectures``) in the repository's model registry. The images are N SYNTHETIC SEM-like
PNGs (:func:`dass.sem.synthetic.generate`, default 32 of 384x512). Then, per architecture and
device (CPU, and the GPU when torch sees one), it prints, measured in this run:

1. **forward pass by acceleration** (:func:`dass.sem.models.accelerate`): ms per image of a
   batch of 32 and of one image for ``eager``, ``channels_last``, ``freeze`` (and ``compile``
   with ``--compile``), so the mode ``auto`` picks can be checked on the machine;
2. **throughput**: images/s of one ``POST api/classify`` holding all N images (a folder
   upload: stored as a new dataset, indexed, decoded, previewed, preprocessed, classified and
   recorded, and the answer parsed), against the **raw model**: a plain loop on the same PNG
   bytes -- PIL decode, grayscale, ``torchvision.transforms.functional.resize`` to the input
   size, batches of 32 in ``torch.inference_mode`` -- through the very module the endpoint
   runs (the service's accelerated model). One untimed warm-up each, then A B A B ..., R times
   each; the medians and the ratio endpoint/raw against the target **>= 0.8**. Also
   :meth:`dass.sem.classify.Classifier.classify` alone on the same bytes, and the raw loop
   through the *eager* module (what a user of plain torchvision gets);
3. **latency of one image**: the median wall time of ``POST api/classify`` with one image,
   against the raw loop on that image, and against the goal **< 50 ms** on CPU for a
   mobilenet-class model (``mobilenet_v3_small``, ``mobilenet_v3_large``); the original NFFA
   service took "a few seconds per image".

Both sides run in this process with ``torch.set_num_threads(T)`` (default: all cores). The
figures also go to ``bench/results/sem.json``. A missed target is reported, never an error:
the exit status is 0 whenever the measurement itself worked.
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

RESULTS = ROOT / "bench" / "results" / "sem.json"
TARGET_RATIO = 0.8
SINGLE_GOAL_MS = 50.0
MOBILENET_CLASS = ("mobilenet_v3_small", "mobilenet_v3_large")
USER_TOKEN = "alice-token"
PROPOSAL = "p-2026-001"
PLAIN_BATCH = 32
ORIGINAL_SECONDS_PER_IMAGE = 2.0  # "within a few seconds per image" (the NFFA service, issue 4)


def synthetic_pngs(n: int, size: tuple[int, int]) -> list[bytes]:
    """N SYNTHETIC SEM-like PNGs, cycling through the ten categories."""
    from PIL import Image

    from dass.sem.categories import CATEGORY_IDS
    from dass.sem.synthetic import generate

    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(generate(CATEGORY_IDS[i % len(CATEGORY_IDS)], size=size, seed=i)).save(buf, format="PNG")
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


class PlainLoop:
    """What a user would write with torchvision alone: decode, resize, batch, forward.

    ``runner`` is the module to call (the service's accelerated one, or the eager model).
    """

    def __init__(self, runner, input_size: int, device: str) -> None:
        self.runner = runner
        self.size = input_size
        self.device = device

    def run(self, images: list[bytes]) -> list[int]:
        import numpy as np
        import torch
        import torchvision.transforms.functional as F
        from PIL import Image

        size = self.size
        out: list[int] = []
        with torch.inference_mode():
            for start in range(0, len(images), PLAIN_BATCH):
                tensors = []
                for data in images[start:start + PLAIN_BATCH]:
                    array = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float32) / 255.0
                    tensors.append(F.resize(torch.from_numpy(array)[None], [size, size], antialias=True))
                x = torch.stack(tensors).to(self.device).contiguous(memory_format=torch.channels_last)
                out += torch.softmax(self.runner(x), dim=1).argmax(dim=1).tolist()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
        return out


def forward_modes(checkpoint: Path, device: str, compile_too: bool, repeats: int) -> dict:
    """ms per image of the forward pass alone, batch of 32 and single image, per acceleration."""
    import torch

    from dass.sem.checkpoint import load_checkpoint
    from dass.sem.models import accelerate

    model, info, _ = load_checkpoint(str(checkpoint), device=device)
    s = info.input_size
    x32 = torch.rand(PLAIN_BATCH, 1, s, s).to(device).contiguous(memory_format=torch.channels_last)
    x1 = x32[:1].contiguous(memory_format=torch.channels_last)
    out = {}
    for mode in ("eager", "channels_last", "freeze") + (("compile",) if compile_too else ()):
        runner, used = accelerate(model, input_size=s, device=device, mode=mode)
        if used != mode:
            out[mode] = {"fell_back_to": used}
            continue
        with torch.inference_mode():
            runner(x32), runner(x1)  # warm-up (and compilation)
            batch, single = [], []
            for _ in range(max(1, repeats)):
                batch.append(timed(lambda: (runner(x32), device.startswith("cuda") and torch.cuda.synchronize())))
                single.append(timed(lambda: (runner(x1), device.startswith("cuda") and torch.cuda.synchronize())))
        out[mode] = {"batch_ms_per_image": 1000 * statistics.median(batch) / PLAIN_BATCH,
                     "single_ms": 1000 * statistics.median(single)}
    return out


def post(service, images: list[bytes]) -> dict:
    files = [("files", (f"img{i:04d}.png", data, "image/png")) for i, data in enumerate(images)]
    r = requests.post(service.url + "api/classify", headers={"Authorization": f"token {USER_TOKEN}"},
                      files=files, data={"proposal": PROPOSAL}, timeout=600)
    if r.status_code != 200:
        raise RuntimeError(f"POST api/classify answered {r.status_code}: {r.text[:500]}")
    body = r.json()
    if body["classified"] != len(images):
        raise RuntimeError(f"only {body['classified']} of {len(images)} images were classified: {body['results'][:2]}")
    return body


def timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def measure(service, registry, checkpoint: Path, name: str, device: str, images: list[bytes], repeats: int,
            progress=print) -> dict:
    sem = service.app.web_app.settings["sem_service"]  # the SEM stack's part of the service (dass.sem.web)
    sem.device = device
    sem.unload()  # the next request loads the model on the chosen device
    registry.set_default(name)
    from dass.sem.classify import Classifier

    post(service, images[:2])  # warm-up: loads (and accelerates) the model in the service
    served = sem.classifier_sync()
    raw = PlainLoop(served.runner, served.info.input_size, device)  # the module the endpoint runs
    eager = PlainLoop(served.model, served.info.input_size, device)
    direct = Classifier.load(str(checkpoint), device=device, accelerate=sem.accelerate)
    raw.run(images[:2])
    eager.run(images[:2])
    direct.classify(images[:2])
    endpoint_s, raw_s, eager_s, direct_s, single_s, raw_single_s = [], [], [], [], [], []
    for i in range(repeats):
        one = images[i % len(images):i % len(images) + 1]
        endpoint_s.append(timed(post, service, images))
        raw_s.append(timed(raw.run, images))
        eager_s.append(timed(eager.run, images))
        direct_s.append(timed(direct.classify, images))
        single_s.append(timed(post, service, one))
        raw_single_s.append(timed(raw.run, one))
        progress(f"  {name} on {device} ({served.acceleration}): round {i + 1}/{repeats}: endpoint "
                 f"{endpoint_s[-1]:.2f} s, raw {raw_s[-1]:.2f} s, eager raw {eager_s[-1]:.2f} s, "
                 f"Classifier.classify {direct_s[-1]:.2f} s, one image {1000 * single_s[-1]:.0f} ms")
    n = len(images)
    endpoint_ips = n / statistics.median(endpoint_s)
    raw_ips = n / statistics.median(raw_s)
    single_ms = 1000 * statistics.median(single_s)
    architecture = served.info.architecture
    return {
        "architecture": architecture,
        "device": device,
        "acceleration": served.acceleration,
        "input_size": served.info.input_size,
        "images": n,
        "endpoint_images_per_s": endpoint_ips,
        "raw_images_per_s": raw_ips,
        "eager_raw_images_per_s": n / statistics.median(eager_s),
        "classify_images_per_s": n / statistics.median(direct_s),
        "ratio": endpoint_ips / raw_ips,
        "target_ratio": TARGET_RATIO,
        "met": endpoint_ips / raw_ips >= TARGET_RATIO,
        "single_upload_ms": single_ms,
        "single_goal_ms": SINGLE_GOAL_MS if device == "cpu" and architecture in MOBILENET_CLASS else None,
        "single_met": (single_ms < SINGLE_GOAL_MS) if device == "cpu" and architecture in MOBILENET_CLASS else None,
        "raw_single_ms": 1000 * statistics.median(raw_single_s),
        "endpoint_seconds": endpoint_s,
        "raw_seconds": raw_s,
        "eager_raw_seconds": eager_s,
        "classify_seconds": direct_s,
        "single_upload_seconds": single_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=32, help="images per throughput request (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per side (default 3)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: all cores)")
    parser.add_argument("--size", default="384x512", help="image height x width (default 384x512)")
    parser.add_argument("--cpu-only", action="store_true", help="skip the GPU even when there is one")
    parser.add_argument("--architectures", default="",
                        help="comma-separated architectures (default: every registered one)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile in the forward table")
    args = parser.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))

    import torch
    from tqdm import tqdm

    from dass.data.storage import Storage
    from dass.sem.models import ARCHITECTURES
    from dass.sem.registry import ModelRegistry
    from tests.service.service_support import FakeHub, LoopThread, make_repository, start_service

    architectures = [a.strip() for a in args.architectures.split(",") if a.strip()] or list(ARCHITECTURES)
    unknown = sorted(set(architectures) - set(ARCHITECTURES))
    if unknown:
        parser.error(f"unknown architecture(s) {', '.join(unknown)}; choose from {', '.join(ARCHITECTURES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.cpu_only else [])
    print(f"SEM benchmark: {args.images} SYNTHETIC {h}x{w} PNGs, {args.repeats} rounds, "
          f"torch {torch.__version__} with {torch.get_num_threads()} threads, devices {', '.join(devices)}, "
          f"architectures {', '.join(architectures)}")
    images = synthetic_pngs(args.images, (h, w))
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
        try:
            registry = ModelRegistry(Storage(url=urls["repo_url"]))
            work = [(a, d) for a in architectures for d in devices]
            for architecture, device in tqdm(work, desc="models", unit="model"):
                checkpoint = write_checkpoint(tmp_path, architecture)
                name = f"bench-{architecture.replace('_', '-')}"
                if name not in {m["name"] for m in registry.list()}:
                    registry.register(str(checkpoint), name)
                modes = forward_modes(checkpoint, device, args.compile, args.repeats)
                for mode, f in modes.items():
                    fwd_rows.append([architecture, device, mode,
                                     f"{f['batch_ms_per_image']:.1f}" if "batch_ms_per_image" in f else "-",
                                     f"{f['single_ms']:.1f}" if "single_ms" in f else f"fell back to {f['fell_back_to']}"])
                r = measure(service, registry, checkpoint, name, device, images, args.repeats, progress=tqdm.write)
                r["forward_ms"] = modes
                results.append(r)
                goal = ("-" if r["single_met"] is None else ("yes" if r["single_met"] else "NO"))
                rows.append([architecture, device, r["acceleration"], f"{r['eager_raw_images_per_s']:.1f}",
                             f"{r['raw_images_per_s']:.1f}", f"{r['classify_images_per_s']:.1f}",
                             f"{r['endpoint_images_per_s']:.1f}", f"{r['ratio']:.2f}",
                             "yes" if r["met"] else "NO", f"{r['raw_single_ms']:.0f}",
                             f"{r['single_upload_ms']:.0f}", goal])
        finally:
            service.stop()
            loop.run(hub.stop())
            loop.close()
    print()
    print(table(fwd_rows, ["model", "device", "acceleration", "batch-32 ms/img", "1 image ms"]))
    print()
    print(table(rows, ["model", "device", "acceleration", "eager raw img/s", "raw img/s", "classify() img/s",
                       "endpoint img/s", f"endpoint/raw (>= {TARGET_RATIO})", "met", "raw 1 img ms",
                       "upload 1 img ms", f"< {SINGLE_GOAL_MS:.0f} ms"]))
    print(f"\nraw: PIL decode + torchvision resize + forward through the module the endpoint runs (eager raw: "
          f"through the plain eager module); classify(): dass.sem.classify.Classifier.classify on the same bytes "
          f"(read_sem, data-bar crop, resize, forward, overlapped); endpoint: POST api/classify (also stores, "
          f"previews, indexes and records). One image: POST api/classify with one image; the goal < "
          f"{SINGLE_GOAL_MS:.0f} ms applies on CPU to mobilenet-class models; the original service took about "
          f"{ORIGINAL_SECONDS_PER_IMAGE:.0f} s per image.")
    write_results(
        RESULTS, {"images": args.images, "size": [h, w], "repeats": args.repeats, "results": results},
        torch=torch.__version__, threads=torch.get_num_threads(),
        gpu=torch.cuda.get_device_name(0) if "cuda" in devices else None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
