"""``dass jobs …``: headless notebook jobs, through the dass service's REST API."""

from __future__ import annotations

import json
import sys
from typing import Any

from .errors import CLIError


def service_url(args) -> str | None:
    """The dass service this command talks to, by the one rule of :mod:`dass.config`:
    ``--url``; else, when a configuration file is in force (``--config`` / ``$DASS_CONFIG``),
    the platform that file starts (:attr:`dass.platform.Platform.service_url`); else
    ``None``, and the client takes ``$DASS_URL`` or ``http://127.0.0.1:8000/services/dass/``."""
    if args.url:
        return args.url
    from ..config import config_path, load_config
    from ..platform import Platform

    path = config_path(args.config)
    if path is None:
        return None
    return Platform(config=load_config(path)).service_url


def _jobs_client(args):
    from ..jobs.client import JobsClient

    return JobsClient(url=service_url(args), token=args.token)


def _parse_params(pairs: list[str], files: list[str]) -> dict:
    params: dict = {}
    for path in files or []:
        try:
            with open(path) as f:
                loaded = json.load(f)
        except (OSError, ValueError) as e:
            raise CLIError(f"--param-file {path}: {e}") from None
        if not isinstance(loaded, dict):
            raise CLIError(f"--param-file {path}: must hold a JSON object of parameter values")
        params.update(loaded)
    for pair in pairs or []:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise CLIError(f"-p {pair!r}: write parameters as name=value")
        try:
            params[name] = json.loads(raw)
        except ValueError:
            params[name] = raw  # a plain string
    return params


def _parse_sweep(items: list[str]) -> dict[str, list]:
    """``--sweep NAME=V1,V2,…`` (repeatable) → ``{NAME: [V1, V2, …]}``: each value as JSON, else
    text; a JSON list (``NAME=[1, "a,b"]``) for values holding commas."""
    sweep: dict[str, list] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name:
            raise CLIError(f"--sweep {item!r}: write NAME=VALUE,VALUE,... (or NAME=[JSON list])")
        if name in sweep:
            raise CLIError(f"--sweep {name} is given twice; list all its values in one --sweep")
        if raw.lstrip().startswith("["):
            try:
                values = json.loads(raw)
            except ValueError as e:
                raise CLIError(f"--sweep {name}: not a JSON list: {e}") from None
        else:
            values = [_value(part) for part in raw.split(",")] if raw else []
        sweep[name] = values
    return sweep


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text  # a plain string


def _load_sets(path: str | None) -> list | None:
    if path is None:
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CLIError(f"--param-sets {path}: {e}") from None


def _print_sweep(sweep: dict) -> None:
    from ..jobs.client import sweep_counts

    print(f"{sweep['id']}  {sweep_counts(sweep)}  {sweep['notebook']}")


def _print_job(job: dict) -> None:
    reason = f"  ({job['reason']})" if job.get("reason") else ""
    print(f"{job['id']}  {job['status']:<11} {job['stack']:<5} {job['notebook']}{reason}")


def _cmd_jobs(args) -> int:
    # a refusal of the service (JobsError, a DassError) ends the command as
    # "dass: error: <message> (HTTP <status>)" with exit status 2
    from ..jobs.client import _default_report

    c = _jobs_client(args)
    if args.sub == "submit" and (args.sweep or args.param_sets):
        from ..jobs.client import _sweep_report

        sweep = c.submit_sweep(
            args.notebook,
            _parse_params(args.param, args.param_file),
            sweep=_parse_sweep(args.sweep) or None,
            parameter_sets=_load_sets(args.param_sets),
            datasets=args.dataset or None,
            stack=args.stack,
            size=args.size,
            timeout=args.timeout,
            idempotency_key=args.idempotency_key,
        )
        print(f"{sweep['id']}  {sweep['count']} jobs")
        if args.wait:
            sweep = c.wait_sweep(sweep["id"], report=_sweep_report)
            for job in c.list(sweep=sweep["id"], limit=500):
                _print_job(job)
            return 0 if sweep["counts"]["COMPLETED"] == sweep["count"] else 1
    elif args.sub == "submit":
        job = c.submit(
            args.notebook,
            _parse_params(args.param, args.param_file),
            datasets=args.dataset or None,
            stack=args.stack,
            size=args.size,
            timeout=args.timeout,
            idempotency_key=args.idempotency_key,
        )
        print(job["id"])
        if args.wait:
            for text in c.follow_log(job["id"]):
                sys.stderr.write(text)
            job = c.wait(job["id"], report=_default_report)
            return 0 if job["status"] == "COMPLETED" else 1
    elif args.sub == "list":
        for job in c.list(status=args.status, sweep=args.sweep):
            _print_job(job)
    elif args.sub == "sweeps":
        for sweep in c.list_sweeps():
            _print_sweep(sweep)
    elif args.sub == "sweep":
        _print_sweep(c.get_sweep(args.id))
        for job in c.list(sweep=args.id, limit=500):
            _print_job(job)
    elif args.sub == "show":
        print(json.dumps(c.get(args.id), indent=1))
    elif args.sub == "log":
        if args.follow:
            for text in c.follow_log(args.id):
                sys.stdout.write(text)
                sys.stdout.flush()
        else:
            sys.stdout.write(c.log(args.id)[0])
    elif args.sub == "cancel" and args.sweep:
        _print_sweep(c.cancel_sweep(args.id))
    elif args.sub == "cancel":
        _print_job(c.cancel(args.id))
    elif args.sub == "outputs":
        for o in c.outputs(args.id):
            print(f"{o['size']:>12}  {o['sha256']}  {o['path']}")
    elif args.sub == "download":
        target = c.download(args.id, args.path, args.output or args.path.rsplit("/", 1)[-1])
        print(target)
    elif args.sub == "verify":
        report = c.verify(args.id)
        for problem in report["problems"]:
            print(f"MISMATCH {problem}")
        print(f"{'ok' if report['ok'] else 'FAILED'}: {report['checked']} files checked, "
              f"{len(report['problems'])} problem(s)")
        return 0 if report["ok"] else 1
    return 0


