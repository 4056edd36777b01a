"""``sslinspect``: the command line, a thin argparse layer over :mod:`sslinspect.api`.

Exit codes: 0 success, 1 failure (one line on stderr naming the file and the problem; ``--debug`` adds the
traceback), 2 usage error, 130 cancelled. With ``--events jsonl`` stdout carries only JSON-line events (the GUI's
worker protocol); human-readable messages go to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sslinspect import __version__
from sslinspect.cancel import FileToken
from sslinspect.config import DEVICES, PRECISIONS
from sslinspect.errors import Cancelled, ConfigError, SSLInspectError
from sslinspect.events import Event, JsonlReporter, LoggingReporter, Progress, Reporter, TeeReporter

log = logging.getLogger("sslinspect")

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


class UsageError(Exception):
    """A command-line usage problem (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog}: {message}")


class ProgressBar:
    """Progress events as a one-line bar on a terminal, or a line every 10 % when not a terminal."""

    def __init__(self, stream: Any = None) -> None:
        """Draw on ``stream`` (stderr by default)."""
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        """Draw ``Progress`` events; ignore the rest."""
        if not isinstance(event, Progress) or event.total <= 0:
            return
        frac = min(1.0, event.step / event.total)
        if self.tty:
            bar = "#" * int(frac * 30)
            self.stream.write(f"\r{event.stage:<9} [{bar:<30}] {100 * frac:5.1f}% {event.message[:60]:<60}")
            if event.step >= event.total:
                self.stream.write("\n")
            self.stream.flush()
            return
        decile = int(frac * 10)
        if decile > self._last.get(event.stage, -1):
            self._last[event.stage] = decile
            log.info("%s %3.0f%% %s", event.stage, 100 * frac, event.message)


def _reporter(args: argparse.Namespace) -> Reporter:
    if getattr(args, "events", None) == "jsonl":
        return JsonlReporter(sys.stdout)
    return TeeReporter(LoggingReporter(log, progress=False), ProgressBar())


def _token(args: argparse.Namespace) -> FileToken:
    """Cancellation via ``--control DIR`` files and SIGINT/SIGTERM (the loop saves a checkpoint first)."""
    control = getattr(args, "control", None)
    return FileToken(Path(control) if control else Path("/nonexistent-sslinspect-control"))


@contextlib.contextmanager
def _signals_cancel(token: FileToken) -> Iterator[None]:
    """First Ctrl-C / SIGTERM asks the job to stop cleanly; a second Ctrl-C interrupts at once."""

    def handler(signum: int, frame: object) -> None:
        if token.is_cancelled():
            raise KeyboardInterrupt
        log.warning("stopping after the current step (press Ctrl-C again to abort)")
        token.cancel()

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for s in old:
            signal.signal(s, handler)
    except ValueError:  # not in the main thread (embedded use): keep default handling
        old = {}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _configs(args: argparse.Namespace) -> dict[str, Any]:
    from sslinspect.configio import load_sections

    return load_sections(
        Path(args.config) if getattr(args, "config", None) else None, list(getattr(args, "set", []) or [])
    )


def _apply(cfg: Any, section: str, args: argparse.Namespace, mapping: dict[str, str]) -> Any:
    """Apply explicit command-line options on top of config-file/``--set`` values."""
    from sslinspect.configio import apply_override

    for opt, field_name in mapping.items():
        value = getattr(args, opt, None)
        if value is not None:
            cfg = apply_override(cfg, field_name, str(value))
    return cfg


# -- commands -------------------------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    from sslinspect import api

    report = _reporter(args)
    cfg = _configs(args)["data"]  # validate options before anything is created
    project = api.create_project(Path(args.project), images=[Path(p) for p in args.images or []], name=args.name)
    return _scan_and_summarise(project, cfg, args, report)


def cmd_scan(args: argparse.Namespace) -> int:
    from sslinspect import api

    cfg = _configs(args)["data"]
    project = api.open_project(Path(args.project))
    for folder in args.add_images or []:
        project.add_source(Path(folder))
    return _scan_and_summarise(project, cfg, args, _reporter(args))


def _scan_and_summarise(project: Any, cfg: Any, args: argparse.Namespace, report: Reporter) -> int:
    from sslinspect import api

    result = api.scan_images(project, cfg, report=report, cancel=_token(args))
    _say(
        args,
        f"{project.root}: {result.ok} readable images ({result.new} new, {result.unchanged} unchanged, "
        f"{result.missing} missing, {result.duplicates} duplicates), {result.failed} unreadable",
    )
    return EXIT_OK


