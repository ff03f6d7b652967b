"""A deployer's own stack with a part in the dass service, the way a third-party stack adds one:
named in ``c.StackRegistry.stacks`` as ``web: tests.service.toy_stack:ToyWeb``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitlets import Unicode
from traitlets.config import LoggingConfigurable

from dass.data.errors import DassDataError
from dass.errors import DassError
from dass.service.extensions import NavLink, ServiceExtension
from dass.service.handlers import BaseHandler
from dass.service.pages import PageHandler


class ToyBusy(DassError, status=409):
    """The toy is busy; the text names a place the caller must not see."""

    public_message = "the toy is busy; try again in a minute"


class ToySettings(LoggingConfigurable):
    """Settings of the toy stack's service part."""

    greeting = Unicode("hello", help="What the toy banner says.").tag(config=True)


class BusyHandler(BaseHandler):
    def get(self) -> None:
        raise ToyBusy("lock /srv/secret/toy.lock is held by pid 4242")


class InputHandler(BaseHandler):
    def get(self) -> None:
        raise DassError("frame 7 of /srv/secret/scan.h5 has 3 axes", status=422,
                        user_message="frame 7 has 3 axes; send 2-D frames")


class CatalogueDownHandler(BaseHandler):
    def get(self) -> None:
        raise DassDataError("sqlite:////srv/secret/catalog.sqlite: database is locked")


class BugHandler(BaseHandler):
    def get(self) -> None:
        raise KeyError("/srv/secret")  # not a DassError: a 500 whose traceback goes to the log


class ToyPage(PageHandler):
    def get(self) -> None:
        self.render_page("toy.html", count=self.settings["toy_state"]["pages"])
        self.settings["toy_state"]["pages"] += 1


class ToyWeb(ServiceExtension):
    classes = [ToySettings]
    #: what the hooks saw, for the tests (one service per test module)
    events: list[str] = []

    def __init__(self, service: Any) -> None:
        super().__init__(service)
        self.toy = ToySettings(parent=service)
        self.state = {"pages": 0}

    def handlers(self):
        return [("api/toy/busy", BusyHandler), ("api/toy/input", InputHandler),
                ("api/toy/down", CatalogueDownHandler), ("api/toy/bug", BugHandler), ("toy", ToyPage)]

    def nav_links(self):
        return [NavLink("toy", "Toy page", "nav-toy")]

    def template_paths(self):
        return [str(Path(__file__).with_name("toy_templates"))]

    def header_templates(self):
        return ["toy_header.html"]

    def template_vars(self, handler):
        return {"toy_greeting": f"{self.toy.greeting}, {handler.identity.name if handler.identity else 'stranger'}"}

    def settings(self):
        return {"toy_state": self.state}

    def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")


# -- the command line: ``cli: tests.service.toy_stack:register`` --------------------------------


def _cmd_toy(args) -> int:
    from dass.config import load_config
    from dass.data.storage import Storage

    if args.fail:
        raise ToyBusy("lock /srv/secret/toy.lock is held by pid 4242")
    print(f"toy repository: {Storage(config=load_config(args.config)).url}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("toy", help="the toy stack's command")
    p.add_argument("--fail", action="store_true")
    p.set_defaults(func=_cmd_toy)