def register(sub: Any) -> None:
    """Add ``jobs submit|list|show|sweeps|sweep|log|cancel|outputs|download|verify``."""
    jobs = sub.add_parser("jobs", help="headless notebook jobs (through the dass service)")
    jobs.add_argument("--url", help="dass service URL (default: the platform of the config file, "
                                    "<c.Platform.ip:port>/services/dass/; without a config file $DASS_URL, "
                                    "else http://127.0.0.1:8000/services/dass/)")
    jobs.add_argument("--token", help="hub API token (default $DASS_TOKEN or $JUPYTERHUB_API_TOKEN)")
    jsub = jobs.add_subparsers(dest="sub", required=True)
    p = jsub.add_parser("submit", help="submit a notebook job")
    p.add_argument("notebook", help="a service notebook (sem/service/x.ipynb) or a local .ipynb file to upload")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE", help="a parameter (value as JSON, else text)")
    p.add_argument("--param-file", action="append", metavar="FILE", help="a JSON file of parameter values")
    p.add_argument("-d", "--dataset", action="append", metavar="PROPOSAL/DATASET", help="an input dataset to mount")
    p.add_argument("--stack")
    p.add_argument("--size")
    p.add_argument("--timeout", type=int, help="seconds the job may run")
    p.add_argument("--idempotency-key", help="submitting the same key again returns the first job")
    p.add_argument("--sweep", action="append", metavar="NAME=V1,V2,...",
                   help="sweep a parameter over these values (each as JSON, else text; NAME=[JSON list] for "
                        "values with commas); repeat for more parameters: one job per combination, "
                        "submitted at once as one sweep")
    p.add_argument("--param-sets", metavar="FILE",
                   help="a JSON file holding a list of parameter objects: one job for each (with --sweep: "
                        "for each combination too)")
    p.add_argument("--wait", action="store_true",
                   help="follow the log until the job ends (a sweep: its counts per status until all have "
                        "ended); exit 1 unless COMPLETED")
    p = jsub.add_parser("list", help="your jobs (admins: all)")
    p.add_argument("--status", help="comma-separated statuses, e.g. QUEUED,IN_PROGRESS")
    p.add_argument("--sweep", metavar="SWEEP_ID", help="only the jobs of this sweep, in its order")
    jsub.add_parser("sweeps", help="your sweeps (admins: all), newest first, with their counts per status")
    for name, text in (("show", "a job as JSON"), ("outputs", "a job's result files"),
                       ("verify", "re-check the checksums of a job's inputs and outputs"),
                       ("sweep", "a sweep: its counts per status and its jobs")):
        p = jsub.add_parser(name, help=text)
        p.add_argument("id")
    p = jsub.add_parser("cancel", help="cancel a job (with --sweep: every unfinished job of a sweep)")
    p.add_argument("id")
    p.add_argument("--sweep", action="store_true", help="ID is a sweep's: cancel all its unfinished jobs")
    p = jsub.add_parser("log", help="a job's log")
    p.add_argument("id")
    p.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    p = jsub.add_parser("download", help="download one result file")
    p.add_argument("id")
    p.add_argument("path", help="the output's path, as `dass jobs outputs` lists it")
    p.add_argument("-o", "--output", help="local file (default: the output's name)")
    jobs.set_defaults(func=_cmd_jobs)
