"""DDP training of one cell on two local CPU processes (gloo): every rank ends with the same
weights, the loss falls, rank 0 alone writes the checkpoint; the torchrun entry point
commits the cell to the store."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from robustact.experiments.ddp import shard_indices
from robustact.experiments.spec import parse_spec
from robustact.experiments.store import ResultStore


def cell_config(objective: Any = "natural", epochs: int = 3) -> dict[str, Any]:
    spec = parse_spec(
        {
            "name": "ddp",
            "grid": {
                "datasets": ["digits"],
                "models": [{"name": "mlp_general", "hidden": [32]}],
                "activations": [{"name": "srelu", "max_value": 1.0, "where": 0}],
                "objectives": [objective],
            },
            "training": {"epochs": epochs, "batch_size": 64, "lr": 0.01},
            "evaluation": {
                "protocols": [{"name": "mini", "attacks": [{"attack": "fgsm"}]}],
                "eps": [0.1],
                "n": 50,
                "masking": False,
            },
        }
    )
    return spec.cells()[0].config


def test_shards_cover_every_index_once_per_epoch() -> None:
    shards = [shard_indices(101, 2, r, seed=3, epoch=0) for r in range(2)]
    assert [len(s) for s in shards] == [51, 51]
    both = torch.cat(shards)
    assert set(both.tolist()) == set(range(101))  # padded by one repeated index
    assert torch.equal(shard_indices(101, 2, 1, 3, 0), shards[1])  # seeded
    assert not torch.equal(shard_indices(101, 2, 1, 3, 1), shards[1])  # new order per epoch
    with pytest.raises(ValueError, match="rank must be in"):
        shard_indices(10, 2, 2, 0, 0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _join(rank: int, world: int, port: int) -> None:
    from robustact.experiments.ddp import init_distributed

    torch.set_num_threads(1)
    # what torchrun would set; init_distributed() reads it (env://, gloo on the CPU)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    init_distributed("cpu")


def _worker(rank: int, world: int, port: int, out: str, config: dict[str, Any]) -> None:
    from robustact.experiments.cell import prepare_cell
    from robustact.experiments.ddp import main
    from robustact.train import fit, save_checkpoint

    _join(rank, world, port)
    prep = prepare_cell(config)
    if rank == 1:  # a different start on rank 1: DDP must broadcast rank 0's weights
        with torch.no_grad():
            for p in prep.model.parameters():
                p.add_(1.0)
    hist = fit(prep.model, prep.objective, prep.train, prep.train_config, val_data=prep.val,
               strategy="ddp")  # fmt: skip
    if rank == 0:
        save_checkpoint(Path(out) / "model.safetensors", prep.model)
    state = {k: v.contiguous() for k, v in prep.model.state_dict().items()}
    save_file(state, str(Path(out) / f"rank{rank}.safetensors"))
    (Path(out) / f"rank{rank}.json").write_text(json.dumps(hist["loss"]))
    # then the command-line entry on the same process group (it tears the group down)
    (Path(out) / "cell.json").write_text(json.dumps(config))
    code = main(["--config", str(Path(out) / "cell.json"), "--output-dir", str(Path(out) / "ck"),
                 "--store", str(Path(out) / "res.sqlite"), "--spec-name", "ddp"])  # fmt: skip
    assert code == 0
    assert not dist.is_initialized()


@pytest.mark.slow
def test_two_ranks_end_identical_and_learn(tmp_path: Path) -> None:
    # adversarial training: the attack inside the objective also runs through the DDP model
    obj = {"name": "adversarial", "attack": {"name": "training_pgd", "eps": 0.05, "steps": 1},
           "clean_weight": 0.5}  # fmt: skip
    config = cell_config(obj, epochs=4)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path), config), nprocs=2)
    w0 = load_file(str(tmp_path / "rank0.safetensors"))
    w1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert w0.keys() == w1.keys() and all(torch.equal(w0[k], w1[k]) for k in w0)
    losses = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert losses[0] == losses[1]  # averaged over ranks: the same history everywhere
    assert len(losses[0]) == 4 and losses[0][-1] < 0.7 * losses[0][0], losses[0]
    saved = load_file(str(tmp_path / "model.safetensors"))  # rank 0's checkpoint
    assert all(torch.equal(saved[k], w0[k]) for k in w0)
    # the entry point trained the cell again on both ranks and rank 0 committed it
    with ResultStore(tmp_path / "res.sqlite") as store:
        (cell,) = store.cells()
        rows = {r.key(): r.value for r in store.metrics(cell.cell_id)}
    assert cell.extra["world_size"] == 2 and cell.spec == "ddp"
    assert rows[("result", "mini", "clean", None, "accuracy", None, None)] > 0.5
    assert rows[("training", "training", "final", None, "epochs", None, None)] == 4.0
    assert cell.checkpoint is not None and Path(cell.checkpoint).is_file()
    hist = [r["loss"] for r in cell.extra["history"]]
    assert hist == pytest.approx(losses[0])  # the same seeded run


def test_entry_point_needs_a_distributed_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from robustact.experiments.ddp import main

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    (tmp_path / "cell.json").write_text(json.dumps({"seed": 0}))
    assert main(["--config", str(tmp_path / "cell.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no distributed environment") and "torchrun" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["--config", str(tmp_path / "missing.json")]) == 2
    assert "cannot read cell config" in capsys.readouterr().err


# ------------------------------------------------------------ one loop, with and without DDP
class _CrashError(Exception):
    pass


def _job(tmp: Path, strategy: str | None) -> dict[str, Any]:
    """The same 2-epoch job: an uninterrupted run, a run killed after epoch 0 and resumed,
    and a diverging run. D-ReLU caps start at 0.3 and the penalty at cap_lr 1 pushes them
    far below the 0.2 floor, so only the clamp after each step keeps them there."""
    from robustact.activations import DReLU
    from robustact.train import DivergenceError, Natural, TrainConfig, fit, with_penalty

    g = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=g)
    y = (x.flatten(1)[:, :4].argmax(1)).long()  # a learnable rule, 4 classes

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16),
                                   DReLU(16, init_max=0.3), torch.nn.Linear(16, 4))  # fmt: skip

    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.02, cap_lr=1.0, min_cap=0.2, seed=3,
                      progress=False)  # fmt: skip
    obj = with_penalty(Natural(), 1.0)
    full = model()
    h_full = fit(full, obj, (x, y), cfg, checkpoint_dir=tmp / "full", strategy=strategy)

    def crash(epoch: int, record: dict[str, Any]) -> None:
        if epoch == 0:
            raise _CrashError

    part = model()
    with contextlib.suppress(_CrashError):  # the crash: its state of epoch 0 is on disk
        fit(part, obj, (x, y), cfg, checkpoint_dir=tmp / "part", on_epoch_end=crash,
            strategy=strategy)  # fmt: skip
    resumed = model()
    h_res = fit(resumed, obj, (x, y), cfg, checkpoint_dir=tmp / "part", resume=True,
                strategy=strategy)  # fmt: skip
    try:
        fit(model(), obj, (x, y), cfg.replace(optimizer="sgd", lr=1e30), strategy=strategy)
        nan = "not refused"
    except DivergenceError as e:
        nan = str(e)
    return {"full": {k: v.clone() for k, v in full.state_dict().items()},
            "resumed": {k: v.clone() for k, v in resumed.state_dict().items()},
            "loss": h_full["loss"], "loss_resumed": h_res["loss"], "nan": nan}  # fmt: skip


def _job_worker(rank: int, world: int, port: int, out: str) -> None:
    _join(rank, world, port)
    res = _job(Path(out) / "ddp", "ddp")
    for k in ("full", "resumed"):
        save_file({n: t.contiguous() for n, t in res[k].items()},
                  str(Path(out) / f"{k}{rank}.safetensors"))  # fmt: skip
    info = {k: res[k] for k in ("loss", "loss_resumed", "nan")}
    (Path(out) / f"info{rank}.json").write_text(json.dumps(info))
    dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: ~15 s idle, more on busy cores
def test_one_loop_with_and_without_ddp(tmp_path: Path) -> None:
    single = _job(tmp_path / "single", None)
    mp.spawn(_job_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2)
    ddp = [{k: load_file(str(tmp_path / f"{k}{r}.safetensors")) for k in ("full", "resumed")}
           for r in range(2)]  # fmt: skip
    info = [json.loads((tmp_path / f"info{r}.json").read_text()) for r in range(2)]
    for run in (single, ddp[0], ddp[1]):
        # resumption is exact in both, and the caps stayed clamped at the floor
        assert all(torch.equal(run["full"][k], run["resumed"][k]) for k in run["full"])
        caps = run["full"]["2.max_value"]
        assert float(caps.min()) == pytest.approx(0.2) and bool((caps >= 0.2).all())
    assert all(torch.equal(ddp[0]["full"][k], ddp[1]["full"][k]) for k in ddp[0]["full"])
    # with equal shards DDP's averaged gradient is the one-process batch gradient
    for k, v in single["full"].items():
        torch.testing.assert_close(ddp[0]["full"][k], v, rtol=1e-4, atol=1e-5)
    assert info[0]["loss"] == info[1]["loss"] == info[0]["loss_resumed"]
    assert info[0]["loss"] == pytest.approx(single["loss"], rel=1e-4)
    assert single["loss"] == single["loss_resumed"]
    for msg in (single["nan"], info[0]["nan"], info[1]["nan"]):
        assert msg.startswith("training diverged") and "\n" not in msg
