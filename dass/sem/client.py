"""A client of the dass service's SEM classification API, for notebooks, scripts and the widget.

Inside a JupyterLab session it needs no arguments (the session's hub token and the service URL
are in its environment)::

    from dass.sem.client import SemClient
    sem = SemClient()
    answer = sem.classify_files(["a.tif", "b.png"])          # stored as a new upload dataset
    answer = sem.classify_dataset("p-2026-001/sem-nanowires") # images already in the repository
    sem.confirm(answer["results"][0]["id"], "Nanowires")      # store the confirmed category
    sem.search("Nanowires")                                   # datasets labelled so

Torch-free: the classifier runs in the service.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from ..client import ServiceClient, ServiceError

__all__ = ["SemClient", "ServiceError"]




def _upload_part(item: Any) -> tuple[str, tuple[str, bytes]]:
    if isinstance(item, tuple):
        name, data = item
        return "files", (str(name), bytes(data))
    path = Path(item)
    return "files", (path.name, path.read_bytes())


class SemClient(ServiceClient):
    """Talks to ``api/classify`` and ``api/datasets?category=`` of the dass service."""

    def model(self) -> dict:
        """The model the service classifies with: name, architecture, classes, training data
        (with its ``synthetic`` flag) and metrics. ``ServiceError`` 503 when none is registered."""
        return self._request("GET", "api/classify/model").json()

    def classify_files(self, files: Iterable[Any], proposal: str | None = None) -> dict:
        """Upload images (paths or ``(name, bytes)``; ``.zip`` archives of images too) into a new
        upload dataset of ``proposal`` (may be omitted when you are in exactly one) and classify
        each. Per-file problems come back as ``{"status": "error", "reason"}`` results."""
        parts = [_upload_part(f) for f in files]
        if not parts:
            raise ValueError("no files to classify: pass at least one image path or (name, bytes)")
        data = {"proposal": proposal} if proposal else None
        return self._request("POST", "api/classify", files=parts, data=data, timeout=max(self.timeout, 600)).json()

    def classify_dataset(self, dataset: str, paths: Sequence[str] | None = None) -> dict:
        """Classify images already stored in ``dataset`` (``"<proposal>/<name>"``); ``paths``
        relative to the dataset, all of its images when omitted."""
        body: dict[str, Any] = {"dataset": dataset}
        if paths is not None:
            body["paths"] = list(paths)
        return self._request("POST", "api/classify", json=body, timeout=max(self.timeout, 600)).json()

    def get(self, classification_id: str) -> dict:
        return self._request("GET", f"api/classify/{classification_id}").json()

    def confirm(self, classification_id: str, category: str | None = None) -> dict:
        """Store the category of one classified image: the suggestion when ``category`` is None,
        otherwise the given category id (a change)."""
        body = {} if category is None else {"category": category}
        return self._request("POST", f"api/classify/{classification_id}/confirm", json=body).json()

    def representative(self, category: str) -> bytes:
        """A representative training image of ``category`` (PNG bytes)."""
        return self._request("GET", f"api/classify/categories/{category}/representative").content

    def search(self, category: str) -> list[dict]:
        """The datasets you may see that hold an image confirmed as ``category``."""
        return self._request("GET", "api/datasets", params={"category": category}).json()["datasets"]

    def groups(self) -> list[str]:
        """Your groups as the service sees them (proposals are groups)."""
        return list(self._request("GET", "api/me").json().get("groups", []))
