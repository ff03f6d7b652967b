"""Sessions in containers on one machine: the stack's image, run by podman as the user.

:class:`DassContainerSpawner` is a back end of :class:`~dass.hub.spawner.DassSpawnerMixin`
(select it with ``c.JupyterHub.spawner_class = "dass.hub.container.DassContainerSpawner"``).
It renders the session's :class:`~dass.stacks.session.SessionSpec` into one
:class:`~dass.stacks.containers.ContainerRun` and launches it with ``podman run`` (rootful
podman, runc, catatonit as init; see the README):

- the image is the stack's (``c.StackRegistry.stacks[<stack>]['image']``, tagged with the dass
  version when it names no tag), built by ``make images``;
- the processes run as the user's own Unix account (``--user uid:gid``, the account of
  ``c.UserAccounts``), with no capabilities and no new privileges, on a read-only image;
- the account's home is bound at its own path: the same home, read-only dataset views and
  manifest the local back end prepares (:class:`~dass.hub.spawner.UserHomeMixin`); nothing
  else of the host is bound — no repository, no state folder;
- host network: the server listens on 127.0.0.1 like a local session, and reaches the hub
  and the dass service's data gateway there with its own token;
- the size's CPUs (``--cpus``, a CFS quota), memory (``--memory`` = ``--memory-swap``) and a
  process limit are container limits enforced by the kernel's cgroups;
- the environment is the session's own (JupyterHub's ``JUPYTERHUB_*`` and the spec's
  ``DASS_*`` and thread variables): ``env_keep`` is empty, and the values reach podman through
  its environment, never its command line.
"""

from __future__ import annotations

import asyncio
import os
import shlex

from jupyterhub.spawner import Spawner
from jupyterhub.utils import can_connect, random_port
from traitlets import Bool, Integer, List, Unicode, default

from ..stacks.containers import (
    KIND_LABEL,
    Bind,
    ContainerRun,
    container_name,
    container_state,
    podman_run_argv,
)
from ..stacks.container import image_ref
from ..stacks.session import SessionSpec
from .spawner import DassSpawnerMixin, UserHomeMixin, _spawn_error

#: variables of the spawner's environment that belong to the host, not to the session
_HOST_ONLY = ("PATH",)


def _dass_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dass")
    except PackageNotFoundError:  # pragma: no cover - a source tree without metadata
        return "latest"


