"""The stacks' notebooks (``dass/notebooks/<stack>/welcome.ipynb`` and
``dass/notebooks/<stack>/service/*.ipynb``): clean files, and run headless.

Each notebook runs in a real kernel with ``papermill.execute_notebook`` against the demo
repository, in an environment built as for a job or a session: the demo repository is
catalogued, the datasets a user may see are mounted and the manifest written with
:mod:`dass.data.mount` (as the spawner and the job runner do), and ``DASS_SESSION_MANIFEST``
(and for jobs ``DASS_OUTPUT_DIR``) are set for the kernel. A job's parameters are checked with
:func:`dass.jobs.params.validate_parameters` against what the user may see first.
"""

from __future__ import annotations

import csv
import datetime
import ast
import hashlib
import json
import math
from pathlib import Path

import fsspec
import nbformat
import pytest

papermill = pytest.importorskip("papermill", reason="papermill runs the service notebooks")
pytest.importorskip("ipykernel", reason="the service notebooks need a Python kernel")
h5py = pytest.importorskip("h5py", reason="h5py reads the KMAP and STM demo data")
np = pytest.importorskip("numpy")
Image = pytest.importorskip("PIL.Image", reason="pillow reads and writes the images")

from dass import demo  # noqa: E402
from dass.data.access import Identity  # noqa: E402
from dass.data.catalog import Catalog  # noqa: E402
from dass.data.mount import mount_datasets, write_manifest  # noqa: E402
from dass.data.storage import Storage  # noqa: E402
from dass.jobs.params import ParameterError, inspect_parameters, validate_parameters  # noqa: E402

TODAY = datetime.date(2026, 3, 15)
NOTEBOOKS = Path(demo.__file__).resolve().parent / "notebooks"  # shipped inside the package
STACKS = ["sem", "kmap", "stm"]
SERVICE = {
    ("sem", "image_summary"): ["input_dataset", "max_images", "thumbnail_px"],
    ("sem", "classify_dataset"): ["input_dataset", "model", "max_images", "batch_size"],
    ("sem", "train_classifier"): ["input_dataset", "architecture", "epochs", "input_size", "batch_size",
                                  "learning_rate", "val_fraction", "patience", "weights", "seed"],
    ("kmap", "scan_overview"): ["input_dataset"],
    ("kmap", "strain_tilt_maps"): ["input_dataset", "grid", "method", "background", "hkl", "lattice_a",
                                   "reference_region", "roi", "processes", "engine", "mask_file", "normalizer",
                                   "min_height", "max_width", "strain_range", "write_qspace"],
    ("stm", "fast_overview"): ["input_dataset", "frame"],
    ("stm", "fast_movie"): ["input_dataset", "recipe", "frames", "fps", "hdf5"],
}
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
ALICE = Identity("alice", frozenset({"p-2026-001"}))  # sem datasets of p-2026-001
BOB = Identity("bob", frozenset({"p-2026-002"}))  # kmap and stm datasets of p-2026-002


def notebook_path(stack: str, name: str) -> Path:
    return NOTEBOOKS / stack / "service" / f"{name}.ipynb"


#: the demo FAST movie written again with phases, the stream rolled back to match (see below)
PHASED = "p-2026-002/stm-phased"
X_PHASE, Y_PHASE = 5, 3


