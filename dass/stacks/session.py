"""The session spec: one validated selection, described once for every back end.

:func:`build_session_spec` turns a :class:`~dass.stacks.selection.Selection` and who asks for it
into a :class:`SessionSpec`: the user, the stack with its image or environment, the size's
limits, the datasets to make reachable, the start page, the environment variables and how the
session reaches the dass service (its URL and the session's own hub token). Each spawner back
end (local processes, containers, Slurm, Kubernetes) only *renders* this spec — into a
process, a container, a batch script or a pod — and launches it.

A spec never holds storage credentials, database URLs or platform secrets: whatever a back end
needs of those it takes from its own configuration, outside the session's reach.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from .registry import Stack
from .runtime import Limits, limits, thread_env
from .selection import Selection

#: environment variables every session gets (besides JupyterHub's own ``JUPYTERHUB_*``)
STACK_ENV = "DASS_STACK"
SIZE_ENV = "DASS_SIZE"
SERVICE_URL_ENV = "DASS_SERVICE_URL"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset a session may reach: its id and where it belongs, no storage location."""

    id: str
    proposal: str
    name: str
    title: str = ""


@dataclass(frozen=True)
class SessionSpec:
    """What one session is, independent of where it runs (see the module docstring)."""

    user: str
    server_name: str
    stack: str
    size: str
    datasets: tuple[DatasetRef, ...]
    #: container image of the stack (container and Kubernetes back ends)
    image: str
    #: prefix of the stack's Python environment on one machine ("" = the platform's own)
    environment: str
    #: the page JupyterLab opens on, relative to the server's URL
    default_url: str
    limits: Limits
    #: the dass service (REST API and data gateway) as the session reaches it
    service_url: str
    env: Mapping[str, str] = field(default_factory=dict)
    #: the session's own hub API token; never logged or serialised (see :meth:`to_json`)
    token: str = field(default="", repr=False)

    @property
    def dataset_ids(self) -> list[str]:
        return [d.id for d in self.datasets]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able copy for logs and tests, the token left out."""
        doc = asdict(self)
        doc.pop("token")
        doc["datasets"] = [asdict(d) for d in self.datasets]
        doc["env"] = dict(self.env)
        return doc


def landing_url(stack: Stack) -> str:
    """The JupyterLab page a session of ``stack`` opens on (its landing notebook)."""
    return f"/lab/tree/notebooks/{stack.landing_notebook}"


def build_session_spec(
    selection: Selection,
    *,
    user: str,
    service_url: str,
    server_name: str = "",
    token: str = "",
) -> SessionSpec:
    """Describe the session of a validated ``selection`` for ``user``.

    Parameters
    ----------
    selection : Selection
        From :func:`~dass.stacks.selection.validate_selection` (access already checked).
    user : str
        The hub user the session belongs to.
    service_url : str
        The dass service as the session reaches it.
    server_name : str
        The named server ("" for the default one).
    token : str
        The session's own hub API token.

    Examples
    --------
    >>> from dass.stacks.registry import Size, Stack
    >>> stack = Stack("sem", "SEM", "", "sem/welcome.ipynb", "small", ("small",))
    >>> sel = Selection(stack, Size("small", "small", cpu=1, mem_gib=2), ())
    >>> spec = build_session_spec(sel, user="alice", service_url="http://127.0.0.1:8001/")
    >>> spec.default_url, spec.env["DASS_STACK"], spec.env["OMP_NUM_THREADS"]
    ('/lab/tree/notebooks/sem/welcome.ipynb', 'sem', '1')
    """
    stack, size = selection.stack, selection.size
    env = {
        STACK_ENV: stack.name,
        SIZE_ENV: size.name,
        SERVICE_URL_ENV: service_url,
        **thread_env(size),
    }
    return SessionSpec(
        user=user,
        server_name=server_name,
        stack=stack.name,
        size=size.name,
        datasets=tuple(
            DatasetRef(id=d.id, proposal=d.proposal, name=d.name, title=getattr(d, "title", "") or "")
            for d in selection.datasets
        ),
        image=stack.image,
        environment=stack.environment,
        default_url=landing_url(stack),
        limits=limits(size),
        service_url=service_url,
        env=env,
        token=token,
    )