def cmd_labels_import(args: argparse.Namespace) -> int:
    from sslinspect import api

    project = api.open_project(Path(args.project))
    result = api.import_labels(project, Path(args.csv))
    for problem in result.problems:
        log.warning("%s", problem)
    counts = ", ".join(f"{k}: {v}" for k, v in result.counts.items()) or "none"
    _say(
        args,
        f"imported {result.imported} label(s) ({result.unchanged} unchanged, {len(result.problems)} problem(s)); "
        f"labels per class: {counts}",
    )
    return EXIT_FAIL if result.problems and not result.imported and not result.unchanged else EXIT_OK


def cmd_pretrain(args: argparse.Namespace) -> int:
    from sslinspect import api

    if (args.nproc_per_node or 1) > 1 and "LOCAL_RANK" not in os.environ:
        return _exec_torchrun(args)
    worker_rank = int(os.environ.get("RANK", "0"))  # under torchrun: only rank 0 speaks
    if worker_rank:
        logging.getLogger("sslinspect").setLevel(logging.WARNING)
    cfg = _apply(
        _configs(args)["pretrain"],
        "pretrain",
        args,
        {
            "method": "method",
            "backbone": "backbone",
            "epochs": "epochs",
            "max_minutes": "max_minutes",
            "image_size": "image_size",
            "batch_size": "batch_size",
            "device": "device",
            "seed": "seed",
            "threads": "threads",
            "weights": "weights",
        },
    )
    project = api.open_project(Path(args.project))
    token = _token(args)
    with _signals_cancel(token):
        result = api.pretrain(project, cfg, resume=args.resume, report=_reporter(args), cancel=token)
    if worker_rank:
        return EXIT_OK
    _say(
        args,
        f"pretrained {result.epochs_done} epoch(s) in {result.seconds:.0f} s on {result.device} "
        f"({result.images} images, final loss {result.final_loss:.4f}); checkpoint {result.checkpoint}",
    )
    return EXIT_OK


def _exec_torchrun(args: argparse.Namespace) -> int:
    """``pretrain --nproc-per-node N``: become ``torchrun`` running this same command in N processes."""
    import shlex

    from sslinspect.train.distributed import torchrun_command

    cmd = torchrun_command(args.raw_argv, args.nproc_per_node)
    log.info("launching %d processes: %s", args.nproc_per_node, shlex.join(cmd))
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "posix":  # exec: signals from the GUI or a terminal reach torchrun, which stops its workers
        os.execv(cmd[0], cmd)
    return subprocess.call(cmd)  # pragma: no cover - Windows has no exec