def _add_phased_movie(root: Path) -> None:
    """Copy the demo FAST movie to ``PHASED`` with ``Acquisition.X_Phase``/``Y_Phase`` set and
    the stream rolled by ``-(x_phase + 2·X·y_phase)``: read as the FAST layout says, it must
    give the demo movie's images again."""
    source, target = root / "p-2026-002/stm-au111-fast", root / PHASED
    target.mkdir()
    with h5py.File(source / "au111_fast_001.h5", "r") as h5:
        stream, attrs = h5["data"][()], dict(h5["data"].attrs)
    x_points = int(attrs["Scanner.X_Points"])
    attrs["Acquisition.X_Phase"], attrs["Acquisition.Y_Phase"] = np.int32(X_PHASE), np.int32(Y_PHASE)
    with h5py.File(target / "phased.h5", "w") as h5:
        data = h5.create_dataset("data", data=np.roll(stream, -(X_PHASE + 2 * x_points * Y_PHASE)))
        data.attrs.update(attrs)
    meta = json.loads((source / "dataset.json").read_text())
    meta["title"] = "SYNTHETIC FAST STM movie with scan phases"
    digest = hashlib.sha256((target / "phased.h5").read_bytes()).hexdigest()
    meta["checksums"] = {"phased.h5": f"sha256:{digest}"}
    (target / "dataset.json").write_text(json.dumps(meta, indent=2))


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    """The demo repository, seeded on the local filesystem and catalogued: (storage, catalog)."""
    root = tmp_path_factory.mktemp("repository")
    demo.seed(fsspec.filesystem("file"), root.as_posix(), today=TODAY)
    _add_phased_movie(root)
    storage = Storage(url=f"file://{root}")
    catalog = Catalog(db_url=f"sqlite:///{tmp_path_factory.mktemp('state')}/catalog.sqlite")
    report = catalog.scan(storage)
    assert report.errors == []
    yield storage, catalog
    catalog.dispose()


def _mount_session(storage, stack: str, records: list, home: Path) -> Path:
    """Mount ``records`` into ``home`` and write the manifest, as the spawner and the runner
    do; returns the manifest's path."""
    entries = mount_datasets(storage, records, home)
    return write_manifest(
        home / ".dass" / "session.json",
        stack=stack,
        size="small",
        service_url=None,  # the datasets are read from their local views; the registry needs a gateway
        entries=entries,
    )


@pytest.fixture(scope="module")
def gateway(repository, tmp_path_factory):
    """A real dass service on the same repository and catalogue: the data gateway a session or
    job reaches the SEM model registry through (``dass.data.repository()``)."""
    from tests.service.service_support import FakeHub, LoopThread, start_service

    storage, catalog = repository
    loop = LoopThread()
    hub = FakeHub()
    loop.run(hub.start())
    svc = start_service(loop, tmp_path_factory.mktemp("gateway"), hub.api_url, db_url=catalog.db_url,
                        repo_url=storage.url, extra_config="c.JobManager.max_concurrency = 0")
    yield svc
    svc.stop()
    loop.run(hub.stop())
    loop.close()


@pytest.fixture
def with_gateway(gateway, monkeypatch):
    """The kernel reaches the gateway with alice's token (as her session would with its own)."""
    monkeypatch.setenv("DASS_SERVICE_URL", gateway.url)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "alice-token")
    return gateway


@pytest.fixture
def run_job(repository, tmp_path, monkeypatch):
    """Run a service notebook as a job of ``identity``: check the parameters, mount the
    datasets they name, write the manifest, execute with papermill. Returns the output folder
    and the executed notebook."""
    storage, catalog = repository

    def run(stack: str, name: str, identity: Identity, parameters: dict):
        path = notebook_path(stack, name)
        declared = inspect_parameters(path)
        values, dataset_ids = validate_parameters(
            parameters,
            declared,
            visible_dataset=lambda dataset_id: dataset_id in catalog.visible(identity, [dataset_id], TODAY),
        )
        records = catalog.visible(identity, dataset_ids, TODAY)
        manifest = _mount_session(storage, stack, [records[i] for i in dataset_ids], tmp_path / "home")
        output_dir = tmp_path / "output"
        monkeypatch.setenv("DASS_SESSION_MANIFEST", str(manifest))
        monkeypatch.setenv("DASS_OUTPUT_DIR", str(output_dir))
        monkeypatch.setenv("MPLBACKEND", "Agg")
        executed = papermill.execute_notebook(
            str(path),
            str(tmp_path / f"{name}.out.ipynb"),
            parameters=values,
            cwd=str(tmp_path),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=120,
        )
        return output_dir, executed

    return run


