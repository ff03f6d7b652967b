"""Tests of the synthetic demo repository (dass.demo); the stacks' notebooks run on it in
``tests/test_service_notebooks.py``."""

from __future__ import annotations

import datetime
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import fsspec
import pytest

h5py = pytest.importorskip("h5py", reason="h5py is needed to write the KMAP and STM demo data")
np = pytest.importorskip("numpy")
pytest.importorskip("PIL", reason="pillow is needed to write the SEM demo images")
tifffile = pytest.importorskip("tifffile", reason="tifffile is needed to write SEM TIFFs")

from dass import demo  # noqa: E402

TODAY = datetime.date(2026, 3, 15)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

EXPECTED_IDS = [
    "p-2026-001/sem-nanowires",
    "p-2026-001/sem-particles",
    "p-2026-001/sem-training-synthetic",
    "p-2026-002/kmap-sige-island",
    "p-2026-002/kmap-embargoed-public",
    "p-2026-002/stm-au111-fast",
    "p-2025-900/sem-reference-public",
]
FAST_ATTRS = [
    "Scanner.X_Points",
    "Scanner.Y_Points",
    "Scanner.X_Frequency",
    "Scanner.Y_Frequency",
    "Scanner.X_Amplitude",
    "Scanner.Y_Amplitude",
    "Scanner.X_Calibration",
    "Scanner.Y_Calibration",
    "Acquisition.X_Phase",
    "Acquisition.Y_Phase",
    "Acquisition.ADC_SamplingRate",
    "Acquisition.NumImages",
    "GapVoltage.Voltage",
    "ExperimentInfo.Comment",
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A demo repository seeded once on the local filesystem: (fs, root, ids written)."""
    root = tmp_path_factory.mktemp("repo").as_posix()
    fs = fsspec.filesystem("file")
    written = demo.seed(fs, root, today=TODAY)
    return fs, root, written


def _meta(root: str, dataset_id: str) -> dict:
    return json.loads((Path(root) / dataset_id / "dataset.json").read_text())


# ---------------------------------------------------------------------------- repository


def test_seed_writes_every_dataset(repo):
    fs, root, written = repo
    assert written == EXPECTED_IDS == demo.dataset_ids()
    for dataset_id in written:
        proposal, name = dataset_id.split("/")
        assert NAME_RE.match(proposal) and NAME_RE.match(name)
        assert fs.exists(f"{root}/{dataset_id}/dataset.json")
    for proposal in ("p-2026-001", "p-2026-002", "p-2025-900"):
        info = json.loads((Path(root) / proposal / "proposal.json").read_text())
        assert set(info) <= {"title", "pi", "description"}
        assert "SYNTHETIC" in info["title"]


@pytest.mark.parametrize("dataset_id", EXPECTED_IDS)
def test_dataset_json_follows_schema_and_says_synthetic(repo, dataset_id):
    _, root, _ = repo
    meta = _meta(root, dataset_id)
    assert meta["schema"] == "dass.dataset/1"
    assert meta["synthetic"] is True
    assert "SYNTHETIC" in meta["title"]
    assert "synthetic" in meta["keywords"]
    assert "not a measurement" in meta["description"]
    assert "generated procedurally" in meta["description"].lower()
    assert meta["creators"] == [{"name": "dass demo generator"}]
    assert meta["dates"] == {"created": TODAY.isoformat()}
    assert meta["licence"] == "CC-BY-4.0"
    assert meta["technique"] in {"SEM", "KMAP", "STM"}
    assert meta["stacks"] == [meta["technique"].lower()]
    assert meta["instrument"].startswith("synthetic")
    assert isinstance(meta["domain"], dict) and meta["domain"]
    assert isinstance(meta["access"]["groups"], list)
    assert isinstance(meta["access"]["public"], bool)


@pytest.mark.parametrize("dataset_id", EXPECTED_IDS)
def test_checksums_match_files(repo, dataset_id):
    _, root, _ = repo
    folder = Path(root) / dataset_id
    meta = _meta(root, dataset_id)
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"dataset.json"}
    assert set(meta["checksums"]) == on_disk
    for rel, checksum in meta["checksums"].items():
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", checksum)
        digest = hashlib.sha256((folder / rel).read_bytes()).hexdigest()
        assert checksum == f"sha256:{digest}", rel


def test_metadata_passes_the_catalogue_parser_and_access_rule(repo):
    metadata = pytest.importorskip("dass.data.metadata")
    access = pytest.importorskip("dass.data.access")
    _, root, _ = repo
    parsed = {}
    for dataset_id in EXPECTED_IDS:
        path = Path(root) / dataset_id / "dataset.json"
        parsed[dataset_id] = metadata.parse_metadata(
            path.read_bytes(), path=str(path), proposal=dataset_id.split("/")[0]
        )
    for proposal in ("p-2026-001", "p-2026-002", "p-2025-900"):
        path = Path(root) / proposal / "proposal.json"
        metadata.parse_proposal(path.read_bytes(), path=str(path))

    def visible(groups, today=TODAY):
        who = access.Identity("someone", frozenset(groups))
        return {i for i, md in parsed.items() if access.can_see(who, md, today)}

    public = "p-2025-900/sem-reference-public"
    embargoed = "p-2026-002/kmap-embargoed-public"
    assert visible([]) == {public}
    assert visible(["p-2026-001"]) == {
        public, "p-2026-001/sem-nanowires", "p-2026-001/sem-particles", "p-2026-001/sem-training-synthetic"
    }
    assert visible(["p-2026-002"]) == {
        public,
        "p-2026-002/kmap-sige-island",
        embargoed,
        "p-2026-002/stm-au111-fast",
    }
    assert visible([], today=datetime.date(2027, 3, 15)) == {public, embargoed}


def test_access_settings_and_embargo_dates(repo):
    _, root, _ = repo
    access = {i: _meta(root, i)["access"] for i in EXPECTED_IDS}
    for dataset_id in ("p-2026-001/sem-nanowires", "p-2026-001/sem-particles"):
        assert access[dataset_id] == {"groups": ["p-2026-001"], "public": False}
    for dataset_id in ("p-2026-002/kmap-sige-island", "p-2026-002/stm-au111-fast"):
        assert access[dataset_id] == {"groups": ["p-2026-002"], "public": False}
    assert access["p-2025-900/sem-reference-public"] == {
        "groups": [],
        "public": True,
        "embargo_until": "2025-03-15",
    }
    assert access["p-2026-002/kmap-embargoed-public"] == {
        "groups": ["p-2026-002"],
        "public": True,
        "embargo_until": "2027-03-15",
    }


def test_embargo_dates_follow_today(tmp_path):
    fs = fsspec.filesystem("memory")
    root = f"/demo-{tmp_path.name}"
    leap = datetime.date(2028, 2, 29)
    demo.seed(fs, root, today=leap)
    public = json.loads(fs.cat(f"{root}/p-2025-900/sem-reference-public/dataset.json"))
    hidden = json.loads(fs.cat(f"{root}/p-2026-002/kmap-embargoed-public/dataset.json"))
    assert public["access"]["embargo_until"] == "2027-02-28"
    assert hidden["access"]["embargo_until"] == "2029-02-28"
    assert public["dates"]["created"] == "2028-02-29"
    fs.rm(root, recursive=True)


def test_seed_is_idempotent(repo, tmp_path):
    fs, root, _ = repo
    before = {p: Path(p).stat().st_mtime_ns for p in fs.find(root)}
    assert demo.seed(fs, root, today=TODAY + datetime.timedelta(days=3)) == []
    after = {p: Path(p).stat().st_mtime_ns for p in fs.find(root)}
    assert before == after
    assert _meta(root, EXPECTED_IDS[0])["dates"]["created"] == TODAY.isoformat()


def test_seed_fills_in_missing_and_overwrites_on_request(tmp_path):
    fs = fsspec.filesystem("file")
    root = tmp_path.as_posix()
    demo.seed(fs, root, today=TODAY)
    # a half-written dataset (no dataset.json) is written again; others are left alone
    fs.rm(f"{root}/p-2026-002/stm-au111-fast/dataset.json")
    fs.pipe_file(f"{root}/p-2026-002/stm-au111-fast/stray.bin", b"x")
    assert demo.seed(fs, root, today=TODAY) == ["p-2026-002/stm-au111-fast"]
    assert not fs.exists(f"{root}/p-2026-002/stm-au111-fast/stray.bin")
    later = TODAY + datetime.timedelta(days=1)
    assert demo.seed(fs, root, today=later, overwrite=True) == EXPECTED_IDS
    assert _meta(root, EXPECTED_IDS[0])["dates"]["created"] == later.isoformat()


def test_generation_is_deterministic():
    for dataset_id in ("p-2026-001/sem-particles", "p-2026-002/stm-au111-fast"):
        a = demo.build_dataset(dataset_id, today=TODAY)
        b = demo.build_dataset(dataset_id, today=TODAY)
        assert a.dataset_json() == b.dataset_json()
    # file bytes do not depend on the date; only dataset.json does
    a = demo.build_dataset("p-2026-002/kmap-sige-island", today=TODAY)
    b = demo.build_dataset("p-2026-002/kmap-sige-island", today=datetime.date(2030, 1, 1))
    assert a.files == b.files


def test_unknown_dataset_id_names_the_choices():
    with pytest.raises(KeyError, match="p-2026-001/sem-nanowires"):
        demo.build_dataset("p-2026-001/nope")


def test_whole_repository_is_small(repo):
    fs, root, _ = repo
    total = sum(fs.size(p) for p in fs.find(root))
    assert total < 3 * 1024 * 1024, total


# ---------------------------------------------------------------------------- file layouts


@pytest.mark.parametrize(
    "dataset_id", ["p-2026-001/sem-nanowires", "p-2026-001/sem-particles",
                   "p-2025-900/sem-reference-public"]
)
def test_sem_images(repo, dataset_id):
    from PIL import Image

    _, root, _ = repo
    folder = Path(root) / dataset_id
    meta = _meta(root, dataset_id)
    names = sorted(meta["checksums"])
    assert 2 <= len(names) <= 4
    assert any(n.endswith(".png") for n in names) and any(n.endswith(".tif") for n in names)
    bar = meta["domain"]["data_bar_height_px"]
    assert bar == demo.SEM_BAR_HEIGHT and 0.08 * 384 <= bar <= 0.1 * 384  # about 9 %, like Zeiss
    for name in names:
        if name.endswith(".tif"):
            with tifffile.TiffFile(folder / name) as tif:
                img = tif.asarray()
                assert "SYNTHETIC" in tif.pages[0].description
        else:
            with Image.open(folder / name) as im:
                assert im.mode == "L"
                assert "SYNTHETIC" in im.info["Description"]
                img = np.asarray(im)
        assert img.shape == (384, 512) and img.dtype == np.uint8
        # the data bar is a dark band with bright text-like blocks, unlike the image above it
        strip = img[-bar + 2 :]
        assert np.median(strip) < 30 and strip.max() > 200
        assert np.median(img[: -bar]) > np.median(strip) + 20
    assert meta["domain"]["pixel_size_nm"] > 0
    assert meta["domain"]["accelerating_voltage_kV"] > 0


@pytest.mark.parametrize(
    "dataset_id, prefix, n_positions",
    [("p-2026-002/kmap-sige-island", "sige_island", 48),
     ("p-2026-002/kmap-embargoed-public", "sige_edge", 16)],
)
def test_kmap_xsocs_layout(repo, dataset_id, prefix, n_positions):
    _, root, _ = repo
    folder = Path(root) / dataset_id
    meta = _meta(root, dataset_id)
    assert meta["technique"] == "KMAP"
    assert meta["domain"]["energy_keV"] == 8.0 and meta["domain"]["hkl"] == [0, 0, 4]
    master = folder / f"{prefix}_master.h5"
    assert sum(p.stat().st_size for p in folder.glob("*.h5")) < 1024 * 1024
    with h5py.File(master, "r") as h5:
        entries = sorted(h5)
        assert entries == ["1.1", "2.1", "3.1"]
        etas = []
        for entry in entries:
            link = h5.get(entry, getlink=True)
            assert isinstance(link, h5py.ExternalLink)
            assert link.filename == f"{prefix}_{entry}.h5"
            e = h5[entry]
            assert e.attrs["NX_class"] == "NXentry"
            data = e["measurement/image/data"]
            assert data.shape == (n_positions, 32, 32) and data.dtype == np.uint16
            assert np.array_equal(e["measurement/imgnr"][()], np.arange(n_positions))
            assert e["measurement/adcX"].shape == (n_positions,)
            assert e["measurement/adcY"].shape == (n_positions,)
            pos = e["instrument/positioners"]
            for motor in ("eta", "phi", "nu", "del", "delta"):
                assert pos[motor].shape == ()
            assert pos["delta"][()] == pos["del"][()]
            etas.append(float(pos["eta"][()]))
            det = e["instrument/detector"]
            assert det["beam_energy"][()] == 8000.0
            for key in ("center_chan_dim0", "center_chan_dim1",
                        "chan_per_deg_dim0", "chan_per_deg_dim1"):
                assert key in det
            scan = e["scan"]
            assert scan["motor_0_steps"][()] * scan["motor_1_steps"][()] == n_positions
            # a Gaussian peak: the brightest pixel of the summed frames is near the centre
            total = data[()].sum(axis=0)
            peak = np.unravel_index(np.argmax(total), total.shape)
            assert abs(peak[0] - 16) <= 4 and abs(peak[1] - 16) <= 4
    assert etas == sorted(etas) and etas == meta["domain"]["eta_deg"]


def test_stm_fast_layout(repo):
    _, root, _ = repo
    folder = Path(root) / "p-2026-002/stm-au111-fast"
    meta = _meta(root, "p-2026-002/stm-au111-fast")
    [name] = meta["checksums"]
    with h5py.File(folder / name, "r") as h5:
        assert list(h5) == ["data"]
        data = h5["data"]
        attrs = dict(data.attrs)
        shape, dtype = data.shape, data.dtype
    for key in FAST_ATTRS:
        assert key in attrs, key
    x, y, n = (int(attrs[k]) for k in ("Scanner.X_Points", "Scanner.Y_Points",
                                       "Acquisition.NumImages"))
    assert (x, y, n) == (64, 64, 4)
    assert len(shape) == 1 and dtype == np.int16
    assert shape[0] == n * 4 * x * y
    assert int(attrs["Acquisition.X_Phase"]) == 0 and int(attrs["Acquisition.Y_Phase"]) == 0
    assert float(attrs["Scanner.X_Calibration"]) == 0.0
    assert "SYNTHETIC" in attrs["ExperimentInfo.Comment"]
    # a line of samples takes 1 / (2 X_Frequency); X samples per line at the ADC rate
    rate = float(attrs["Acquisition.ADC_SamplingRate"])
    assert rate == pytest.approx(2 * x * float(attrs["Scanner.X_Frequency"]))
    assert float(attrs["Scanner.X_Frequency"]) == pytest.approx(
        2 * y * float(attrs["Scanner.Y_Frequency"])
    )
    assert meta["domain"]["x_points"] == x and meta["domain"]["num_images"] == n
    assert meta["domain"]["bias_v"] == float(attrs["GapVoltage.Voltage"])


def test_stm_forward_and_backward_lines_agree():
    """Even rows are forward lines, odd rows backward lines with x reversed (DOMAIN.md)."""
    stream = demo._fast_stream(np.random.default_rng(0)).astype(float)
    frames = stream.reshape(4, 4 * 64, 64)
    up = frames[0, : 2 * 64]
    forward, backward = up[0::2], up[1::2, ::-1]
    assert np.corrcoef(forward.ravel(), backward.ravel())[0, 1] > 0.5
    # the lattice drifts: the first and the last image differ
    assert np.corrcoef(frames[0].ravel(), frames[-1].ravel())[0, 1] < 0.9


# ---------------------------------------------------------------------------- CLI


def test_cli_seeds_a_url(tmp_path):
    url = (tmp_path / "cli-repo").as_uri()
    out = subprocess.run(
        [sys.executable, "-m", "dass.demo", url, "--today", "2026-01-02"],
        capture_output=True, text=True, check=True,
    ).stdout
    for dataset_id in EXPECTED_IDS:
        assert f"{dataset_id}" in out
    meta = json.loads((tmp_path / "cli-repo/p-2026-001/sem-nanowires/dataset.json").read_text())
    assert meta["dates"]["created"] == "2026-01-02"
    again = subprocess.run(
        [sys.executable, "-m", "dass.demo", url], capture_output=True, text=True, check=True
    ).stdout
    assert "nothing written" in again
