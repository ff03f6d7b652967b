"""The dass spawner layer.

:class:`DassSpawnerMixin` holds everything that does not depend on where a session runs: the
spawn form, the turning of form data into ``user_options``, their validation (through
:mod:`dass.stacks.selection`), the access check again at start, the building of the one
:class:`~dass.stacks.session.SessionSpec` and the session's environment. A back end combines
it with a JupyterHub spawner and only *renders and launches* the spec in
:meth:`DassSpawnerMixin.render_session`: :class:`DassLocalSpawner` (processes on this machine)
is the first; containers (:mod:`dass.hub.container`), Slurm and Kubernetes are further back
ends on the same seam.

Why one module: the start sequence of :class:`DassSpawnerMixin` (check, spec, render, grant,
audit, launch, wait) and the two halves every one-machine back end fills in —
:class:`UserHomeMixin` (the account and its prepared home, shared by local processes and
containers) and :class:`DassLocalSpawner` (the process) — call each other's hooks and share the
errors shown to users (``_reject``, ``_spawn_error``); split, each half would import the other's
private helpers. The pure parts live elsewhere: :mod:`dass.stacks.session` (the spec),
:mod:`.homes` (link-safe writes into a home), :mod:`.picker` (the dataset picker); the cluster back ends have modules of their own
(:mod:`dass.hub.slurm`, :mod:`dass.hub.kubernetes`).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import resource
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import jinja2
from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Bool, Integer, Unicode, default
from traitlets.config import Configurable

from ..data.access import Identity
from ..data.accounts import Account, UserAccounts
from ..data.errors import AccountError
from ..stacks.registry import StackRegistry
from ..stacks.runtime import address_space_limit
from ..stacks.selection import Selection, SelectionError, options_from_form, validate_selection
from ..stacks.session import SessionSpec, build_session_spec, landing_url
from .homes import LAB_PAGE_CONFIG, copy_notebooks, interpreter_of, platform_folder, share_read_only, write_new
from .picker import picker_proposals, picker_techniques

_templates = jinja2.Environment(
    loader=jinja2.PackageLoader("dass.hub", "templates"),
    autoescape=True,
)



@lru_cache(maxsize=8)
def _catalog(db_url: str):
    from ..data.catalog import Catalog

    return Catalog(db_url=db_url)


def _reject(message: str) -> web.HTTPError:
    """An HTTP 400 whose message JupyterHub shows as it is on the form and in the API."""
    err = web.HTTPError(400, "%s", message)
    err.jupyterhub_message = message
    return err


def _spawn_error(message: str) -> web.HTTPError:
    """A failed start (HTTP 500) whose message JupyterHub shows as it is: on the spawn-pending
    page, in the REST API's answer and in the progress events (``Spawn failed: …``)."""
    err = web.HTTPError(500, "%s", message)
    err.jupyterhub_message = message
    return err


def apply_dass_user_options(spawner: "DassSpawnerMixin", user_options: dict) -> None:
    """``Spawner.apply_user_options`` hook: validate and apply the choices (form and REST)."""
    try:
        selection = spawner.validate_options(user_options)
    except SelectionError as e:
        spawner.log.warning("Refused spawn for %s: %s", spawner._log_name, e)
        raise _reject(str(e)) from None
    spawner.apply_selection(selection)