@pytest.fixture
def run_landing(repository, tmp_path, monkeypatch):
    """Run a stack's landing notebook as in a session of ``identity`` with ``dataset_ids``
    chosen: the datasets mounted in a home folder and the manifest written as the spawner does,
    then papermill. Returns the executed notebook."""
    storage, catalog = repository

    def run(stack: str, identity: Identity, dataset_ids: list[str]):
        records = catalog.visible(identity, dataset_ids, TODAY)
        assert sorted(records) == sorted(dataset_ids)
        manifest = _mount_session(storage, stack, [records[i] for i in dataset_ids], tmp_path / "home")
        monkeypatch.setenv("DASS_SESSION_MANIFEST", str(manifest))
        monkeypatch.setenv("MPLBACKEND", "Agg")  # no windows: matplotlib draws off screen
        work = tmp_path / "work"  # what the notebooks write (kmap_output/, ...) stays here
        work.mkdir(exist_ok=True)
        return papermill.execute_notebook(
            str(NOTEBOOKS / stack / "welcome.ipynb"),
            str(tmp_path / f"{stack}-welcome.out.ipynb"),
            cwd=str(work),
            kernel_name="python3",
            progress_bar=False,
            execution_timeout=300,
        )

    return run


def _stdout(nb) -> str:
    return "".join(
        o.get("text", "")
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "stream"
    )


# ---------------------------------------------------------------------------- the notebooks


ALL_NOTEBOOKS = sorted(p.relative_to(NOTEBOOKS).as_posix() for p in NOTEBOOKS.rglob("*.ipynb"))


def test_every_landing_and_service_notebook_is_shipped_and_nothing_else():
    expected = [f"{stack}/welcome.ipynb" for stack in STACKS]
    expected += [f"{stack}/service/{name}.ipynb" for stack, name in SERVICE]
    assert ALL_NOTEBOOKS == sorted(expected)