def cmd_train(args: argparse.Namespace) -> int:
    from sslinspect import api

    cfg = _apply(_configs(args)["train"], "train", args, {"classifier": "classifier", "device": "device"})
    project = api.open_project(Path(args.project))
    token = _token(args)
    with _signals_cancel(token):
        r = api.fit_fewshot(project, cfg, report=_reporter(args), cancel=token)
    cv = f"{r.cv_balanced_accuracy:.3f}" if r.cv_balanced_accuracy is not None else "n/a (label ≥2 classes)"
    auroc = f"{r.anomaly_auroc:.3f}" if r.anomaly_auroc is not None else "n/a"
    _say(
        args,
        f"classes {', '.join(r.classes)}; {r.classifier} classifier, cross-validated balanced accuracy {cv}; "
        f"anomaly threshold {r.threshold:.4f} (AUROC on labels {auroc}); {r.labelled} labels, "
        f"memory bank {r.bank_size}; run {r.run_dir}",
    )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from sslinspect import api

    cfg = _apply(_configs(args)["export"], "export", args, {"precision": "precision"})
    project = api.open_project(Path(args.project))
    token = _token(args)
    with _signals_cancel(token):
        r = api.export_onnx(project, Path(args.out) if args.out else None, cfg, report=_reporter(args), cancel=token)
    _say(
        args,
        f"wrote {r.path} ({r.size_bytes / 2**20:.1f} MB, {r.precision}) and {Path(r.sidecar).name}; parity "
        f"on {r.parity.images} real images: max |Δ| {r.parity.max_abs_diff:.1e} "
        f"≤ {r.parity.atol:g} ✓",
    )
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from sslinspect import api

    r = api.predict(
        Path(args.model),
        args.inputs,
        out=Path(args.out) if args.out else None,
        device=args.device,
        batch_size=args.batch_size,
        threshold=args.threshold,
        report=_reporter(args),
    )
    for path, reason in r.failed:
        print(f"error: {path}: {reason}", file=sys.stderr)
    _say(
        args,
        f"{r.total - len(r.failed)} image(s) scored on {r.provider}: {r.defects} defect(s)"
        + (f", {len(r.failed)} unreadable" if r.failed else "")
        + (f"; wrote {r.out}" if r.out else ""),
    )
    return EXIT_FAIL if r.failed else EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from sslinspect import api

    mapping = {"protocol": "protocol", "folds": "folds", "device": "device"}
    cfg = _apply(_configs(args)["evaluate"], "evaluate", args, mapping)
    project = api.open_project(Path(args.project))
    token = _token(args)
    with _signals_cancel(token):
        r = api.evaluate(project, cfg, run=args.run, report=_reporter(args), cancel=token)
    if getattr(args, "events", None) != "jsonl":
        print(json.dumps(asdict(r), indent=2, ensure_ascii=False))
    _say(
        args,
        f"{r.protocol} on {r.labelled} labels ({len(r.classes)} classes, {r.folds}-fold CV) of {r.pretrain_run}: "
        f"balanced accuracy {r.balanced_accuracy:.3f}, accuracy {r.accuracy:.3f}; metrics in {r.run_dir}",
    )
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from sslinspect import api
    from sslinspect.evaluate.compare import format_table

    rows = api.compare(api.open_project(Path(args.project)))
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2, ensure_ascii=False))
    elif rows:
        print(format_table(rows))
    else:
        print(f"{args.project}: no pretraining runs yet")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from sslinspect.demo.run import format_table, run_demo

    token = _token(args)
    with _signals_cancel(token):
        result = run_demo(
            Path(args.out),
            quick=args.quick,
            product=args.product,
            device=args.device,
            report=_reporter(args),
            cancel=token,
        )
    if getattr(args, "events", None) == "jsonl":
        return EXIT_OK
    print(format_table(result))
    print(f"project: {result.project}\nmodel:   {result.model}\npredictions: {result.predictions}")
    return EXIT_OK


def _say(args: argparse.Namespace, message: str) -> None:
    """The command's one-line summary: stdout normally, a log line in events mode (stdout is JSON only)."""
    if getattr(args, "events", None) == "jsonl":
        log.info("%s", message)
    else:
        print(message)


# -- parser ---------------------------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, *, config: bool = True, job: bool = True) -> None:
    if config:
        p.add_argument("--config", metavar="FILE.json", help="config file with sections data/pretrain/train/export")
        p.add_argument(
            "--set",
            action="append",
            metavar="SECTION.FIELD=VALUE",
            help="override one config value, e.g. --set pretrain.temperature=0.1 (repeatable)",
        )
    if job:
        p.add_argument("--events", choices=["jsonl"], help="write events as JSON lines to stdout (for the GUI)")
        p.add_argument("--control", metavar="DIR", help="cancel when DIR/cancel exists, pause while DIR/pause exists")


