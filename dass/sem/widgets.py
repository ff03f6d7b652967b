"""The SEM stack's interactive classifier: an ipywidgets app for JupyterLab.

    from dass.sem.widgets import ClassifierApp
    app = ClassifierApp()
    app.widget            # display it: upload images or pick a mounted dataset, classify, confirm

The app is a thin front end of the dass service's classification API (:class:`SemClient`):
the classifier runs in the service (no torch in the session's kernel), uploads are stored as
a new dataset of your proposal before they are classified (nothing is lost), and a confirmed
category is stored by the service in the dataset's catalogue metadata and a sidecar file, where
``GET api/datasets?category=`` finds it.

Everything a button does is a method (:meth:`ClassifierApp.classify_uploads`,
:meth:`~ClassifierApp.classify_dataset`, :meth:`~ClassifierApp.confirm`), so scripts and tests
drive the app without a browser. Errors are shown in the app's status line, never as a
traceback.
"""

from __future__ import annotations

import html
import io
import zipfile
from typing import Any, Callable, Sequence

from ..client import ServiceError
from .categories import CATEGORIES
from .client import SemClient

__all__ = ["ClassifierApp", "image_files"]

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
UPLOAD_ACCEPT = ",".join(IMAGE_SUFFIXES + (".zip",))


def image_files(dataset: Any) -> list[str]:
    """The SEM image files of a mounted dataset (``dass.data`` ``Dataset``), in name order."""
    return sorted(
        name for name in dataset.fs.find("")
        if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith(".")
    )


def _thumbnail_png(data: bytes, size: int) -> bytes | None:
    """A small PNG of an image file (data bar included, as the user uploaded it), or None."""
    from PIL import Image

    from .io import SemReadError, read_sem

    try:
        pixels = read_sem(data).image
    except (SemReadError, ValueError):
        return None
    image = Image.fromarray((pixels * 255).clip(0, 255).astype("uint8"))
    image.thumbnail((size, size))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _score_bars(result: dict) -> str:
    """HTML bars, one per category, best first."""
    rows = []
    for c in result["categories"]:
        pct = 100 * float(c["score"])
        weight = "bold" if c["id"] == result["category"] else "normal"
        rows.append(
            f'<div style="display:flex;align-items:center;gap:6px;font-size:12px;font-weight:{weight}">'
            f'<span style="width:190px">{html.escape(c["display_name"])}</span>'
            f'<span style="display:inline-block;width:160px;height:10px;background:#eee">'
            f'<span style="display:block;height:10px;width:{pct:.1f}%;background:#3b7dd8"></span></span>'
            f"<span>{pct:.1f} %</span></div>"
        )
    return "".join(rows)