def test_the_stack_registry_reads_the_packaged_notebooks():
    from dass.stacks.registry import StackRegistry

    registry = StackRegistry()
    assert Path(registry.notebooks_dir).resolve() == NOTEBOOKS
    for stack in registry.all_stacks.values():
        assert registry.landing_notebook_path(stack).resolve() == NOTEBOOKS / stack.name / "welcome.ipynb"


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_notebook_is_clean(name):
    """A valid notebook without outputs or execution counts, every code cell Python that parses,
    a kernel named, and no cell-id clash: what is committed is what a user edits."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.nbformat == 4 and nb.metadata["kernelspec"]["name"] == "python3"
    ids = [cell.get("id") for cell in nb.cells]
    assert all(ids) and len(set(ids)) == len(ids)
    for number, cell in enumerate(nb.cells):
        assert cell.source.strip(), f"{name}: cell {number} is empty"
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: cell {number} has outputs"
            ast.parse(cell.source, filename=f"{name} cell {number}")
    # the file is as nbformat writes it, so that an edit in JupyterLab changes only what was edited
    assert (NOTEBOOKS / name).read_text(encoding="utf-8").rstrip("\n") == nbformat.writes(nb).rstrip("\n")


@pytest.mark.parametrize("stack, name", sorted(SERVICE))
def test_service_notebook_is_valid_tagged_and_honest(stack, name):
    nb = nbformat.read(notebook_path(stack, name), as_version=4)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "not built yet" not in markdown.lower()  # every stack's science exists now
    assert "$DASS_OUTPUT_DIR" in markdown
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("stack, name", sorted(SERVICE))
def test_service_notebook_declares_a_dataset_parameter(stack, name):
    params = inspect_parameters(notebook_path(stack, name))
    assert list(params) == SERVICE[(stack, name)]
    dataset = params["input_dataset"]
    assert dataset.type == "dataset"
    assert dataset.default == "" and not dataset.required
    assert dataset.help and not dataset.help.lower().startswith("dataset")
    for other in list(params)[1:]:
        param = params[other]
        assert param.help and not param.required, other  # every other parameter has a default
        assert param.type in ("int", "float", "str", "bool", "list", "dict"), other


def test_a_dataset_the_user_may_not_see_is_refused_before_anything_runs(repository):
    _, catalog = repository
    declared = inspect_parameters(notebook_path("sem", "image_summary"))
    with pytest.raises(ParameterError) as err:
        validate_parameters(
            {"input_dataset": "p-2026-002/stm-au111-fast"},
            declared,
            visible_dataset=lambda i: i in catalog.visible(ALICE, [i], TODAY),
        )
    assert err.value.status == 403 and err.value.field == "input_dataset"
    assert str(err.value) == (
        "parameter 'input_dataset': dataset 'p-2026-002/stm-au111-fast' does not exist or you "
        "may not use it"
    )


# ---------------------------------------------------------------------------- landing notebooks

#: a user of every demo proposal
CAROL = Identity("carol", frozenset({"p-2026-001", "p-2026-002", "p-2025-900"}))


@pytest.mark.parametrize("stack", STACKS)
def test_landing_notebook_is_valid_and_honest(stack):
    nb = nbformat.read(NOTEBOOKS / stack / "welcome.ipynb", as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "## What works now" in markdown
    assert "~/datasets/<proposal>/<dataset>/" in markdown
    assert "not built yet" not in markdown.lower()  # every stack's science exists now
    assert nb.cells[-1].source.startswith("## Also in this stack")
    assert f"{stack}/service/" in nb.cells[-1].source  # names the stack's service notebooks
    assert "dass.data.datasets()" in code


@pytest.mark.parametrize(
    "stack, expected",
    [
        ("sem", "p-2026-001/sem-nanowires/nanowires_001.png: 512 x 384 px"),
        ("kmap", "eta per entry (deg)"),
        ("stm", "images in the stream: 4 of 16384 samples each"),
    ],
)
def test_landing_notebook_runs_on_the_demo_data(run_landing, stack, expected):
    nb = run_landing(stack, CAROL, demo.dataset_ids())
    out = _stdout(nb)
    assert expected in out
    assert "p-2026-002/stm-au111-fast: SYNTHETIC" in out
    assert "(synthetic demo data, not a measurement)" in out
    table = next(o for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "p-2026-001/sem-nanowires" in table["data"]["text/html"]  # the datasets as a table


@pytest.mark.parametrize("stack", STACKS)
def test_landing_notebook_explains_when_nothing_is_mounted(run_landing, stack):
    out = _stdout(run_landing(stack, CAROL, []))
    assert "among the mounted datasets" in out


# ---------------------------------------------------------------------------- SEM


def _image_count(storage: Storage, dataset_id: str) -> int:
    meta = json.loads(Path(storage.url.removeprefix("file://"), dataset_id, "dataset.json").read_text())
    return sum(1 for name in meta["checksums"] if name.lower().endswith(IMAGE_SUFFIXES))


@pytest.mark.parametrize(
    "identity, dataset_id", [(ALICE, "p-2026-001/sem-nanowires"), (BOB, "p-2025-900/sem-reference-public")]
)
def test_sem_image_summary(run_job, repository, identity, dataset_id):
    storage, _ = repository
    output_dir, nb = run_job("sem", "image_summary", identity, {"input_dataset": dataset_id})
    n = _image_count(storage, dataset_id)
    assert n >= 2
    with open(output_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n
    assert list(rows[0]) == ["file", "width", "height", "dtype", "min", "max", "mean", "std"]
    assert sorted(r["file"] for r in rows) == [r["file"] for r in rows]
    assert {r["file"].rsplit(".", 1)[-1] for r in rows} == {"png", "tif"}
    for row in rows:
        assert (int(row["width"]), int(row["height"]), row["dtype"]) == (512, 384, "uint8")
        low, high, mean, std = (float(row[k]) for k in ("min", "max", "mean", "std"))
        assert 0 <= low < mean < high <= 255 and std > 0
        # the dark data bar and its bright text are part of every image
        assert low < 30 and high > 200
    columns = math.ceil(math.sqrt(n))
    with Image.open(output_dir / "contact_sheet.png") as sheet:
        assert sheet.size == (columns * 256, math.ceil(n / columns) * 256)
        assert sheet.mode == "RGB"
        assert np.asarray(sheet).max() > 200  # not a blank sheet
    assert f"{dataset_id}: SYNTHETIC" in _stdout(nb)
    assert "(synthetic demo data, not a measurement)" in _stdout(nb)


def test_sem_image_summary_honours_max_images_and_thumbnail_px(run_job):
    output_dir, nb = run_job(
        "sem", "image_summary", ALICE,
        {"input_dataset": "p-2026-001/sem-particles", "max_images": 1, "thumbnail_px": 64},
    )
    with open(output_dir / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    with Image.open(output_dir / "contact_sheet.png") as sheet:
        assert sheet.size == (64, 64)
    assert "summarising the first 1 (raise max_images for more)" in _stdout(nb)


def test_an_empty_dataset_parameter_fails_with_a_clear_message(run_job):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        run_job("sem", "image_summary", ALICE, {})
    assert "input_dataset is empty: set it to the id of an SEM dataset" in str(err.value)


@pytest.fixture(scope="module")
def sem_model(repository, tmp_path_factory):
    """A seeded, untrained checkpoint registered as the repository's default SEM model."""
    pytest.importorskip("torch", reason="the SEM classifier needs torch")
    from dass.sem.registry import ModelRegistry
    from tests.sem_support import MODEL, write_untrained_checkpoint

    storage, _ = repository
    checkpoint = write_untrained_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")
    ModelRegistry(storage).register(str(checkpoint), MODEL, default=True)
    return checkpoint


