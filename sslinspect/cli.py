"""``sslinspect``: the command line, a thin argparse layer over :mod:`sslinspect.api`.

Exit codes: 0 success, 1 failure (one line on stderr naming the file and the problem; ``--debug`` adds the
traceback), 2 usage error, 130 cancelled. With ``--events jsonl`` stdout carries only JSON-line events (the GUI's
worker protocol); human-readable messages go to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from sslinspect import __version__
from sslinspect.catalog import METHODS
from sslinspect.commands import (
    EXIT_CANCELLED,
    EXIT_FAIL,
    EXIT_USAGE,
    cmd_compare,
    cmd_demo,
    cmd_evaluate,
    cmd_export,
    cmd_fit,
    cmd_init,
    cmd_labels_import,
    cmd_predict,
    cmd_pretrain,
    cmd_report,
    cmd_scan,
    cmd_threshold,
)
from sslinspect.config import DEVICES, EvaluateConfig, ExportConfig, FewShotConfig, PretrainConfig
from sslinspect.errors import Cancelled, ConfigError, SSLInspectError

log = logging.getLogger("sslinspect")


class UsageError(Exception):
    """A command-line usage problem (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog}: {message}")


# -- parser ---------------------------------------------------------------------------------------------------------
def _common(p: argparse.ArgumentParser, *, config: bool = True, job: bool = True) -> None:
    if config:
        p.add_argument(
            "--config",
            metavar="FILE.json",
            help="config file with sections data/pretrain/fit/export/evaluate (fit was train)",
        )
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


def _positive_float(text: str) -> float:
    """argparse type: a finite number > 0 (``--poll 0`` would busy-loop)."""
    value = _finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    """argparse type: a finite number ≥ 0."""
    value = _finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be ≥ 0, got {text!r}")
    return value


def _config_option(p: argparse.ArgumentParser, cls: type, name: str, *, more: str = "", **kw: Any) -> argparse.Action:
    """``--name`` for config field ``cls.name``: type, choices, help and the default shown come from the field.

    The option's own default stays None, so a value from ``--config``/``--set`` is only overridden when the option
    is given (``commands._apply``).
    """
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    meta = f.metadata
    if "choices" in meta:
        kw.setdefault("choices", list(meta["choices"]))
    elif isinstance(f.default, float):
        kw.setdefault("type", float)
    elif isinstance(f.default, int) and not isinstance(f.default, bool):
        kw.setdefault("type", int)
    text = " ".join(x for x in (meta["help"], more) if x)
    if f.default not in ("", None):
        text += f" Default: {f.default}." if text.endswith(".") else f" (default {f.default})"
    kw.setdefault("help", text.replace("%", "%%"))  # argparse %-formats help strings
    return p.add_argument("--" + name.replace("_", "-"), **kw)


def _add_project_commands(sub: Any) -> None:
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


def _add_pretrain(sub: Any) -> None:
    p = sub.add_parser(
        "pretrain",
        help="self-supervised pretraining on the project's images",
        description="Methods: " + "; ".join(f"{m.name} — {m.summary}" for m in METHODS.values()),
    )
    p.add_argument("project")
    for name in ("method", "backbone", "epochs", "max_minutes", "image_size", "batch_size", "device", "seed"):
        _config_option(p, PretrainConfig, name)
    _config_option(p, PretrainConfig, "threads")
    _config_option(p, PretrainConfig, "weights", metavar="FILE")
    p.add_argument("--resume", action="store_true", help="continue the latest run from its last checkpoint")
    p.add_argument(
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="data-parallel over N processes (one per GPU) via torchrun; --batch-size stays the global batch",
    )
    _common(p)
    p.set_defaults(func=cmd_pretrain)