class ClassifierApp:
    """Upload SEM images (or pick a mounted dataset), see every category's score, confirm.

    Parameters
    ----------
    client : SemClient, optional
        The service client; by default made from the session's environment.
    datasets : sequence of dass.data Dataset, optional
        The datasets to offer; by default the session's mounted datasets.
    thumbnail_px : int
        Size of the thumbnails in the results.
    batch : int
        Images per request when classifying a dataset (the progress bar advances per batch).
    """

    def __init__(self, client: SemClient | None = None, *, datasets: Sequence[Any] | None = None,
                 thumbnail_px: int = 128, batch: int = 16) -> None:
        import ipywidgets as w

        self._w = w
        self.thumbnail_px = thumbnail_px
        self.batch = max(1, int(batch))
        self.results: list[dict] = []
        self.labels: dict[str, dict] = {}
        self._thumbs: dict[str, bytes] = {}
        self._reps: dict[str, bytes] = {}
        self._rows: list[Any] = []

        self.status = w.HTML()
        self.client: SemClient | None = None
        try:
            self.client = client or SemClient()
        except ServiceError as e:
            self._error(f"cannot talk to the dass service: {e.message}")

        if datasets is None:
            try:
                import dass.data

                datasets = dass.data.datasets()
            except Exception as e:  # no session manifest outside a session: offer uploads only
                datasets = []
                self._note(f"no mounted datasets ({e.__class__.__name__}): upload images instead")
        self.datasets = {d.id: d for d in datasets}

        self.model_info = w.HTML(self.model_html())
        self.upload = w.FileUpload(accept=UPLOAD_ACCEPT, multiple=True, description="Images…")
        self.proposal = w.Dropdown(options=self._proposal_options(), description="Store in")
        self.upload_button = w.Button(description="Classify uploads", button_style="primary", icon="upload")
        self.upload_button.on_click(lambda _: self.classify_uploads())
        self.dataset = w.Dropdown(options=[(k, k) for k in self.datasets if image_files(self.datasets[k])],
                                  description="Dataset")
        self.dataset_button = w.Button(description="Classify dataset", icon="images")
        self.dataset_button.on_click(lambda _: self.classify_dataset())
        self.progress = w.IntProgress(value=0, min=0, max=1, description="Progress")
        self.results_box = w.VBox()
        self.widget = w.VBox([
            self.model_info,
            w.HBox([self.upload, self.proposal, self.upload_button]),
            w.HBox([self.dataset, self.dataset_button]),
            self.progress,
            self.status,
            self.results_box,
        ])

    # -- what the buttons do --------------------------------------------------------------------

    def model_html(self) -> str:
        """Which model classifies, and on what data it was trained (warns when synthetic)."""
        if self.client is None:
            return "<b>No classifier:</b> the dass service cannot be reached."
        try:
            m = self.client.model()
        except ServiceError as e:
            return f"<b>No classifier:</b> {html.escape(e.message)}"
        trained = m.get("trained_on") or {}
        warn = (' <b style="color:#b00">Trained on SYNTHETIC images: for demonstration only, not '
                "for real SEM data.</b>") if trained.get("synthetic") else ""
        accuracy = (m.get("metrics") or {}).get("accuracy")
        acc = f", held-out accuracy {100 * accuracy:.1f} %" if isinstance(accuracy, (int, float)) else ""
        return (f"Model <b>{html.escape(str(m.get('name')))}</b> ({html.escape(str(m.get('architecture')))}"
                f"{acc}), trained on {html.escape(str(trained.get('url', 'unknown data')))} "
                f"({trained.get('n_images', '?')} images).{warn}")

    def classify_uploads(self, files: Sequence[tuple[str, bytes]] | None = None,
                         proposal: str | None = None) -> dict | None:
        """Store and classify ``files`` (``(name, bytes)``; default: what the upload button holds)
        in ``proposal`` (default: the chooser; empty = your only proposal)."""
        if files is None:
            files = [(f["name"], bytes(f["content"])) for f in self.upload.value]
        if not files:
            self._error("choose one or more images (or a .zip of images) first")
            return None
        for name, data in files:
            self._remember_thumbnails(name, data)
        proposal = self.proposal.value if proposal is None else proposal
        return self._run(lambda: self.client.classify_files(files, proposal=proposal or None), len(files))

    def classify_dataset(self, dataset_id: str | None = None, paths: Sequence[str] | None = None) -> dict | None:
        """Classify the images of a mounted dataset (all, or ``paths``), ``batch`` per request."""
        dataset_id = dataset_id or self.dataset.value
        if not dataset_id:
            self._error("no mounted dataset with images: start the session with an SEM dataset, or upload")
            return None
        dataset = self.datasets.get(dataset_id)
        if dataset is None:
            self._error(f"{dataset_id} is not mounted in this session; choose one of: {', '.join(self.datasets)}")
            return None
        paths = list(paths) if paths is not None else image_files(dataset)
        if not paths:
            self._error(f"{dataset_id} has no SEM images ({', '.join(IMAGE_SUFFIXES)})")
            return None
        for path in paths:
            try:
                with dataset.open(path) as f:
                    self._remember_thumbnails(path, f.read())
            except OSError:
                pass  # the service reports the file's problem
        batches = [paths[i:i + self.batch] for i in range(0, len(paths), self.batch)]
        answers: list[dict] = []

        def run_batches() -> dict:
            for i, chunk in enumerate(batches):
                answers.append(self.client.classify_dataset(dataset_id, chunk))
                self.progress.value = min(len(paths), (i + 1) * self.batch)
            merged = dict(answers[-1])
            merged["results"] = [r for a in answers for r in a["results"]]
            merged["classified"] = sum(a["classified"] for a in answers)
            merged["failed"] = sum(a["failed"] for a in answers)
            return merged

        return self._run(run_batches, len(paths))

    def confirm(self, index: int, category: str | None = None) -> dict | None:
        """Confirm result ``index`` (of :attr:`results`) as ``category`` (default: its row's choice)."""
        result = self.results[index]
        if result.get("status") != "ok":
            self._error(f"{result['file']} was not classified: {result.get('reason')}")
            return None
        if category is None and index < len(self._rows):
            category = self._rows[index]["choice"].value
        try:
            label = self.client.confirm(result["id"], None if category == result["category"] else category)
        except ServiceError as e:
            self._error(f"{result['file']}: {e.message}")
            return None
        self.labels[result["id"]] = label
        if index < len(self._rows):
            self._rows[index]["state"].value = (
                f"✔ stored as <b>{html.escape(label.get('display_name', label['category']))}</b>")
        self._note(f"{result['file']}: category {label['category']} stored with {result.get('dataset')}")
        return label

    # -- internals ------------------------------------------------------------------------------

    def _run(self, call: Callable[[], dict], count: int) -> dict | None:
        if self.client is None:
            self._error("the dass service cannot be reached from this session")
            return None
        self.progress.max, self.progress.value = max(1, count), 0
        self.progress.bar_style = "info"
        self._note(f"classifying {count} file(s)…")
        try:
            answer = call()
        except ServiceError as e:
            self.progress.bar_style = "danger"
            self._error(e.message)
            return None
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        self.results = answer["results"]
        self._note(f"{answer['classified']} classified, {answer['failed']} with errors"
                   + (f"; stored in {answer['dataset']}" if answer.get("dataset") else ""))
        self._render()
        return answer

    def _remember_thumbnails(self, name: str, data: bytes) -> None:
        if name.lower().endswith(".zip"):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as z:
                    for member in z.infolist():
                        if not member.is_dir() and member.file_size <= 64 * 1024 * 1024:
                            self._remember_thumbnails(member.filename, z.read(member))
            except (zipfile.BadZipFile, OSError):
                return
            return
        png = _thumbnail_png(data, self.thumbnail_px)
        if png:
            self._thumbs[name] = png
            self._thumbs[name.rsplit("/", 1)[-1]] = png

    def _representative(self, category: str) -> bytes:
        if category not in self._reps:
            try:
                self._reps[category] = self.client.representative(category)
            except ServiceError:
                self._reps[category] = b""
        return self._reps[category]

    def _render(self) -> None:
        w = self._w
        rows, boxes = [], []
        choices = [(c.name, c.id) for c in CATEGORIES]
        for index, result in enumerate(self.results):
            title = w.HTML(f"<b>{html.escape(result['file'])}</b>")
            thumb_png = self._thumbs.get(result.get("path") or "") or self._thumbs.get(result["file"], b"")
            thumb = w.Image(value=thumb_png, format="png", width=self.thumbnail_px)
            if result.get("status") != "ok":
                rows.append({"choice": None, "state": None})
                boxes.append(w.HBox([thumb, w.VBox([title, w.HTML(
                    f'<span style="color:#b00">not classified: {html.escape(str(result.get("reason")))}</span>')])]))
                continue
            known = {c for _, c in choices}
            options = choices + [(result["display_name"], result["category"])] * (result["category"] not in known)
            choice = w.Dropdown(options=options, value=result["category"], description="Category")
            rep = w.Image(value=self._representative(result["category"]), format="png", width=self.thumbnail_px // 2)

            def show_rep(change: dict, rep: Any = rep) -> None:
                rep.value = self._representative(change["new"])

            choice.observe(show_rep, names="value")
            state = w.HTML("not confirmed yet")
            button = w.Button(description="Confirm", icon="check")
            button.on_click(lambda _, i=index: self.confirm(i))
            summary = w.HTML(f"suggested <b>{html.escape(result['display_name'])}</b>, certainty "
                             f"{100 * result['certainty']:.1f} %")
            rows.append({"choice": choice, "state": state})
            boxes.append(w.HBox([thumb, w.VBox([title, summary, w.HTML(_score_bars(result)),
                                                w.HBox([choice, rep, button, state])])]))
        self._rows = rows
        self.results_box.children = boxes

    def _proposal_options(self) -> list[tuple[str, str]]:
        options = [("my proposal (if only one)", "")]
        if self.client is not None:
            try:
                options += [(g, g) for g in self.client.groups()]
            except ServiceError:
                pass
        return options

    def _note(self, text: str) -> None:
        self.status.value = html.escape(text)

    def _error(self, text: str) -> None:
        self.status.value = f'<span style="color:#b00">{html.escape(text)}</span>'