class DassSpawnerMixin(Configurable):
    """Form, validation and access checks shared by every dass spawner back end."""

    max_datasets = Integer(
        8,
        help="The most datasets one session may mount. More are refused with a message.",
    ).tag(config=True)

    default_stack = Unicode(
        "",
        help="""Stack used when a spawn names none (e.g. a REST spawn with empty user_options).

        Empty: the first stack the user may use.""",
    ).tag(config=True)

    service_url = Unicode(
        help="""URL of the dass service (REST API and data gateway) as sessions reach it
        (``dass.jobs`` and ``dass.data`` use it, with the session's own hub token).

        Default: set by the platform's hub defaults to its local service
        (``c.Platform.service_port``); required when the hub runs without them.""",
    ).tag(config=True)

    catalog_url = Unicode(
        help="""SQLAlchemy URL of the dataset catalogue the spawn form reads.

        Default: ``c.Catalog.db_url`` (the same catalogue the dass service uses).""",
    ).tag(config=True)

    @default("catalog_url")
    def _default_catalog_url(self) -> str:
        from ..data.catalog import Catalog

        return Catalog(config=self.config).db_url

    # JupyterHub spawner hooks, pointed at the shared implementation
    @default("options_form")
    def _default_options_form(self):
        return type(self).render_options_form

    @default("options_from_form")
    def _default_options_from_form(self):
        return options_from_form

    @default("apply_user_options")
    def _default_apply_user_options(self):
        return apply_dass_user_options

    dass_selection: Selection | None = None

    @property
    def registry(self) -> StackRegistry:
        if getattr(self, "_dass_registry", None) is None:
            self._dass_registry = StackRegistry(config=self.config, parent=self)
        return self._dass_registry

    @property
    def catalog(self):
        return _catalog(self.catalog_url)

    @property
    def storage(self):
        from ..data.storage import Storage

        if getattr(self, "_dass_storage", None) is None:
            self._dass_storage = Storage(config=self.config, parent=self)
        return self._dass_storage

    @property
    def identity(self) -> Identity:
        user = self.user
        return Identity(
            name=user.name,
            groups=frozenset(g.name for g in user.groups),
            admin=bool(user.admin),
        )

    def today(self) -> datetime.date:
        return datetime.date.today()

    def validate_options(self, user_options) -> Selection:
        """Validate ``user_options`` for this user (raises SelectionError)."""
        return validate_selection(
            user_options,
            self.identity,
            self.registry,
            self.catalog,
            max_datasets=self.max_datasets,
            default_stack=self.default_stack,
            today=self.today(),
        )

    def apply_selection(self, selection: Selection) -> None:
        """Set the spawner's limits and start page from validated choices."""
        self.dass_selection = selection
        self.user_options = selection.to_user_options()
        self.mem_limit = selection.size.mem_bytes
        self.cpu_limit = selection.size.cpu
        self.default_url = landing_url(selection.stack)
        self.log.info(
            "Spawn choices for %s: stack=%s size=%s datasets=%s",
            self._log_name,
            selection.stack.name,
            selection.size.name,
            [d.id for d in selection.datasets],
        )

    session_spec: SessionSpec | None = None

    def build_spec(self, selection: Selection) -> SessionSpec:
        """The :class:`SessionSpec` of this spawn (pure; no credentials in it)."""
        if not self.service_url:
            raise _reject("the platform is misconfigured: c.DassSpawnerMixin.service_url is not set")
        return build_session_spec(
            selection,
            user=self.user.name,
            server_name=getattr(self, "name", "") or "",
            service_url=self.service_url,
            token=getattr(self, "api_token", "") or "",
        )

    # -- what the session's token may reach, and the audit rows of the mounts ---------------------

    @property
    def server_label(self) -> str:
        """``<user>/<server name>`` (the default server has an empty name)."""
        return f"{self.user.name}/{getattr(self, 'name', '') or ''}"

    def grant_session(self, spec: SessionSpec) -> None:
        """Let the session's token read exactly the chosen datasets through the data gateway
        (:mod:`dass.data.grants`); the hub revokes the token itself when the session stops."""
        from ..data.grants import SESSION, Grants

        token = getattr(self, "api_token", "") or ""
        if not token:
            return
        Grants(self.catalog.engine).put(
            token, kind=SESSION, owner=self.user.name, ref=getattr(self, "name", "") or "",
            read=[d.id for d in spec.datasets],
        )

    def revoke_session(self) -> None:
        from ..data.grants import SESSION, Grants

        try:
            Grants(self.catalog.engine).revoke(kind=SESSION, ref=getattr(self, "name", "") or "", owner=self.user.name)
        except Exception as e:  # noqa: BLE001 - the hub revokes the token itself anyway
            self.log.warning("Could not drop the data grant of %s: %s", self._log_name, e)

    def audit_spawn(self, datasets: list, allowed: bool, reason: str | None = None) -> None:
        """One audit row per dataset mounted at spawn (``session.mount``), or one denied row."""
        from ..data.audit import AuditLog, AuditRecord

        session = f"server {self.server_label}"
        rows = [
            AuditRecord(user=self.user.name, action="session.mount", allowed=allowed, dataset=d, session=session,
                        path=None if allowed else reason)
            for d in datasets
        ] or [AuditRecord(user=self.user.name, action="session.mount", allowed=allowed, session=session,
                          path=None if allowed else reason)]
        try:
            AuditLog(self.catalog).record(rows)
        except Exception as e:  # noqa: BLE001 - logged; the spawn goes on
            self.log.error("audit: %d rows of the spawn of %s not recorded: %s", len(rows), self._log_name, e)

    async def render_session(self, spec: SessionSpec) -> None:
        """Turn ``spec`` into this back end's settings (a process, a pod…) before it starts.

        Back ends override this; it runs in :meth:`start` after the access check, and the
        JupyterHub spawner's own ``start`` then launches what it set up.
        """

    # -- progress the user sees while the session starts (JupyterHub's Spawner.progress)
    def progress_event(self, message: str, percent: int) -> None:
        """Add an event to what the spawn-pending page and ``…/server/progress`` show."""
        events = self.__dict__.setdefault("_dass_events", [])
        events.append({"progress": percent, "message": message})
        self.log.debug("Spawn progress of %s: %s", self._log_name, message)

    async def progress(self):
        sent = 0
        events = self.__dict__.setdefault("_dass_events", [])
        while True:  # JupyterHub stops iterating once the spawn has finished or failed
            while sent < len(events):
                yield events[sent]
                sent += 1
            await asyncio.sleep(0.5)

    def start_deadline(self) -> float:
        """Seconds :meth:`start` may take before it fails with a message of its own (a little
        under ``start_timeout``, at which JupyterHub gives up with an empty message)."""
        return max(float(self.start_timeout) - 2.0, 1.0)

    async def start(self):
        self.__dict__.setdefault("_dass_events", []).clear()  # in place: a reader may hold it
        self.progress_event("Checking your choices of stack, size and datasets", 5)
        # check access again at start: the catalogue may have changed since the choice
        options = self.dass_selection.to_user_options() if self.dass_selection else self.user_options
        try:
            selection = self.validate_options(options)
        except SelectionError as e:
            wanted = options.get("datasets") if isinstance(options, dict) else None
            await asyncio.to_thread(self.audit_spawn, [str(d) for d in wanted or []][:50], False, str(e))
            raise _reject(str(e)) from None
        self.apply_selection(selection)
        self.session_spec = spec = self.build_spec(selection)
        limit = self.start_deadline()
        try:
            return await asyncio.wait_for(self._launch(spec), timeout=limit)
        except asyncio.TimeoutError:
            self.log.warning("Start of %s took more than %.0f s; giving up", self._log_name, limit)
            raise _spawn_error(
                f"the session (stack {spec.stack!r}, size {spec.size!r}) did not start within "
                f"{self.start_timeout} s; the machine may be busy: try again later, or ask the "
                "administrator to raise c.Spawner.start_timeout"
            ) from None

    async def _launch(self, spec: SessionSpec):
        n = len(spec.datasets)
        self.progress_event(f"Preparing your session: {n} dataset{'s' if n != 1 else ''} to mount", 15)
        await self.render_session(spec)
        await asyncio.to_thread(self.grant_session, spec)
        await asyncio.to_thread(self.audit_spawn, [d.id for d in spec.datasets], True)
        self.progress_event(
            f"Starting JupyterLab (stack {spec.stack}, size {spec.size}); on a busy machine this "
            "takes up to a minute",
            40,
        )
        started = await self.launch(spec)
        await self.wait_started(spec)
        return started

    async def launch(self, spec: SessionSpec):
        """Launch what :meth:`render_session` set up; returns (ip, port). By default the
        JupyterHub spawner's own ``start`` (a local process…); a back end that is not a
        JupyterHub spawner itself (containers) overrides it."""
        return await super().start()

    async def wait_started(self, spec: SessionSpec) -> None:
        """Back ends wait here until the launched session listens, raising a message that
        says why when it ended instead (JupyterHub would only notice at ``http_timeout``)."""

    async def stop(self, now=False):
        try:
            return await super().stop(now=now)
        finally:
            await asyncio.to_thread(self.revoke_session)

    def get_env(self):
        env = super().get_env()
        if self.session_spec is not None:
            env.update(self.session_spec.env)
        else:
            env["DASS_SERVICE_URL"] = self.service_url
        return env

    async def render_options_form(self) -> str:
        identity = self.identity
        stacks = self.registry.for_identity(identity)
        records, _ = self.catalog.search(identity, limit=10_000, today=self.today())
        titles = {p["id"]: p.get("title") or "" for p in self.catalog.proposals()}
        proposals = picker_proposals(records, titles)
        previous = self.user_options if isinstance(self.user_options, dict) else {}
        chosen_stack = previous.get("stack")
        if chosen_stack not in {s.name for s in stacks}:
            chosen_stack = self.default_stack or (stacks[0].name if stacks else "")
        stack = self.registry.get(chosen_stack)
        chosen_datasets = previous.get("datasets") or []
        sizes = []
        for s in stacks:
            for z in self.registry.sizes_for(s, identity):
                if z not in sizes:
                    sizes.append(z)
        return _templates.get_template("spawn_form.html").render(
            stacks=stacks,
            sizes=sizes,
            chosen_stack=chosen_stack,
            chosen_size=previous.get("size") or (stack.default_size if stack else ""),
            chosen_datasets=set(chosen_datasets) if isinstance(chosen_datasets, list) else set(),
            proposals=proposals,
            techniques=picker_techniques(proposals),
            max_datasets=self.max_datasets,
            size_note=self.size_note,
        )

    size_note = "CPU and memory limits of the chosen size apply to the whole session."


