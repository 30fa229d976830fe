"""lemo.train.checkpoint: round trip, retention, atomicity, corruption, RNG restore."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from lemo.train.checkpoint import (
    CheckpointError,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)


def _trained_state(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer, dict]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    state = {
        "trainable": dict(model.named_parameters()),
        "optimizer": opt.state_dict(),
        "config": {"seq_len": 4096, "lr": 1e-2},
        "data_seed": 7,
        "tokens_seen": 1234,
    }
    return model, opt, state


def test_round_trip(tmp_path):
    model, opt, state = _trained_state()
    path = save_checkpoint(tmp_path, 12, state)
    assert path == tmp_path / "step-0000012"
    assert sorted(p.name for p in path.iterdir()) == ["meta.json", "optimizer.pt", "trainable.safetensors"]
    assert (tmp_path / "latest").read_text().strip() == "step-0000012"

    ckpt = load_checkpoint(tmp_path)
    assert ckpt["step"] == 12 and ckpt["path"] == path
    assert ckpt["config"] == {"seq_len": 4096, "lr": 1e-2} and ckpt["data_seed"] == 7
    assert ckpt["extra"] == {"tokens_seen": 1234}
    for name, p in model.named_parameters():
        assert torch.equal(ckpt["trainable"][name], p.detach())
    # The optimizer state loads into a fresh optimizer and continues identically.
    model2 = torch.nn.Linear(4, 3)
    model2.load_state_dict(ckpt["trainable"])
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2)
    opt2.load_state_dict(ckpt["optimizer"])
    for m, o in ((model, opt), (model2, opt2)):
        o.zero_grad()
        m(torch.ones(1, 4)).sum().backward()
        o.step()
    assert torch.equal(model.weight, model2.weight)
    meta = json.loads((path / "meta.json").read_text())
    assert set(meta["sha256"]) == {"trainable.safetensors", "optimizer.pt"}


def test_no_checkpoint_returns_none(tmp_path):
    assert load_checkpoint(tmp_path / "absent") is None
    assert load_checkpoint(tmp_path) is None


def test_keeps_last_two(tmp_path):
    _, _, state = _trained_state()
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, state)
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-0000020", "step-0000030"]
    assert load_checkpoint(tmp_path)["step"] == 30
    save_checkpoint(tmp_path, 40, state, keep=1)
    assert [p.name for p in tmp_path.glob("step-*")] == ["step-0000040"]


def test_resaving_a_step_replaces_it(tmp_path):
    _, _, state = _trained_state()
    save_checkpoint(tmp_path, 5, state)
    save_checkpoint(tmp_path, 5, {**state, "data_seed": 8})
    assert load_checkpoint(tmp_path)["data_seed"] == 8


def test_leftover_temp_dir_is_ignored_then_cleaned(tmp_path):
    _, _, state = _trained_state()
    save_checkpoint(tmp_path, 10, state)
    # A save killed after writing some files but before the rename.
    leftover = tmp_path / ".tmp-step-0000020-deadbeef"
    leftover.mkdir()
    (leftover / "trainable.safetensors").write_bytes(b"half a file")
    assert load_checkpoint(tmp_path)["step"] == 10
    save_checkpoint(tmp_path, 30, state)
    assert not leftover.exists()
    assert load_checkpoint(tmp_path)["step"] == 30


def test_falls_back_to_newest_complete_when_latest_is_missing(tmp_path):
    _, _, state = _trained_state()
    save_checkpoint(tmp_path, 10, state)
    save_checkpoint(tmp_path, 20, state)
    (tmp_path / "latest").unlink()
    (tmp_path / "step-0000099").mkdir()  # no meta.json: not a complete checkpoint
    assert load_checkpoint(tmp_path)["step"] == 20


@pytest.mark.parametrize("name", ["trainable.safetensors", "optimizer.pt", "meta.json"])
def test_corrupt_file_names_file_and_fix(tmp_path, name):
    _, _, state = _trained_state()
    save_checkpoint(tmp_path, 10, state)
    path = save_checkpoint(tmp_path, 20, state)
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte
    (path / name).write_bytes(bytes(data[: len(data) - 3]) if name == "meta.json" else bytes(data))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(tmp_path)
    msg = str(err.value)
    assert name in msg
    assert f"delete {path} to resume from the previous checkpoint, or start fresh without --resume" in msg


def test_missing_file_is_a_checkpoint_error(tmp_path):
    _, _, state = _trained_state()
    path = save_checkpoint(tmp_path, 10, state)
    (path / "optimizer.pt").unlink()
    with pytest.raises(CheckpointError, match=r"optimizer\.pt is missing; delete"):
        load_checkpoint(tmp_path)


def _draws() -> tuple:
    return random.random(), np.random.rand(), torch.rand(3).tolist(), torch.randint(0, 1000, (2,)).tolist()


def test_rng_restore_reproduces_draws():
    state = capture_rng_state()
    json.dumps(state)  # JSON-able, as meta.json needs
    first = _draws()
    restore_rng_state(state)
    assert _draws() == first


def test_rng_state_survives_a_checkpoint(tmp_path):
    _, _, state = _trained_state()
    save_checkpoint(tmp_path, 1, {**state, "rng": capture_rng_state()})
    first = _draws()
    restore_rng_state(load_checkpoint(tmp_path)["rng"])
    assert _draws() == first


def test_requires_trainable(tmp_path):
    with pytest.raises(ValueError, match=r'state\["trainable"\]'):
        save_checkpoint(tmp_path, 1, {"optimizer": {}})


def test_saving_an_earlier_step_drops_the_abandoned_later_ones(tmp_path):
    _, _, state = _trained_state()
    for step in (10, 20, 30):
        save_checkpoint(tmp_path, step, state, keep=3)
    save_checkpoint(tmp_path, 15, state, keep=3)  # resumed from 10: 20 and 30 belong to the old timeline
    assert sorted(p.name for p in tmp_path.glob("step-*")) == ["step-0000010", "step-0000015"]
    assert load_checkpoint(tmp_path)["step"] == 15