def _positive_int(text: str) -> int:
    """argparse type: an integer ≥ 1 (a usage error otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def _finite_float(text: str) -> float:
    """argparse type: a finite number (``nan``/``inf`` are usage errors)."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``sslinspect`` argument parser."""
    from sslinspect.backbones import BACKBONES
    from sslinspect.methods import METHODS

    parser = _Parser(
        prog="sslinspect",
        description="SSL Inspect: unlabeled images → self-supervised "
        "pretraining → few-shot defect classifier + anomaly score → ONNX for the line.",
    )
    parser.add_argument("--version", action="version", version=f"sslinspect {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("init", help="create a project from image folders and scan them")
    p.add_argument("project", help="project folder to create (e.g. line3.sslproj)")
    p.add_argument("--images", action="append", metavar="DIR", help="folder of images (repeatable; recursive)")
    p.add_argument("--name", help="display name (default: the folder name)")
    _common(p)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("scan", help="rescan a project's folders (new files are added, labels are kept)")
    p.add_argument("project")
    p.add_argument("--add-images", action="append", metavar="DIR", help="add another folder first (repeatable)")
    _common(p)
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("labels", help="manage labels")
    lsub = p.add_subparsers(dest="labels_command", metavar="ACTION", parser_class=_Parser, required=True)
    q = lsub.add_parser("import", help="import a path,label CSV ('good' is the normal class)")
    q.add_argument("project")
    q.add_argument("csv", help="CSV with columns path,label; paths relative to the CSV's folder or absolute")
    q.set_defaults(func=cmd_labels_import)

    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining on the project's images",
        description="Methods: " + "; ".join(f"{m.name} — {m.summary}" for m in METHODS.values()),
    )
    p.add_argument("project")
    p.add_argument("--method", choices=list(METHODS), help="self-supervised method (default simclr)")
    p.add_argument("--backbone", choices=list(BACKBONES), help="backbone trained from scratch (default resnet18)")
    p.add_argument("--epochs", type=int, help="passes over the images (default 50)")
    p.add_argument("--max-minutes", type=float, help="stop after this many minutes, checkpoint kept")
    p.add_argument("--image-size", type=int, help="square input size in px (default 224)")
    p.add_argument("--batch-size", type=int, help="images per step (default 64)")
    p.add_argument("--device", choices=DEVICES, help="auto (default): the GPU when there is one")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--threads", type=int, help="CPU threads for torch (0 = default)")
    p.add_argument("--weights", metavar="FILE", help="start from a local backbone weights file (state_dict)")
    p.add_argument("--resume", action="store_true", help="continue the latest run from its last checkpoint")
    p.add_argument(
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="data-parallel over N processes (one per GPU) via torchrun; --batch-size stays the global batch",
    )
    _common(p)
    p.set_defaults(func=cmd_pretrain)

    p = sub.add_parser("train", help="few-shot classifier + anomaly score from the latest pretraining run")
    p.add_argument("project")
    p.add_argument("--classifier", choices=["auto", "prototype", "logistic"], help="default auto (cross-validated)")
    p.add_argument("--device", choices=DEVICES)
    _common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export the trained model to ONNX (parity-checked)")
    p.add_argument("project")
    p.add_argument(
        "--out",
        metavar="FILE.onnx",
        help="output file (default PROJECT/exports/model/model.onnx); a FILE.json sidecar is written beside it",
    )
    p.add_argument("--precision", choices=PRECISIONS, help="default fp32")
    _common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("predict", help="score images with an exported model (ONNX Runtime; no torch needed)")
    p.add_argument("model", help="exported .onnx file")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (recursive) or glob patterns")
    p.add_argument("--out", metavar="FILE.csv", help="CSV: path,label,confidence,anomaly_score,is_defect,p_<class>...")
    p.add_argument("--device", choices=DEVICES, default="auto", help="auto (default): CUDA provider when available")
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--threshold", type=_finite_float, help="override the model's anomaly threshold")
    _common(p, config=False)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="score a pretraining run on the project's labels (cross-validated)")
    p.add_argument("project")
    p.add_argument("--run", metavar="RUN", help="pretraining run id or folder (default: the latest)")
    p.add_argument("--protocol", choices=["knn", "linear", "finetune"], help="default knn")
    p.add_argument("--folds", type=int, help="cross-validation folds (default 5, capped by the smallest class)")
    p.add_argument("--device", choices=DEVICES)
    _common(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("compare", help="table of all pretraining runs: loss, health, k-NN and evaluations")
    p.add_argument("project")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("demo", help="run the whole pipeline on built-in demo data and print metrics")
    p.add_argument("--quick", action="store_true", help="small settings: a few minutes on a 2-core CPU")
    p.add_argument(
        "--out", default="demo-output", metavar="DIR", help="where data and project go (default demo-output)"
    )
    p.add_argument("--product", default="metal", choices=["metal", "fabric"], help="which demo product (default metal)")
    p.add_argument("--device", choices=DEVICES, default="auto")
    _common(p, config=False)
    p.set_defaults(func=cmd_demo)
    return parser


def _setup_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("sslinspect")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    _setup_logging(args)
    args.raw_argv = list(argv) if argv is not None else sys.argv[1:]  # `pretrain --nproc-per-node` re-runs it
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Cancelled as exc:
        print(f"cancelled: {exc}", file=sys.stderr)
        return EXIT_CANCELLED
    except SSLInspectError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"error: internal error {type(exc).__name__}: {first} (run with --debug for details)", file=sys.stderr)
        return EXIT_FAIL