class UserHomeMixin(Configurable):
    """A session's Unix account and home, the same for every back end on one machine.

    The account (:class:`~dass.data.accounts.UserAccounts`, ``c.UserAccounts``: ``dass-alice``
    for ``alice``, created at the first spawn) and its home ``<homes_root>/<account>`` (0700, the
    user's). :meth:`prepare_user_home` mounts the chosen datasets under
    ``~/datasets/<proposal>/<dataset>``, writes the manifest for ``dass.data.datasets()`` to
    ``~/.dass/session.json`` (both folders belong to the platform: the user reads them, cannot
    change them) and copies the stack's notebooks to ``~/notebooks/<stack>/`` (the user's)
    unless the user already has them. Local processes run in that home; containers get it
    bound at the same path.
    """

    home_dir = Unicode(
        help="The session's home folder: its account's, ``<c.UserAccounts.homes_root>/<account name>`` (not a setting)."
    )

    @default("home_dir")
    def _default_home_dir(self) -> str:
        return str(self.accounts.home_of(self.user.name))

    #: the account the session runs as (set by :meth:`render_session`)
    account: Account | None = None

    @property
    def accounts(self) -> UserAccounts:
        if getattr(self, "_dass_accounts", None) is None:
            self._dass_accounts = UserAccounts(config=self.config, parent=self)
        return self._dass_accounts

    def _account(self) -> Account:
        if self.account is None:
            self.account = self.accounts.ensure(self.user.name)
        return self.account

    @property
    def manifest_path(self) -> Path:
        return Path(self.home_dir) / ".dass" / "session.json"

    def user_env(self, env):
        env.update(self._account().env())
        return env

    def _lab_config_dir(self) -> Path:
        """A Jupyter config folder disabling JupyterLab's news pop-up (it calls the internet):
        ``~/.dass/jupyter-config``, beside the manifest in the platform's part of the home."""
        return Path(self.home_dir) / ".dass" / "jupyter-config"

    def _prepare_home(self, spec: SessionSpec) -> None:
        from ..data.mount import mount_datasets, write_manifest

        account = self._account()
        home = account.home  # made 0700 and the user's by UserAccounts.ensure
        # the parts of the home the platform writes and the user only reads: never a link or a
        # folder the user made (a planted link would make the hub write elsewhere). A user who
        # swaps ~/.dass between this check and the write below can still redirect the write of
        # session.json (a race this leaves open; write_manifest should write through a folder
        # descriptor with O_NOFOLLOW, as write_new and copy_notebooks do)
        for part in (".dass", "datasets"):
            platform_folder(home / part)
        lab = self._lab_config_dir()
        platform_folder(lab)
        platform_folder(lab / "labconfig")
        write_new(lab / "labconfig", "page_config.json", LAB_PAGE_CONFIG, replace=True)
        records = list(self.dass_selection.datasets) if self.dass_selection else []
        # mounts of earlier sessions not chosen now are removed; anything a user put there stays
        entries = mount_datasets(self.storage, records, home)
        write_manifest(
            self.manifest_path,
            stack=spec.stack,
            size=spec.size,
            service_url=spec.service_url,
            entries=entries,
        )
        share_read_only(self.manifest_path, account)
        stack = self.registry.get(spec.stack)
        source = self.registry.landing_notebook_path(stack).parent
        if source.is_dir():
            copy_notebooks(sorted(source.glob("*.ipynb")), home, ("notebooks", spec.stack), account)

    async def prepare_user_home(self, spec: SessionSpec) -> Account:
        """Make the user's account (first spawn) and prepare its home for ``spec``."""
        try:
            account = await asyncio.to_thread(self.accounts.ensure, self.user.name)
        except AccountError as e:
            self.log.error("Cannot start %s: %s", self._log_name, e)
            raise _spawn_error(f"the session cannot start: {e.user_message}") from None
        self.account = account
        await asyncio.to_thread(self._prepare_home, spec)
        return account


