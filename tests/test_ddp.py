"""DDP training of one cell on two local CPU processes (gloo): every rank ends with the same
weights, the loss falls, rank 0 alone writes the checkpoint; the torchrun entry point
commits the cell to the store."""

from __future__ import annotations

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


def _worker(rank: int, world: int, port: int, out: str, config: dict[str, Any]) -> None:
    from robustact.experiments.cell import prepare_cell
    from robustact.experiments.ddp import fit_ddp, init_distributed, main

    torch.set_num_threads(1)
    # what torchrun would set; init_distributed() reads it (env://, gloo on the CPU)
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    init_distributed("cpu")
    prep = prepare_cell(config)
    if rank == 1:  # a different start on rank 1: DDP must broadcast rank 0's weights
        with torch.no_grad():
            for p in prep.model.parameters():
                p.add_(1.0)
    hist = fit_ddp(
        prep.model, prep.objective, prep.train, prep.train_config, val_data=prep.val,
        checkpoint_path=Path(out) / "model.safetensors",
    )  # fmt: skip
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
    assert rows[("mini", "clean", "accuracy", None, None)] > 0.5
    assert rows[("training", "final", "epochs", None, None)] == 4.0
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
