"""Bounded memory of uploads (issue 17, item 3): 500 files of the largest size the service
takes, a pixel bomb, a zip that expands to hundreds of megabytes and a zip bomb, sent to a real
``python -m dass.service`` process, grow its peak memory by less than 300 MB each, are answered
with the right JSON, and leave no temporary file behind.

The peak is the kernel's: ``VmHWM`` of ``/proc/<pid>/status``, reset before each request by
writing ``5`` to ``/proc/<pid>/clear_refs`` (Linux); the growth is that peak minus ``VmRSS``
just before the request. The images are SYNTHETIC; the hub is the small real one of
``service_support``; the classifier is the seeded, untrained checkpoint of ``sem_support``.
"""

from __future__ import annotations

import io
import os
import re
import struct
import subprocess
import sys
import time
import zipfile
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import requests

from dass.data.storage import Storage
from tests.sem_support import MODEL, png, sem_png, write_untrained_checkpoint
from tests.service.service_support import PREFIX, REQUEST_TIMEOUT, free_port, make_repository, service_env

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc (VmHWM, clear_refs)"),
]

MiB = 1024 * 1024
#: the limits of the service under test: 500 files of 512 KiB (a 256 MiB request), each at
#: most 100,000 pixels and 2 MB to decode (small images, so that 500 are classified in seconds
#: on two cores; what is measured is that nothing is held for all files at once)
MAX_FILES = 500
MAX_FILE_BYTES = 512 * 1024
MAX_PIXELS = 100_000
MAX_DECODE_BYTES = 2_000_000
MAX_REQUEST_BYTES = 260 * MiB
#: the bound the issue sets on what one request may add to the service's peak memory
BOUND_MB = 300


# -- the images ----------------------------------------------------------------------------------


def png_of_size(array: np.ndarray, size: int) -> bytes:
    """``array`` as a PNG of exactly ``size`` bytes: padded with a private ancillary chunk,
    which readers skip."""
    data = png(array)
    pad = size - len(data) - 12
    assert pad >= 0, f"the PNG is {len(data)} bytes already"
    kind = b"daTa"  # ancillary, private, safe to copy
    chunk = struct.pack(">I", pad) + kind + bytes(pad) + struct.pack(">I", zlib.crc32(kind + bytes(pad)))
    iend = data.rindex(b"IEND") - 4
    out = data[:iend] + chunk + data[iend:]
    assert len(out) == size
    return out


def largest_image() -> bytes:
    """A SYNTHETIC SEM image of 100,000 pixels (400 x 250, 8-bit: 1.8 MB to decode) in a PNG of
    exactly ``MAX_FILE_BYTES``: the largest file of the largest image the service takes."""
    from dass.sem.synthetic import generate

    image = generate("Nanowires", size=(250, 400), seed=5)
    image[:50] = np.random.default_rng(0).integers(0, 256, (50, 400), np.uint8)  # some noise
    assert image.size == MAX_PIXELS
    return png_of_size(image, MAX_FILE_BYTES)


def multipart(files: list[tuple[str, bytes]], boundary: str = "dass-test-boundary") -> tuple[str, Iterator[bytes]]:
    """A multipart body, generated part by part (sent chunked: the client holds one file)."""

    def parts() -> Iterator[bytes]:
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="proposal"\r\n\r\np-2026-001\r\n'.encode()
        for name, data in files:
            yield (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
                   "Content-Type: application/octet-stream\r\n\r\n").encode()
            yield data
            yield b"\r\n"
        yield f"--{boundary}--\r\n".encode()

    return f"multipart/form-data; boundary={boundary}", parts()