def test_sem_classify_dataset_equals_the_classifier_called_directly(run_job, repository, sem_model, with_gateway):
    from dass.sem.classify import Classifier

    storage, _ = repository
    dataset_id = "p-2026-001/sem-nanowires"
    output_dir, nb = run_job("sem", "classify_dataset", ALICE, {"input_dataset": dataset_id, "batch_size": 2})
    with open(output_dir / "classifications.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    folder = Path(storage.url.removeprefix("file://"), dataset_id)
    names = sorted(p.name for p in folder.iterdir() if p.name.lower().endswith(IMAGE_SUFFIXES))
    assert [r["file"] for r in rows] == names and len(names) == _image_count(storage, dataset_id)
    direct = Classifier.load(str(sem_model), device="cpu").classify_files(
        [(folder / n).read_bytes() for n in names], names=names)
    for row, outcome in zip(rows, direct):
        assert row["status"] == "ok" and row["category"] == outcome.prediction.category
        for category, score in outcome.prediction.scores.items():
            assert float(row[category]) == pytest.approx(score, abs=2e-6)
    answer = json.loads((output_dir / "classifications.json").read_text())
    assert answer["model"]["name"] == "untrained-test" and answer["synthetic_data"] is True
    for png in ("classified.png", "categories.png"):
        with Image.open(output_dir / png) as image:
            assert image.size[0] > 100
    assert "trained on SYNTHETIC images" in _stdout(nb)


def test_sem_classify_dataset_without_images_says_so(run_job, sem_model, with_gateway):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        run_job("sem", "classify_dataset", BOB, {"input_dataset": "p-2026-002/stm-au111-fast"})
    assert "holds no PNG, TIFF or JPEG image" in str(err.value)


def test_sem_train_classifier_writes_a_checkpoint_and_a_consistent_report(run_job):
    pytest.importorskip("torch", reason="training needs torch")
    output_dir, nb = run_job("sem", "train_classifier", ALICE, {
        "input_dataset": "p-2026-001/sem-training-synthetic", "epochs": 2, "input_size": 48,
        "batch_size": 16,
    })
    report = json.loads((output_dir / "report.json").read_text())
    matrix = np.asarray(report["metrics"]["confusion_matrix"])
    assert matrix.shape == (10, 10)
    assert report["metrics"]["accuracy"] == pytest.approx(np.trace(matrix) / matrix.sum())
    assert (output_dir / "model.pt").stat().st_size > 100_000
    with Image.open(output_dir / "confusion_matrix.png") as png:
        assert png.size[0] > 300
    from dass.sem.checkpoint import load_checkpoint

    _, info, _ = load_checkpoint(str(output_dir / "model.pt"))
    assert info.architecture == "mobilenet_v3_small" and info.trained_on["synthetic"] is True
    assert info.trained_on["n_images"] == 60


# ---------------------------------------------------------------------------- KMAP


def test_kmap_scan_overview(run_job):
    output_dir, nb = run_job("kmap", "scan_overview", BOB, {"input_dataset": "p-2026-002/kmap-sige-island"})
    overview = json.loads((output_dir / "overview.json").read_text())
    assert set(overview) == {"dataset", "title", "synthetic", "file", "entries", "summed_frame", "maps"}
    assert overview["dataset"] == "p-2026-002/kmap-sige-island" and overview["synthetic"] is True
    assert overview["file"] == "sige_island_master.h5"
    assert [e["name"] for e in overview["entries"]] == ["1.1", "2.1", "3.1"]
    for entry in overview["entries"]:
        assert entry["datasets"]["measurement/image/data"] == {"shape": [48, 32, 32], "dtype": "uint16"}
        assert entry["datasets"]["measurement/imgnr"]["shape"] == [48]
        assert set(entry["positioners"]) >= {"eta", "phi", "nu", "del"}
    etas = [e["positioners"]["eta"] for e in overview["entries"]]
    assert etas == sorted(etas)
    summed = overview["summed_frame"]
    assert summed["entry"] == "1.1" and summed["dataset"] == "measurement/image/data"
    assert summed["frames"] == 48 and summed["shape"] == [32, 32]
    assert 0 <= summed["min"] < summed["max"] <= summed["total"]
    with Image.open(output_dir / summed["png"]) as png:
        assert png.size == (32, 32) and png.mode == "L"
        pixels = np.asarray(png)
    peak = np.unravel_index(np.argmax(pixels), pixels.shape)
    assert abs(peak[0] - 16) <= 4 and abs(peak[1] - 16) <= 4  # the demo's Bragg peak
    assert (pixels.min(), pixels.max()) == (0, 255)
    assert "strain_tilt_maps.ipynb" in overview["maps"]
    assert "1.1: " in _stdout(nb)


def test_kmap_strain_tilt_maps_match_the_demo_truth(run_job, repository):
    storage, _ = repository
    output_dir, nb = run_job("kmap", "strain_tilt_maps", BOB,
                             {"input_dataset": "p-2026-002/kmap-sige-island", "grid": [28, 28, 28]})
    summary = json.loads((output_dir / "sige_island_summary.json").read_text())
    assert summary["synthetic"] is True and summary["parameters"]["method"] == "gaussian"
    for name in ("qspace", "fit", "hdf5", "csv", "summary"):
        assert (output_dir / summary["files"][name]).is_file(), name
    for name in ("strain", "pitch", "roll"):
        with Image.open(output_dir / f"sige_island_{name}.png") as png:
            assert png.size[0] > 100 and png.size[1] > 100
    # the recovered strain map against the generator's truth stored with the demo dataset
    from dass.kmap.export import read_hdf5

    maps = read_hdf5(output_dir / summary["files"]["hdf5"])
    meta = json.loads(Path(storage.url.removeprefix("file://"), "p-2026-002/kmap-sige-island",
                           "dataset.json").read_text())
    truth = meta["domain"]["truth"]
    truth = json.loads(truth) if isinstance(truth, str) else truth
    expected = np.asarray(truth["strain"])
    got = maps.map("strain")
    assert got.shape == expected.shape
    ok = np.isfinite(got)
    assert ok.mean() > 0.9
    # three rocking angles only (the demo is small): a loose bound, the tight ones are in tests/kmap
    assert np.sqrt(np.mean((got[ok] - expected[ok]) ** 2)) < 2e-4
    assert "SYNTHETIC" in _stdout(nb) or "synthetic" in _stdout(nb)


def test_kmap_job_masks_with_thresholds_and_refuses_a_bad_mask_file(run_job, tmp_path):
    """The job's masking parameters reach the maps; a mask file that is not there is named."""
    output_dir, nb = run_job("kmap", "strain_tilt_maps", BOB,
                             {"input_dataset": "p-2026-002/kmap-sige-island", "grid": [24, 24, 24],
                              "strain_range": [-1e-9, 1e-9], "write_qspace": False})
    summary = json.loads((output_dir / "sige_island_summary.json").read_text())
    assert "qspace" not in summary["files"] or not (output_dir / str(summary["files"].get("qspace"))).is_file()
    assert summary["masked"], summary["masked"]  # a range no real strain fits in masks positions
    with pytest.raises(papermill.PapermillExecutionError) as e:
        run_job("kmap", "strain_tilt_maps", BOB,
                {"input_dataset": "p-2026-002/kmap-sige-island", "mask_file": "no-such-mask.npy"})
    assert "no-such-mask.npy" in str(e.value)


# ---------------------------------------------------------------------------- STM


def test_stm_fast_overview(run_job, repository):
    storage, _ = repository
    output_dir, nb = run_job(
        "stm", "fast_overview", BOB, {"input_dataset": "p-2026-002/stm-au111-fast", "frame": 2}
    )
    metadata = json.loads((output_dir / "metadata.json").read_text())
    assert set(metadata) >= {
        "dataset", "file", "attributes", "samples", "x_points", "y_points", "x_phase", "y_phase",
        "images", "frame", "processing",
    }
    assert metadata["file"] == "au111_fast_001.h5"
    assert (metadata["x_points"], metadata["y_points"], metadata["images"]) == (64, 64, 4)
    assert metadata["samples"] == 4 * 4 * 64 * 64 and metadata["dtype"] == "int16"
    assert metadata["attributes"]["Scanner.X_Points"] == 64
    assert metadata["attributes"]["Acquisition.NumImages"] == 4
    assert "SYNTHETIC" in metadata["attributes"]["ExperimentInfo.Comment"]
    frame = metadata["frame"]
    assert frame["index"] == 2 and frame["shape"] == [64, 64] and frame["x_interpolated"] is False
    with Image.open(output_dir / "frame.png") as png:
        assert png.size == (64, 64) and png.mode == "L"
        pixels = np.asarray(png).astype(float)
    assert (pixels.min(), pixels.max()) == (0, 255)
    # the PNG is the forward up lines of image 2 of the stream, min-max scaled
    root = Path(storage.url.removeprefix("file://"))
    with h5py.File(root / "p-2026-002/stm-au111-fast/au111_fast_001.h5", "r") as h5:
        stream = h5["data"][()].astype(float)
    lines = stream.reshape(4, 4 * 64, 64)[2, : 2 * 64][0::2]  # phases are 0 in the demo
    assert (frame["min"], frame["max"]) == (lines.min(), lines.max())
    expected = (lines - lines.min()) * 255.0 / (lines.max() - lines.min())
    assert np.abs(pixels - np.round(expected)).max() <= 1
    assert "SYNTHETIC" in _stdout(nb) and "4 images" in _stdout(nb)


def test_stm_frame_out_of_range_names_the_range(run_job):
    with pytest.raises(papermill.PapermillExecutionError) as err:
        run_job("stm", "fast_overview", BOB, {"input_dataset": "p-2026-002/stm-au111-fast", "frame": 4})
    assert "frame must be between 0 and 3, got 4" in str(err.value)


def test_stm_fast_overview_rolls_by_the_scan_phases(run_job, tmp_path):
    plain_dir, _ = run_job("stm", "fast_overview", BOB, {"input_dataset": "p-2026-002/stm-au111-fast", "frame": 1})
    plain = np.asarray(Image.open(plain_dir / "frame.png"))
    plain_dir.rename(tmp_path / "plain")
    phased_dir, _ = run_job("stm", "fast_overview", BOB, {"input_dataset": PHASED, "frame": 1})
    metadata = json.loads((phased_dir / "metadata.json").read_text())
    assert (metadata["file"], metadata["x_phase"], metadata["y_phase"]) == ("phased.h5", X_PHASE, Y_PHASE)
    assert np.array_equal(np.asarray(Image.open(phased_dir / "frame.png")), plain)


def test_stm_fast_movie_writes_a_playable_movie_and_frames(run_job):
    output_dir, nb = run_job("stm", "fast_movie", BOB, {"input_dataset": "p-2026-002/stm-au111-fast"})
    summary = json.loads((output_dir / "summary.json").read_text())
    assert summary["synthetic"] is True and summary["skipped"] == []
    (entry,) = summary["files"]
    movie = output_dir / entry["movie"]
    assert movie.is_file() and movie.stat().st_size > 1000
    from imageio_ffmpeg import count_frames_and_secs

    if movie.suffix == ".mp4":
        n_frames, _ = count_frames_and_secs(str(movie))
        assert n_frames == entry["num_frames"]
    assert len(entry["frames"]) == 1  # frames="first"
    with Image.open(output_dir / entry["frames"][0]) as png:
        assert png.size[0] >= entry["frame_shape"][1]
    metadata = json.loads((output_dir / entry["metadata"]).read_text())
    assert metadata["num_frames"] == entry["num_frames"] and metadata["synthetic"] is True
    assert metadata["metadata"]["points_x"] == 64