class DassLocalSpawner(UserHomeMixin, DassSpawnerMixin, LocalProcessSpawner):
    """Sessions as local processes (the one-machine back end).

    Each session runs under its user's own Unix account (:class:`~dass.data.accounts.UserAccounts`,
    ``c.UserAccounts``: ``dass-alice`` for ``alice``, created at the first spawn), in its home
    ``<homes_root>/<account>`` (0700, the user's). At every start the chosen datasets are mounted
    under ``~/datasets/<proposal>/<dataset>``, a manifest for ``dass.data.datasets()`` is
    written to ``~/.dass/session.json`` (both folders belong to the platform: the user reads
    them, cannot change them) and the stack's notebooks are copied to ``~/notebooks/<stack>/``
    (the user's) unless the user already has them. Without root (``c.UserAccounts.enabled``
    False) every session runs as the platform's account, as JupyterHub's
    ``SimpleLocalProcessSpawner`` does: then users are kept apart only by the API.

    Size limits on one machine: memory is enforced with ``RLIMIT_AS`` (the address-space limit
    of the session process and its kernels, see ``enforce_memory_limit``); CPU is limited by
    setting thread-pool sizes (``OMP_NUM_THREADS`` and friends, plus JupyterHub's
    ``CPU_LIMIT``) to the size's CPU count — cooperative, not a hard cap; use the Kubernetes
    back end for hard CPU limits.
    """

    size_note = (
        "On this machine memory is a hard limit (address space); CPU sets the thread pools' "
        "size (numpy, torch…)."
    )

    enforce_memory_limit = Bool(
        True,
        help="""Apply the size's memory as RLIMIT_AS to the session process and its kernels.

        The address-space limit counts virtual memory, so it bites earlier than resident
        memory would; ``memory_headroom_gib`` is added to it for the server itself.""",
    ).tag(config=True)

    memory_headroom_gib = Integer(
        2,
        help="GiB of address space added to a size's memory for the Jupyter server and libraries' reservations.",
    ).tag(config=True)

    @default("cmd")
    def _default_cmd(self):
        # the platform's own environment (PATH of the hub may not include it)
        return [str(Path(sys.executable).parent / "jupyterhub-singleuser")]

    def get_args(self):
        args = super().get_args()
        # a root session needs --allow-root: only when the session itself runs as root
        if self._account().uid == 0 and "--allow-root" not in args:
            args.append("--allow-root")
        return args

    def get_env(self):
        env = super().get_env()
        env["DASS_SESSION_MANIFEST"] = str(self.manifest_path)
        env["JUPYTER_CONFIG_PATH"] = str(self._lab_config_dir())
        if self.storage.is_local:  # same machine: dass:// reads take the file handoff
            from ..data.localfiles import SOCKET_ENV, socket_name

            env[SOCKET_ENV] = socket_name(self.config)
        env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
        return env

    def make_preexec_fn(self, name):
        become = self._account().preexec()
        home = str(self._account().home)
        limit = address_space_limit(
            int(self.mem_limit or 0),
            headroom_bytes=self.memory_headroom_gib * 1024**3,
            enforce=self.enforce_memory_limit,
        )

        def preexec():
            if limit:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            become()  # groups, gid, uid of the user's account (nothing when it is the platform's)
            os.umask(0o077)  # files the session makes outside the home (/tmp) are its own too
            os.chdir(home)

        return preexec

    async def move_certs(self, paths):
        """Internal SSL: stage the certificates in ``~/.jupyterhub/jupyterhub-certs``, the user's."""
        if self._account().is_platform:
            return paths
        account = self._account()
        out_dir = account.home / ".jupyterhub" / "jupyterhub-certs"
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True, mode=0o700)
        staged = {}
        for key, move in (("keyfile", True), ("certfile", True), ("cafile", False)):
            target = out_dir / Path(paths[key]).name
            (shutil.move if move else shutil.copy)(paths[key], target)
            staged[key] = str(target)
        account.chown(account.home / ".jupyterhub", recursive=True)
        return staged

    def _check_runnable(self, account: Account, command: str, spec: SessionSpec) -> None:
        """Fail now, with the setting to fix, when the user's account cannot run the session's
        Python or enter its home (a venv made from a Python under a private home, a state
        folder below a folder others cannot enter). Runs a tiny probe as the user."""
        if account.is_platform:
            return
        interpreter = interpreter_of(command)
        probe = (
            "import importlib.util, os, sys; os.listdir(sys.argv[1]); "
            "sys.exit(0 if importlib.util.find_spec('jupyterhub') else 3)"
        )
        where = (
            f"c.StackRegistry.stacks[{spec.stack!r}]['environment']"
            if spec.environment
            else "the platform's Python environment (c.DassLocalSpawner.cmd)"
        )
        fix = (
            f"{where} must be readable and executable by every user's account: build it from a "
            "Python outside any private home (e.g. /usr/bin/python3 -m venv under /opt or /srv)"
        )
        try:
            done = subprocess.run(
                [interpreter, "-c", probe, str(account.home)],
                preexec_fn=account.preexec(),
                env={**account.env(), "PATH": "/usr/bin:/bin"},
                cwd="/",
                capture_output=True,
                text=True,
                timeout=60,
            )
        except PermissionError:
            self.log.error(
                "Cannot start %s: %s (interpreter of %s) is not executable by %s", self._log_name, interpreter, command, account.name
            )
            raise _spawn_error(f"the session cannot start: {fix}") from None
        except (OSError, subprocess.SubprocessError) as e:
            self.log.error("Cannot start %s: probe of %s as %s failed: %s", self._log_name, interpreter, account.name, e)
            raise _spawn_error(f"the session cannot start: {fix}") from None
        if done.returncode == 0:
            return
        self.log.error(
            "Cannot start %s: probe of %s as %s exited %s: %s",
            self._log_name, interpreter, account.name, done.returncode, done.stderr.strip()[-2000:],
        )
        if "PermissionError" in done.stderr and str(account.home) in done.stderr:
            raise _spawn_error(
                "the session cannot start: your home folder cannot be reached by your account; the "
                "administrator must make every folder above c.UserAccounts.homes_root enterable by "
                "all users (o+x), or move c.UserAccounts.homes_root (default: in c.Platform.state_dir)"
            )
        raise _spawn_error(f"the session cannot start: {fix} (and have jupyterhub installed)")

    async def render_session(self, spec: SessionSpec) -> None:
        """Make the user's account (first spawn), check that it can run the session's Python,
        mount the datasets into the home, write the manifest, copy the notebooks, and run the
        stack's own environment when it has one."""
        if spec.environment:  # a stack with an environment of its own
            command = Path(spec.environment) / "bin" / "jupyterhub-singleuser"
            if not os.access(command, os.X_OK):
                self.log.error(
                    "Cannot start %s: stack %s has no runnable %s", self._log_name, spec.stack, command
                )
                # the user's message names the setting, not the machine's folders
                raise _spawn_error(
                    f"the stack {spec.stack!r} cannot start on this machine: its Python "
                    "environment is missing or has no jupyterhub-singleuser; the administrator "
                    f"must install it or fix c.StackRegistry.stacks[{spec.stack!r}]['environment']"
                )
            self.cmd = [str(command)]
        try:
            account = await asyncio.to_thread(self.accounts.ensure, self.user.name)
        except AccountError as e:
            self.log.error("Cannot start %s: %s", self._log_name, e)
            raise _spawn_error(f"the session cannot start: {e.user_message}") from None
        self.account = account
        await asyncio.to_thread(self._check_runnable, account, self.cmd[0], spec)
        await self.prepare_user_home(spec)

    async def wait_started(self, spec: SessionSpec) -> None:
        """Wait until the session's server listens on its port; if its process ends first,
        fail with its exit status (its output is in the hub's log)."""
        from jupyterhub.utils import can_connect

        while not can_connect(self.ip or "127.0.0.1", self.port):
            code = self.proc.poll() if self.proc is not None else None
            if code is not None:
                self.log.error("Session of %s exited with status %s while starting", self._log_name, code)
                raise _spawn_error(
                    f"the session (stack {spec.stack!r}) ended with exit status {code} while "
                    "starting, before JupyterLab answered; the administrator finds its output "
                    "in the hub's log"
                )
            await asyncio.sleep(0.25)