class DassContainerSpawner(UserHomeMixin, DassSpawnerMixin, Spawner):
    """Sessions as podman containers of the stack's image (see the module docstring)."""

    size_note = "CPU and memory of the chosen size are hard limits of your session's container."

    podman_command = List(
        Unicode(),
        ["podman"],
        help="""The podman command line (rootful podman; e.g. ``["podman", "--log-level=warn"]``).""",
    ).tag(config=True)

    image_tag = Unicode(
        help="""Tag added to a stack's image name when it names none (``dass-stack-sem`` becomes
        ``dass-stack-sem:<tag>``). Default: the installed dass version, the tag ``make images``
        gives.""",
    ).tag(config=True)

    @default("image_tag")
    def _default_image_tag(self) -> str:
        return _dass_version()

    pids_limit = Integer(
        4096,
        help="The most processes and threads one session's container may run (0: podman's default).",
    ).tag(config=True)

    read_only_image = Bool(
        True,
        help="""Run sessions on a read-only image file system (podman then gives /tmp, /var/tmp
        and /run as tmpfs); the home is the only writable folder that persists.""",
    ).tag(config=True)

    stop_grace_seconds = Integer(
        10, help="Seconds a session's container gets between SIGTERM and SIGKILL when it stops."
    ).tag(config=True)

    container_name_prefix = Unicode(
        "dass-session", help="Prefix of the session containers' names (``<prefix>-<account>[-<server>]``)."
    ).tag(config=True)

    @default("cmd")
    def _default_cmd(self):
        return ["jupyterhub-singleuser"]  # the image's, on its PATH

    @default("env_keep")
    def _default_env_keep(self):
        return []  # nothing of the hub's own environment enters a session's container

    @default("ip")
    def _default_ip(self):
        return "127.0.0.1"

    #: the container of the running session (kept in the hub's database: get_state)
    container: str = ""

    # -- state across hub restarts (JupyterHub's get_state / load_state) ------------------------
    def get_state(self):
        state = super().get_state()
        if self.container:
            state["container"] = self.container
        return state

    def load_state(self, state):
        super().load_state(state)
        self.container = state.get("container", "") if isinstance(state, dict) else ""

    def clear_state(self):
        super().clear_state()
        self.container = ""

    # -- rendering ------------------------------------------------------------------------------
    def image_of(self, spec: SessionSpec) -> str:
        if not spec.image:
            raise _spawn_error(
                f"the stack {spec.stack!r} has no container image; the administrator must set "
                f"c.StackRegistry.stacks[{spec.stack!r}]['image']"
            )
        return image_ref(spec.image, tag=self.image_tag)

    def get_args(self):
        args = super().get_args()
        if self.account is not None and self.account.uid == 0 and "--allow-root" not in args:
            args.append("--allow-root")
        return args

    def get_env(self):
        env = super().get_env()
        env.update(self._account().env())  # HOME, USER, LOGNAME, SHELL of the user's account
        for key in _HOST_ONLY:
            env.pop(key, None)
        env["DASS_SESSION_MANIFEST"] = str(self.manifest_path)
        env["JUPYTER_CONFIG_PATH"] = str(self._lab_config_dir())
        return env

    def container_run(self, spec: SessionSpec) -> ContainerRun:
        """The container of this session (pure apart from the traits it reads)."""
        account = self._account()
        return ContainerRun(
            name=container_name(self.container_name_prefix, account.name, getattr(self, "name", "") or ""),
            image=self.image_of(spec),
            argv=tuple(self.cmd) + tuple(self.get_args()),
            user=f"{account.uid}:{account.gid}",
            env=self.get_env(),
            workdir=str(account.home),
            binds=(Bind(str(account.home)),),
            cpu=spec.limits.cpu,
            mem_bytes=spec.limits.mem_bytes,
            pids_limit=self.pids_limit,
            labels={KIND_LABEL: "session", "dass.user": spec.user, "dass.server": spec.server_name, "dass.stack": spec.stack},
            read_only=self.read_only_image,
        )

    async def _podman(self, *args: str, env: dict | None = None, timeout: float = 120):
        proc = await asyncio.create_subprocess_exec(
            *self.podman_command, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=env if env is not None else dict(os.environ),
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def render_session(self, spec: SessionSpec) -> None:
        """Make the user's account and prepare its home (whether the stack's image is here is
        asked only when ``podman run`` fails: one podman call less per spawn)."""
        self.image_of(spec)  # a stack without an image fails now, with the setting to fix
        await self.prepare_user_home(spec)

    async def launch(self, spec: SessionSpec):
        if not self.port:
            self.port = random_port()
        run = self.container_run(spec)
        argv = podman_run_argv(run, podman=self.podman_command)
        self.log.info("Starting container %s of %s: %s", run.name, self._log_name, shlex.join(argv))
        code, out, err = await self._podman(*argv[len(self.podman_command):], env=run.process_env(
            {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "XDG_RUNTIME_DIR", "CONTAINERS_CONF")}
        ))
        if code != 0:
            self.log.error("podman run of %s failed (%s): %s", self._log_name, code, err.strip()[-2000:])
            if (await self._podman("image", "exists", run.image))[0] != 0:
                raise _spawn_error(
                    f"the stack {spec.stack!r} cannot start on this machine: its container image "
                    f"{run.image} is not built; the administrator must run `make images` or fix "
                    f"c.StackRegistry.stacks[{spec.stack!r}]['image'] / c.DassContainerSpawner.image_tag"
                )
            raise _spawn_error(
                f"the session's container (stack {spec.stack!r}) could not start; the administrator "
                "finds podman's message in the hub's log"
            )
        self.container = run.name
        return self.ip, self.port

    async def wait_started(self, spec: SessionSpec) -> None:
        """Wait until the session listens; fail with its exit status when the container ends."""
        while not can_connect(self.ip, self.port):
            state = await asyncio.to_thread(container_state, self.podman_command, self.container)
            if state is None or not state.get("Running"):
                code = (state or {}).get("ExitCode", "unknown")
                _, _, logs = await self._podman("logs", "--tail", "40", self.container)
                self.log.error("Container %s of %s exited with %s while starting: %s",
                               self.container, self._log_name, code, logs.strip()[-3000:])
                raise _spawn_error(
                    f"the session (stack {spec.stack!r}) ended with exit status {code} while "
                    "starting, before JupyterLab answered; the administrator finds its output "
                    "in the hub's log"
                )
            await asyncio.sleep(0.25)

    async def poll(self):
        if not self.container:
            return 0
        state = await asyncio.to_thread(container_state, self.podman_command, self.container)
        if state is None:
            return 0
        if state.get("Running"):
            return None
        return int(state.get("ExitCode") or 0)

    async def stop(self, now=False):
        try:
            if self.container:
                grace = 0 if now else self.stop_grace_seconds
                await self._podman("stop", "--ignore", "--time", str(grace), self.container,
                                   timeout=grace + 60)
                await self._podman("rm", "--force", "--ignore", self.container)
                self.log.info("Container %s of %s removed", self.container, self._log_name)
        finally:
            await asyncio.to_thread(self.revoke_session)

