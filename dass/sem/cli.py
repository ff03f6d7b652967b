"""``dass sem`` sub-commands: train, models list|register|default, classify, export-nexus.

The SEM stack's command group: ``stacks.yaml`` names :func:`register`
(``cli: dass.sem.cli:register``) and ``dass`` loads it through the stack registry, so this
module needs nothing from :mod:`dass.cli`. Only :mod:`argparse` is imported at module level,
so ``dass --help`` never loads torch. Every expected failure (bad data, unknown model,
unreadable checkpoint, ...) is a :class:`~dass.errors.DassError` (``TrainError``,
``RegistryError``, ``CheckpointError``…), which ``dass`` prints as one line on stderr with exit
status 2.

Examples
--------
::

    dass sem train memory://data --architecture resnet18 --epochs 10 --out runs/r18 \\
        --register nffa-r18 --default
    dass sem models list
    dass sem classify --model nffa-r18 a.tif b.png
    dass sem export-nexus p-2026-001/sem-upload-20260314-ab12cd34 --atom-types Si,O \
        --preparation-date 2026-03-14
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["register"]


def _registry(args):
    from dass.config import load_config
    from dass.data.storage import Storage
    from dass.sem.registry import ModelRegistry

    return ModelRegistry(Storage(config=load_config(getattr(args, "config", None))))


class _Bars:
    """A tqdm progress callback: a new bar whenever the phase (text before ':') changes."""

    def __init__(self, stream=None) -> None:
        self.bar = None
        self.phase = None
        self.stream = stream or sys.stderr

    def __call__(self, done: int, total: int, message: str) -> None:
        from tqdm import tqdm

        if message.startswith("epoch "):  # "epoch 3/14 done: ...": one line per epoch above the bar
            tqdm.write(message, file=self.stream)
            return
        phase, _, detail = message.partition(":")
        if phase != self.phase or self.bar is None or self.bar.total != total:
            self.close()
            self.phase = phase
            self.bar = tqdm(total=total, desc=phase, file=self.stream, unit="step", leave=True)
        self.bar.n = done
        if detail.strip():
            self.bar.set_postfix_str(detail.strip(), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _cmd_train(args) -> int:
    from dass.sem.train import train

    bars = _Bars() if not args.quiet else None
    try:
        result = train(
            args.data_url,
            architecture=args.architecture,
            epochs=args.epochs,
            batch_size=args.batch_size,
            input_size=args.input_size,
            lr=args.lr,
            val_fraction=args.val_fraction,
            weights=args.weights,
            pretrained=args.pretrained,
            seed=args.seed,
            patience=args.patience,
            balance=args.balance,
            augment=not args.no_augment,
            device=args.device,
            num_workers=args.workers,
            out_dir=args.out,
            name=args.name,
            notes=args.notes or "",
            progress=bars,
        )
    finally:
        if bars is not None:
            bars.close()
    print(result.summary())
    if args.register:
        entry = _registry(args).register(result.checkpoint, args.register, default=args.default,
                                         overwrite=args.overwrite)
        print(f"registered {entry['name']}{' (default)' if entry['default'] else ''}")
    return 0


def _cmd_models(args) -> int:
    import json

    registry = _registry(args)
    if args.models_sub == "list":
        models = registry.list()
        if args.json:
            print(json.dumps(models, indent=1))
            return 0
        if not models:
            print(f"no SEM models registered in {registry.folder}")
        for m in models:
            if "error" in m:
                print(f"  {m['name']:<24} ERROR {m['error']}")
                continue
            flag = "*" if m["default"] else " "
            acc = m["metrics"].get("accuracy")
            acc = f"{acc:.3f}" if isinstance(acc, float) else "?"
            data = "SYNTHETIC" if m["synthetic"] else m["trained_on"].get("url", "?")
            print(f"{flag} {m['name']:<24} {m['architecture']:<20} acc {acc}  {m['created']}  {data}")
    elif args.models_sub == "register":
        entry = registry.register(args.checkpoint, args.name, default=args.default, overwrite=args.overwrite)
        print(f"registered {entry['name']}{' (default)' if entry['default'] else ''} in {registry.folder}")
    elif args.models_sub == "default":
        registry.set_default(args.name)
        print(f"default SEM model: {args.name}")
    return 0


def _cmd_classify(args) -> int:
    import json

    from dass.sem.classify import Classifier

    if args.checkpoint:
        clf = Classifier.load(args.checkpoint, device=args.device)
    else:
        clf = _registry(args).load(args.model, device=args.device)
    outcomes = clf.classify_files(args.files, names=args.files, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({"model": clf.info.name, "synthetic": clf.info.synthetic,
                          "results": [o.to_json() for o in outcomes]}, indent=1))
    else:
        warn = " -- trained on SYNTHETIC data" if clf.info.synthetic else ""
        print(f"model {clf.info.name} ({clf.info.architecture}){warn}", file=sys.stderr)
        for o in outcomes:
            if o.ok:
                p = o.prediction
                print(f"{o.name}\t{p.category}\t{p.certainty:.3f}")
            else:
                print(f"{o.name}\tERROR\t{o.error}")
    return 0 if all(o.ok for o in outcomes) else 1


def _cmd_export_nexus(args) -> int:
    from dass.config import load_config
    from dass.data.catalog import Catalog
    from dass.data.storage import Storage
    from dass.sem.nexus import export_dataset

    config = load_config(getattr(args, "config", None))
    where = export_dataset(Storage(config=config), Catalog(config=config), args.dataset, out=args.out,
                           atom_types=args.atom_types, preparation_date=args.preparation_date)
    print(f"NXem labels of {args.dataset} written to {where}")
    return 0


def register(sub: Any) -> argparse.ArgumentParser:
    """Add the ``sem`` command group to the sub-parsers of the ``dass`` parser."""
    sem = sub.add_parser("sem", help="SEM image classification: train, manage and use models")
    ssub = sem.add_subparsers(dest="sem_sub", required=True)

    p = ssub.add_parser("train", help="train a classifier on an ImageFolder dataset (one folder per category)")
    p.add_argument("data_url", metavar="DATA_URL", help="dataset folder or fsspec URL (file://, s3://, memory://)")
    p.add_argument("--architecture", default="resnet18",
                   help="resnet18, resnet50, mobilenet_v3_small, mobilenet_v3_large, efficientnet_b0, "
                        "inception_v3 (default resnet18)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--input-size", type=int, default=None, help="square input side (default: the architecture's)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--weights", help="backbone weights to start from (state_dict file or URL; nothing is downloaded)")
    p.add_argument("--pretrained", action="store_true", help="torchvision ImageNet weights from the local torch cache")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=5, help="early stopping: epochs without improvement (0: off)")
    p.add_argument("--balance", choices=["weighted", "none"], default="weighted")
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--device", default="auto", help="auto (GPU when available), cpu, cuda")
    p.add_argument("--workers", type=int, default=0, help="threads that read the images")
    p.add_argument("--out", required=True, help="folder for model.pt, report.json, confusion_matrix.png")
    p.add_argument("--name", help="model name (default: <architecture>-<data fingerprint>)")
    p.add_argument("--notes", help="free text stored with the model")
    p.add_argument("--register", metavar="NAME", help="register the model in the repository under NAME")
    p.add_argument("--default", action="store_true", help="with --register: make it the default model")
    p.add_argument("--overwrite", action="store_true", help="with --register: replace a model of that name")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    models = ssub.add_parser("models", help="the model registry in the repository (models/)")
    msub = models.add_subparsers(dest="models_sub", required=True)
    p = msub.add_parser("list", help="registered models (* marks the default)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_models)
    p = msub.add_parser("register", help="copy a checkpoint into the registry and write its model card")
    p.add_argument("checkpoint", help="checkpoint file or URL (model.pt)")
    p.add_argument("--name", help="registry name (default: the checkpoint's)")
    p.add_argument("--default", action="store_true", help="make it the default model")
    p.add_argument("--overwrite", action="store_true", help="replace a model of that name")
    p.set_defaults(func=_cmd_models)
    p = msub.add_parser("default", help="set the default model")
    p.add_argument("name")
    p.set_defaults(func=_cmd_models)

    p = ssub.add_parser("classify", help="classify image files (exit 1 when a file could not be read)")
    p.add_argument("files", nargs="+", metavar="FILE", help="images: paths or fsspec URLs")
    p.add_argument("--model", help="registered model (default: the registry's default)")
    p.add_argument("--checkpoint", help="use this checkpoint file instead of the registry")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_classify)

    p = ssub.add_parser("export-nexus", help="export a dataset's SEM labels and classifier outputs as NeXus NXem")
    p.add_argument("dataset", metavar="DATASET", help="<proposal>/<name>")
    p.add_argument("--out", help="file or fsspec URL to write (default: labels.nxs in the dataset folder)")
    p.add_argument("--atom-types", help="elements in the sample, comma-separated (NXem requires them; "
                                        "default: the dataset's domain.sample.atom_types)")
    p.add_argument("--preparation-date", help="ISO 8601 date the specimen was prepared (NXem requires it; "
                                              "default: the dataset's domain.sample.preparation_date)")
    p.set_defaults(func=_cmd_export_nexus)
    return sem