def zip_of(members: Iterator[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def zeros_zip(members: int, member_bytes: int) -> bytes:
    """A zip bomb: ``members`` members of ``member_bytes`` zeros each (about 1000:1), written
    a chunk at a time."""
    buf = io.BytesIO()
    chunk = bytes(MiB)
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for i in range(members):
            with z.open(f"zeros-{i}.tif", "w", force_zip64=True) as fh:
                for _ in range(member_bytes // MiB):
                    fh.write(chunk)
    return buf.getvalue()


# -- the service process ---------------------------------------------------------------------------


class ServiceProcess:
    """``python -m dass.service`` on a free port, with the limits above."""

    def __init__(self, tmp: Path, hub_api_url: str) -> None:
        urls = make_repository(tmp / "data")
        from dass.sem.registry import ModelRegistry

        ModelRegistry(Storage(url=urls["repo_url"])).register(
            str(write_untrained_checkpoint(tmp / "model.pt")), MODEL, default=True)
        self.repository = Path(urls["repo_url"].removeprefix("file://"))
        self.spool = tmp / "spool"
        config = tmp / "dass_config.py"
        config.write_text("\n".join([
            f"c.Storage.url = {urls['repo_url']!r}",
            f"c.Catalog.db_url = {urls['db_url']!r}",
            f"c.Storage.lock_dir = {str(tmp / 'locks')!r}",
            f"c.JobManager.jobs_dir = {str(tmp / 'jobs')!r}",
            f"c.DassService.spool_dir = {str(self.spool)!r}",
            f"c.SemClassifyService.max_files = {MAX_FILES}",
            f"c.SemClassifyService.max_file_bytes = {MAX_FILE_BYTES}",
            f"c.SemClassifyService.max_pixels = {MAX_PIXELS}",
            f"c.SemClassifyService.max_decode_bytes = {MAX_DECODE_BYTES}",
            f"c.SemClassifyService.max_request_bytes = {MAX_REQUEST_BYTES}",
            "c.SemClassifyService.device = 'cpu'",
            "c.SemClassifyService.accelerate = 'eager'",
        ]) + "\n")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "DASS_CONFIG"}
        env.update(service_env(hub_api_url), JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
                   DASS_CONFIG=str(config), DASS_STATE_DIR=str(tmp / "state"), PYTHONUNBUFFERED="1")
        self.log_path = tmp / "service.log"
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "dass.service"], env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}{PREFIX}"
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while True:  # until it listens (its start imports the stacks' plug-ins)
            try:
                requests.get(self.url + "api/health", timeout=REQUEST_TIMEOUT)
                break
            except requests.ConnectionError:
                assert self.proc.poll() is None, self.log()
                assert time.monotonic() < deadline, f"the service did not start:\n{self.log()}"
                time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def classify(self, body: bytes | Iterator[bytes], content_type: str) -> requests.Response:
        return requests.post(self.url + "api/classify", data=body, timeout=REQUEST_TIMEOUT,
                             headers={"Authorization": "token alice-token", "Content-Type": content_type})

    def status(self, key: str) -> int:
        """``VmRSS`` or ``VmHWM`` of the service, in MB."""
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(rf"^{key}:\s+(\d+) kB", text, re.M).group(1)) // 1024

    def peak_growth(self, send) -> tuple[requests.Response, int]:
        """The answer of ``send()`` and how much the service's peak memory rose above its
        memory before it (MB)."""
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
        before = self.status("VmRSS")
        response = send()
        return response, self.status("VmHWM") - before

    def spooled_files(self) -> list[str]:
        """Temporary files of the service: in its spool folder, or open (deleted or not)."""
        here = [str(p) for p in self.spool.iterdir()]
        fd_dir = Path(f"/proc/{self.proc.pid}/fd")
        open_ = []
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            if target.startswith(str(self.spool)):
                open_.append(target)
        return here + open_


@pytest.fixture(scope="module")
def service(hub, tmp_path_factory):
    svc = ServiceProcess(tmp_path_factory.mktemp("upload-memory"), hub.api_url)
    try:
        # the model and torch are loaded by a first small upload, before anything is measured
        content_type, body = multipart([(f"warm-{i}.png", sem_png("Tips", i)) for i in range(40)])
        r = svc.classify(body, content_type)
        assert r.status_code == 200 and r.json()["classified"] == 40, r.text
        yield svc
    finally:
        svc.stop()


