"""The ``sslinspect`` subcommands: each turns parsed arguments into :mod:`sslinspect.api` calls and an exit code.

The parser and the error handling around every command are in :mod:`sslinspect.cli`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sslinspect.cancel import FileToken
from sslinspect.errors import ConfigError
from sslinspect.events import JsonlReporter, LoggingReporter, Reporter, TeeReporter
from sslinspect.progress import ProgressBar

log = logging.getLogger("sslinspect")

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130


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
        f"{project.root}: {result.unique} readable images ({result.new} new, {result.unchanged} unchanged, "
        f"{result.missing} missing files, {result.duplicates} duplicates skipped), {result.failed} unreadable"
        + (f"; frames mostly {result.frame_size[0]}×{result.frame_size[1]} px" if result.frame_size else ""),
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
    cfg = _recommended_backbone(cfg, args)
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


def _recommended_backbone(cfg: Any, args: argparse.Namespace) -> Any:
    """``--method X`` without a backbone chosen anywhere: X's recommended backbone, said out loud."""
    import dataclasses

    from sslinspect.config import PretrainConfig
    from sslinspect.methods import METHODS

    recommended = METHODS[cfg.method].backbone
    if args.backbone is None and cfg.backbone == PretrainConfig().backbone and recommended != cfg.backbone:
        log.info("%s: using its recommended backbone %s (choose another with --backbone)", cfg.method, recommended)
        cfg = dataclasses.replace(cfg, backbone=recommended)
    return cfg


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


def cmd_fit(args: argparse.Namespace) -> int:
    from sslinspect import api

    cfg = _apply(_configs(args)["fit"], "fit", args, {"classifier": "classifier", "device": "device"})
    project = api.open_project(Path(args.project))
    token = _token(args)
    with _signals_cancel(token):
        r = api.fit_fewshot(project, cfg, report=_reporter(args), cancel=token, allow_running=args.allow_running)
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

    cfg = _apply(_configs(args)["export"], "export", args, {"precision": "precision", "format": "format"})
    project = api.open_project(Path(args.project))
    token = _token(args)
    with _signals_cancel(token):
        r = api.export_onnx(
            project, Path(args.out) if args.out else None, cfg, force=args.force, report=_reporter(args), cancel=token
        )
    where = f"Triton repository {r.repository}" if r.repository else f"{r.path} and {Path(r.sidecar).name}"
    _say(
        args,
        f"wrote {where} ({r.size_bytes / 2**20:.1f} MB, {r.precision}); parity on {r.parity.images} real images: "
        f"max |Δ| {r.parity.max_abs_diff:.1e} ≤ {r.parity.atol:g} ✓; threshold {r.threshold:.4f}",
    )
    if r.precision_check is not None and r.precision_check.forced:
        _say(args, "written although it exceeds the precision tolerance (--force): " + r.precision_check.message())
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from sslinspect import api

    heatmaps = Path(args.heatmaps) if args.heatmaps else None
    if args.watch:
        return _watch(args, heatmaps)
    if not args.inputs:
        raise ConfigError("predict: give image files, folders or globs (or --watch DIR)")
    events = getattr(args, "events", None) == "jsonl"
    if events and args.out == "-":
        raise ConfigError(
            "predict: --out - (standard output) cannot be used with --events jsonl (stdout carries events)"
        )
    # Without --out the results go to stdout (the Unix convention), unless stdout carries events.
    out: Path | str | None = args.out if args.out == "-" else Path(args.out) if args.out else None if events else "-"
    r = api.predict(Path(args.model), args.inputs, out=out, **_scoring_options(args, heatmaps))
    for path, reason in r.failed:
        print(f"error: {path}: {reason}", file=sys.stderr)
    summary = (
        f"{r.total - len(r.failed)} image(s) scored on {r.provider_note or r.provider}: {r.defects} defect(s)"
        + (f", {r.review} to review" if r.review else "")
        + (f", {len(r.failed)} unreadable" if r.failed else "")
        + (f"; wrote {r.out}" if r.out and r.out != "-" else "")
        + (f"; heatmaps in {r.heatmaps}" if r.heatmaps else "")
    )
    if out == "-":  # stdout holds the results: the summary goes to stderr
        print(summary, file=sys.stderr)
    else:
        _say(args, summary)
    return EXIT_FAIL if r.failed else EXIT_OK


def _scoring_options(args: argparse.Namespace, heatmaps: Path | None) -> dict[str, Any]:
    """Options shared by ``predict`` and ``predict --watch``."""
    return {
        "device": args.device,
        "batch_size": args.batch_size,
        "threshold": args.threshold,
        "review_threshold": args.review_threshold,
        "fmt": args.format,
        "heatmaps": heatmaps,
        "report": _reporter(args),
    }


def _watch(args: argparse.Namespace, heatmaps: Path | None) -> int:
    from sslinspect import api

    if not args.out:
        raise ConfigError("predict --watch needs --out FILE (its state is kept beside it)")
    token = _token(args)
    with _signals_cancel(token):
        r = api.watch(
            Path(args.model),
            Path(args.watch),
            Path(args.out),
            poll_s=args.poll,
            idle_exit_s=args.idle_exit,
            settle_s=args.settle,
            cancel=token,
            **_scoring_options(args, heatmaps),
        )
    for path, reason in r.failed:
        print(f"error: {path}: {reason}", file=sys.stderr)
    _say(
        args,
        f"watched {args.watch}: {r.processed} new image(s) scored on {r.provider}, {r.defects} defect(s)"
        + (f", {len(r.failed)} unreadable" if r.failed else "")
        + f" ({r.skipped_known} known from earlier runs); results in {r.out}",
    )
    return EXIT_FAIL if r.failed else EXIT_OK


def cmd_threshold(args: argparse.Namespace) -> int:
    from sslinspect import api
    from sslinspect.review import latest_export_thresholds

    project = api.open_project(Path(args.project))
    try:
        head = api.set_threshold(project, args.value, args.review, force=args.force)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    a = head.anomaly
    review = f", review above {a.review_threshold:.4f}" if a.review_threshold < a.threshold else ""
    stored = latest_export_thresholds(project)
    forced = " (FORCED: outside the observed anomaly scores)" if stored is not None and stored.forced else ""
    _say(args, f"threshold {a.threshold:.4f}{review}{forced}; export again to put it in the model")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from sslinspect import api

    project = api.open_project(Path(args.project))
    r = api.write_report(project, Path(args.out) if args.out else None, examples=args.examples, report=_reporter(args))
    _say(args, f"wrote {r.path} ({r.size_bytes / 2**10:.0f} KB, {r.examples} example heatmaps)")
    return EXIT_OK


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
    from sslinspect.demo_run import format_table, run_demo

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