def _add_model_commands(sub: Any) -> None:
    p = sub.add_parser(
        "fit",
        aliases=["train"],  # the name before 0.2; scripts and the GUI's worker still call it
        help="fit the few-shot classifier + anomaly score on the latest pretraining run (alias: train)",
    )
    p.add_argument("project")
    _config_option(p, FewShotConfig, "classifier")
    _config_option(p, FewShotConfig, "device")
    p.add_argument(
        "--allow-running",
        action="store_true",
        help="use the latest checkpoint of a pretraining run that is still running (refused otherwise)",
    )
    _common(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("export", help="export the trained model to ONNX (parity-checked)")
    p.add_argument("project")
    p.add_argument(
        "--out",
        metavar="FILE.onnx",
        help="output file (default PROJECT/exports/model/model.onnx); a FILE.json sidecar is written beside it",
    )
    more = "fp16/int8 are checked against fp32 on the project's images, refused beyond export.tolerance unless --force."
    _config_option(p, ExportConfig, "precision", more=more)
    p.add_argument("--force", action="store_true", help="write an fp16/int8 model even if it exceeds the tolerance")
    _config_option(p, ExportConfig, "format")
    _common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("threshold", help="set the NG (and review) threshold used by the next export")
    p.add_argument("project")
    p.add_argument("value", type=_finite_float, help="NG threshold on the anomaly score (see metrics.json curves)")
    p.add_argument("--review", type=_finite_float, help="review threshold (≤ the NG threshold): OK / review / NG")
    p.add_argument(
        "--force", action="store_true", help="accept a value outside the observed anomaly scores (shown as forced)"
    )
    p.set_defaults(func=cmd_threshold)


def _add_predict(sub: Any) -> None:
    p = sub.add_parser("predict", help="score images with an exported model (ONNX Runtime; no torch needed)")
    p.add_argument("model", help="exported .onnx file")
    p.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders (recursive) or glob patterns")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="CSV (path,label,confidence,anomaly_score,is_defect,p_<class>...,decision,error) or JSON lines "
        "(.jsonl), replaced atomically, with FILE.meta.json (model, provider used, thresholds); '-' or no --out: "
        "results to standard output. Symlinks, devices, folders, inputs and project files are never replaced",
    )
    p.add_argument("--format", choices=["csv", "jsonl"], help="output format (default: from the --out suffix)")
    p.add_argument("--heatmaps", metavar="DIR", help="write a heatmap overlay PNG per image into DIR")
    p.add_argument(
        "--watch",
        metavar="DIR",
        help="keep scoring new images written to DIR (each once, across restarts and watchers; DIR must exist)",
    )
    p.add_argument(
        "--poll", type=_positive_float, default=1.0, help="--watch: seconds between folder scans (default 1)"
    )
    p.add_argument(
        "--idle-exit",
        type=_non_negative_float,
        default=0.0,
        help="--watch: stop after this many idle seconds (0 = never)",
    )
    p.add_argument(
        "--settle",
        type=_non_negative_float,
        default=5.0,
        help="--watch: seconds an unreadable frame must stay unchanged before it counts as failed (default 5)",
    )
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="auto",
        help="auto (default): CUDA when it loads, else CPU (the summary says which and why); cuda: CUDA or an error",
    )
    p.add_argument("--batch-size", type=_positive_int, default=16)
    p.add_argument("--threshold", type=_finite_float, help="override the model's NG threshold")
    p.add_argument("--review-threshold", type=_finite_float, help="override the model's review threshold")
    _common(p, config=False)
    p.set_defaults(func=cmd_predict)


def _add_review_commands(sub: Any) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML QA report of the latest trained model")
    p.add_argument("project")
    p.add_argument("--out", metavar="FILE.html", help="default PROJECT/reports/report.html")
    p.add_argument("--examples", type=_positive_int, default=6, help="example heatmaps per group (default 6)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("evaluate", help="score a pretraining run on the project's labels (cross-validated)")
    p.add_argument("project")
    p.add_argument("--run", metavar="RUN", help="pretraining run id or folder (default: the latest)")
    for name in ("protocol", "folds", "device"):
        _config_option(p, EvaluateConfig, name)
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


def build_parser() -> argparse.ArgumentParser:
    """The ``sslinspect`` argument parser; options that set a config field are generated from its metadata."""
    parser = _Parser(
        prog="sslinspect",
        description="SSL Inspect: unlabeled images → self-supervised "
        "pretraining → few-shot defect classifier + anomaly score → ONNX for the line.",
    )
    parser.add_argument("--version", action="version", version=f"sslinspect {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in (_add_project_commands, _add_pretrain, _add_model_commands, _add_predict, _add_review_commands):
        add(sub)
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
    except OSError as exc:  # a file-system failure the core did not name (disk full, read-only, ...)
        from sslinspect.fsutil import describe_os_error

        if args.debug:
            traceback.print_exc()
        print(f"error: {exc.filename or 'file system'}: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_FAIL
    except Exception as exc:
        from sslinspect.extras import missing_module_message

        if args.debug:
            traceback.print_exc()
        missing = missing_module_message(exc) if isinstance(exc, ModuleNotFoundError) else None
        if missing:  # an extra that is not installed: say which one
            print(f"error: {missing}", file=sys.stderr)
            return EXIT_FAIL
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        print(f"error: internal error {type(exc).__name__}: {first} (run with --debug for details)", file=sys.stderr)
        return EXIT_FAIL