def assert_json_error(r: requests.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert body["status"] == status
    for word in words:
        assert word in body["message"], body["message"]
    return body["message"]


# -- the tests -------------------------------------------------------------------------------------


def test_500_files_of_the_largest_size_stay_within_the_memory_bound(service):
    image = largest_image()
    content_type, body = multipart([(f"scan-{i:03d}.png", image) for i in range(MAX_FILES)])
    r, growth = service.peak_growth(lambda: service.classify(body, content_type))
    print(f"500 files of {MAX_FILE_BYTES} bytes, {MAX_PIXELS} pixels each: peak RSS growth {growth} MB")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["classified"] == MAX_FILES and answer["failed"] == 0
    stored = service.repository / answer["dataset"]
    assert len([p for p in stored.iterdir() if p.suffix == ".png"]) == MAX_FILES
    assert (stored / answer["results"][0]["path"]).read_bytes() == image
    assert growth < BOUND_MB, f"the service grew by {growth} MB for one request (bound {BOUND_MB} MB)"
    assert service.spooled_files() == []


def test_pixel_bombs_are_refused_from_their_header_one_by_one(service):
    """Small files that decode to more pixels, or more memory, than the limits: a per-file
    error naming the setting; the good file beside them is classified."""
    flat = np.zeros((2000, 2000), np.uint8)  # 4 megapixels, a few kilobytes of PNG
    wide = np.zeros((200, 480), np.uint8)  # under max_pixels, but RGBA: 2.016 MB, over max_decode_bytes
    files = [("flat.png", png(flat)), ("rgba.png", png(np.stack([wide] * 4, -1))), ("ok.png", sem_png("Tips", 1))]
    content_type, body = multipart(files * 20)
    r, growth = service.peak_growth(lambda: service.classify(body, content_type))
    print(f"60 pixel bombs: peak RSS growth {growth} MB")
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results[:3]] == ["error", "error", "ok"]
    assert "max_pixels" in results[0]["reason"] and "too large" in results[0]["reason"]
    assert "max_decode_bytes" in results[1]["reason"] and "to read" in results[1]["reason"]
    assert growth < BOUND_MB
    assert service.spooled_files() == []


def test_a_zip_that_expands_to_hundreds_of_megabytes_is_read_member_by_member(service):
    """500 members of 512 KiB, each 150:1 (under max_zip_ratio): 256 MiB from 2 MB."""
    rng = np.random.default_rng(1)
    members = ((f"m-{i:03d}.dat", rng.bytes(3000) + bytes(MAX_FILE_BYTES - 3000)) for i in range(MAX_FILES))
    archive = zip_of(members)
    assert len(archive) < 3 * MiB
    content_type, body = multipart([("many.zip", archive)])
    r, growth = service.peak_growth(lambda: service.classify(body, content_type))
    print(f"a zip of {len(archive)} bytes expanding to {MAX_FILES * MAX_FILE_BYTES} bytes: peak RSS growth {growth} MB")
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["failed"] == MAX_FILES and answer["dataset"] is None
    assert all("not an image" in x["reason"] for x in answer["results"])
    assert growth < BOUND_MB
    assert service.spooled_files() == []


def test_a_zip_bomb_is_refused_with_413_without_growing(service):
    """300 MiB of zeros in a 300 KB zip: refused by its listing, nothing inflated; a member
    over the ratio in a small archive is refused by name."""
    bomb = zeros_zip(3, 100 * MiB)
    assert len(bomb) < 400_000
    content_type, body = multipart([("bomb.zip", bomb)])
    r, growth = service.peak_growth(lambda: service.classify(body, content_type))
    print(f"a zip bomb of {len(bomb)} bytes expanding to 300 MiB: peak RSS growth {growth} MB")
    assert_json_error(r, 413, "expand", str(MAX_REQUEST_BYTES), "c.SemClassifyService.max_request_bytes",
                      "send fewer images")
    assert growth < BOUND_MB
    small = zip_of([("zeros.tif", bytes(400 * 1024)), ("ok.png", sem_png("Tips", 3))])
    content_type, body = multipart([("small-bomb.zip", small)])
    r = service.classify(body, content_type)
    assert r.status_code == 200, r.text
    by_file = {x["file"]: x for x in r.json()["results"]}
    assert "zip bomb" in by_file["small-bomb.zip/zeros.tif"]["reason"]
    assert "c.SemClassifyService.max_zip_ratio" in by_file["small-bomb.zip/zeros.tif"]["reason"]
    assert by_file["small-bomb.zip/ok.png"]["status"] == "ok"
    assert service.spooled_files() == []


def test_refusals_of_whole_uploads_are_json_and_leave_nothing_behind(service):
    image = largest_image()
    content_type, body = multipart([(f"{i}.png", image) for i in range(MAX_FILES + 1)])
    assert_json_error(service.classify(body, content_type), 413, "too many files", str(MAX_FILES),
                      "c.SemClassifyService.max_files")
    content_type, body = multipart([("empty.zip", zip_of([]))])
    assert_json_error(service.classify(body, content_type), 400, "no images")
    truncated = b"".join(multipart([("a.png", image)])[1])[:-40]
    assert_json_error(service.classify(truncated, "multipart/form-data; boundary=dass-test-boundary"), 400,
                      "multipart")
    assert_json_error(service.classify(b"x", "multipart/form-data"), 400, "boundary")
    assert service.spooled_files() == []
