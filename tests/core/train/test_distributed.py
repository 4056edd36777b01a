"""Multi-process training matches one process: 2 CPU ranks (gloo) vs one process on the same global batch.

The ranks run the engine's own wrapping (:func:`wrap_model`: synchronised BatchNorm, cross-rank negatives through
``gather_with_grad``, DDP). A control run with plain DDP (no gather, no synced BatchNorm) must *not* match, so the
comparison can fail. The same ranks then train whole epochs through the loop: the replicas must end identical
(DeepCluster's clusters and classifier come from rank 0; local BatchNorm statistics are averaged at epoch end).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import time
from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from sslinspect.cancel import NEVER
from sslinspect.config import PretrainConfig
from sslinspect.data.loader import BatchSource
from sslinspect.events import Finished, Log, Progress, Started, decode_event
from sslinspect.methods import load_method
from sslinspect.model.backbones import build_backbone
from sslinspect.model.checkpoint import load_checkpoint
from sslinspect.project import Project
from sslinspect.runs import CHECKPOINT
from sslinspect.train.distributed import DistInfo, gather_with_grad, torchrun_command, waiting_for_main, wrap_model
from sslinspect.train.loop import train_loop
from tests.conftest import CLASS_SHAPES, make_class_image, run_cli
from tests.core.methods.conftest import tiny_config
from tests.test_cli import TINY as TINY_CLI


class RankResult(TypedDict):
    """What each rank saves: the engine's and the plain-DDP control's loss and gradients, and each replica method's
    state after an epoch."""

    engine: dict[str, torch.Tensor]
    control: dict[str, torch.Tensor]
    replicas: dict[str, dict[str, torch.Tensor]]


WORLD, GLOBAL_BATCH = 2, 8
# re-clustering; a queue; a momentum encoder with rank-local BatchNorm (sync_batchnorm off)
REPLICAS = {"deepcluster": True, "mocov2": True, "byol": False}
CFG = PretrainConfig(
    method="simclr", backbone="tiny_cnn", image_size=32, batch_size=GLOBAL_BATCH, hidden_dim=64, proj_dim=32
)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return load_method("simclr").make_model(build_backbone("tiny_cnn", 32), CFG)


def _views() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(GLOBAL_BATCH, 3, 32, 32, generator=g) for _ in range(2)]


def _loss_and_grads(net: nn.Module, model: nn.Module, views: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    out = net(views, None)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return {"loss": out.loss.detach(), **grads}


def _rank_main(rank: int, tmp: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=WORLD)
    try:
        mine = [v.chunk(WORLD)[rank] for v in _views()]
        engine = _model()
        result = _loss_and_grads(wrap_model(engine, torch.device("cpu"), DistInfo(rank, WORLD, rank)), engine, mine)
        plain = _model()
        control = _loss_and_grads(nn.parallel.DistributedDataParallel(plain), plain, mine)
        replicas = {m: _train_epoch(m, rank, Path(tmp), sync) for m, sync in REPLICAS.items()}
        torch.save({"engine": result, "control": control, "replicas": replicas}, f"{tmp}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _train_epoch(method: str, rank: int, tmp: Path, sync_batchnorm: bool) -> dict[str, torch.Tensor]:
    """One epoch of ``method`` through the loop on this rank's shard; the model's state afterwards."""
    rng = np.random.default_rng(0)
    images = np.stack([make_class_image(CLASS_SHAPES[i % 3], rng)[..., ::-1] for i in range(24)])
    cfg = tiny_config(method, log_every=100)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank, as pretraining's seeding gives
    spec = dataclasses.replace(load_method(method), sync_batchnorm=sync_batchnorm)
    model = spec.make_model(build_backbone("tiny_cnn", 32), cfg)
    cpu = torch.device("cpu")
    train_loop(
        model,
        spec.make_views(cfg),
        BatchSource(images, cfg.batch_size, cpu, seed=0, rank=rank, world_size=WORLD),
        spec,
        cfg,
        device=cpu,
        checkpoint_path=tmp / f"{method}.pt",
        checkpoint_meta={"method": method},
        resume=None,
        report=lambda e: None,
        cancel=NEVER,
        dist=DistInfo(rank, WORLD, rank),
    )
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[RankResult]:
    tmp = tmp_path_factory.mktemp("ddp")
    mp.spawn(_rank_main, args=(str(tmp),), nprocs=WORLD, join=True)
    return [torch.load(tmp / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_two_ranks_match_one_process_in_loss_and_gradients(ranks: list[RankResult]) -> None:
    model = _model()
    single = _loss_and_grads(model, model, _views())
    assert len(single) == len(list(model.parameters())) + 1
    # Each rank's loss averages over its own anchors (the methods' gather contract), so the global loss is their
    # mean; DDP averages the gradients, which must then equal one process's on the global batch, on every rank.
    mean_loss = torch.stack([r["engine"]["loss"] for r in ranks]).mean()
    torch.testing.assert_close(mean_loss, single["loss"], rtol=1e-4, atol=1e-6)
    for r in ranks:
        got = r["engine"]
        assert got.keys() == single.keys()
        for name, want in single.items():
            if name != "loss":

                def message(m: str, n: str = name) -> str:
                    return f"{n}: {m}"

                # atol 2e-6: one conv weight gradient of ~4e-5 differs by 1.1e-6 (summation order across ranks)
                torch.testing.assert_close(got[name], want, rtol=1e-4, atol=2e-6, msg=message)


def test_plain_ddp_without_gather_and_synced_batchnorm_does_not_match(
    ranks: list[RankResult],
) -> None:
    model = _model()
    single = _loss_and_grads(model, model, _views())
    mean_loss = torch.stack([r["control"]["loss"] for r in ranks]).mean()
    assert not torch.allclose(mean_loss, single["loss"], rtol=1e-3)


@pytest.mark.parametrize("method", list(REPLICAS))
def test_replicas_are_identical_after_an_epoch(ranks: list[RankResult], method: str) -> None:
    a, b = (r["replicas"][method] for r in ranks)
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.allclose(a[k].float(), b[k].float(), rtol=1e-5, atol=1e-6)]
    assert not differ, f"{method}: ranks differ in {differ[:5]}"


def _wait_main(rank: int, tmp: str) -> None:
    # the process group's own timeout (2 s) is shorter than rank 0's one-off work (4 s)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp}/rv", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=2)
    )
    try:
        with waiting_for_main():
            if rank == 0:
                time.sleep(4)  # e.g. the first build of a large image cache
        t = torch.ones(1)
        dist.all_reduce(t)  # the group still works afterwards
        Path(tmp, f"ok{rank}").write_text(str(int(t)))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_wait_for_rank_zero_longer_than_the_group_timeout(tmp_path: Path) -> None:
    mp.spawn(_wait_main, args=(str(tmp_path),), nprocs=WORLD, join=True)
    assert [(tmp_path / f"ok{r}").read_text() for r in range(WORLD)] == ["2", "2"]


def test_gather_is_the_identity_without_a_process_group() -> None:
    x = torch.randn(3, 4, requires_grad=True)
    assert gather_with_grad(x) is x


def test_rank_shards_are_disjoint_and_make_up_the_global_batches() -> None:
    images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1).repeat(3, axis=3)
    single = BatchSource(images, 12, torch.device("cpu"), seed=3)
    shards = [BatchSource(images, 12, torch.device("cpu"), seed=3, rank=r, world_size=3) for r in range(3)]
    assert all(s.batch_size == 4 and s.steps_per_epoch == single.steps_per_epoch == 4 for s in shards)
    for epoch in (0, 1):
        whole = [rows.tolist() for rows, _ in single.epoch(epoch)]
        parts = [[sorted(rows.tolist()) for rows, _ in s.epoch(epoch)] for s in shards]
        for step, rows in enumerate(whole):
            joined = [i for p in parts for i in p[step]]
            assert sorted(joined) == sorted(rows) and len(set(joined)) == 12


def test_batch_is_rounded_to_a_multiple_of_the_ranks() -> None:
    images = np.zeros((20, 1, 1, 3), np.uint8)
    assert BatchSource(images, 10, torch.device("cpu"), rank=1, world_size=4).global_batch_size == 8


def test_torchrun_command_drops_the_convenience_option() -> None:
    cmd = torchrun_command(["pretrain", "p.sslproj", "--nproc-per-node", "4", "--epochs", "3"], 4, python="py")
    assert cmd == [
        "py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "4",
        "-m", "sslinspect", "pretrain", "p.sslproj", "--epochs", "3",
    ]  # fmt: skip


@pytest.mark.slow
def test_pretrain_nproc_per_node_runs_two_processes_and_stops_together(tiny_project: Project, tmp_path: Path) -> None:
    root = str(tiny_project.root)
    args = ["pretrain", root, "--nproc-per-node", "2", *TINY_CLI, "--epochs", "2", "--events", "jsonl"]
    r = run_cli(*args, timeout=600)
    assert r.returncode == 0, r.stderr
    events = [decode_event(line) for line in r.stdout.splitlines()]  # only rank 0 writes, and only JSON
    assert sum(isinstance(e, Started) for e in events) == 1
    assert isinstance(events[-1], Finished) and events[-1].status == "ok"
    assert any(isinstance(e, Log) and "2 processes × batch 4" in e.message for e in events)
    (run,) = tiny_project.runs("pretrain")
    assert json.loads((run / "config.json").read_text())["world_size"] == 2
    assert load_checkpoint(run / CHECKPOINT)["epochs_done"] == 2
    # Cancel requested before the start: both ranks agree at the first report and stop with a checkpoint.
    control = tmp_path / "control"
    control.mkdir()
    (control / "cancel").touch()
    r = run_cli(*args, "--control", str(control), "--set", "pretrain.log_every=2", timeout=600)
    assert r.returncode != 0  # torchrun's own exit code; the events say why
    events = [decode_event(line) for line in r.stdout.splitlines()]
    assert isinstance(events[-1], Finished) and events[-1].status == "cancelled"
    assert [e.step for e in events if isinstance(e, Progress) and e.stage == "pretrain"] == [2]
    newest = tiny_project.runs("pretrain")[-1]
    assert newest != run and load_checkpoint(newest / CHECKPOINT)["epochs_done"] == 0
