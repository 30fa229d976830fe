"""The output-folder lock, with real processes: a live run's folder is refused to a second run (which must not
touch its in-progress checkpoint), and the lock of a killed run is taken over with a message."""

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import lemo.train.loop as loop
from lemo.cli.__main__ import main
from lemo.testing import tiny_finetune_config
from lemo.train.checkpoint import save_checkpoint
from lemo.train.loop import finetune
from lemo.train.run_lock import LOCK_NAME, RunLock, RunLockedError

HOST = socket.gethostname()

# A real `lemo finetune` that stops inside its first checkpoint save, with the temp folder written, until told.
PAUSED_RUN = """
import sys, time, pathlib
import lemo.train.checkpoint as ck
from lemo.cli.__main__ import main
started, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
write = ck._write
def paused(tmp, step, state):
    write(tmp, step, state)
    started.write_text("")
    deadline = time.time() + 300
    while not go.exists() and time.time() < deadline:
        time.sleep(0.05)
ck._write = paused
sys.exit(main(sys.argv[3:]))
"""

# A process that takes the lock and holds it until killed.
HOLDER = """
import sys, time, pathlib
from lemo.train.run_lock import RunLock
pathlib.Path(sys.argv[1]).mkdir(parents=True, exist_ok=True)
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def finetune_args(model, data, out, *extra):
    args = ["finetune", "--model", str(model), "--data", str(data), "--seq-len", "128", "--block-size", "16"]
    args += ["--keep-ratio", "0.5", "--warmup-steps", "0", "--no-progress", "--output-dir", str(out)]
    return [*args, *extra]


def wait_for(path: Path, proc: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the first run ended early ({proc.returncode}):\n{out}\n{err}")
        assert time.time() < deadline, "the first run never reached its checkpoint save"
        time.sleep(0.1)


@pytest.fixture
def holder(tmp_path):
    """Start a process holding the lock of a folder; yields (process, folder)."""
    procs = []

    def start(folder: Path) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_second_run_is_refused_while_the_first_saves_and_its_temp_checkpoint_survives(
    tiny_model_dir, text_file, tmp_path, monkeypatch, capsys
):
    out, started, go = tmp_path / "run", tmp_path / "started", tmp_path / "go"
    args = finetune_args(tiny_model_dir, text_file, out, "--steps", "2", "--save-every", "1")
    first = subprocess.Popen(
        [sys.executable, "-c", PAUSED_RUN, str(started), str(go), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(started, first)
        (temp,) = (out / "checkpoints").glob(".tmp-step-0000001-*")
        monkeypatch.setattr(
            loop, "load_model", lambda *a, **k: pytest.fail("the second run loaded the model")
        )
        for extra in ([], ["--resume"], ["--overwrite"]):
            assert main(args + extra) == 2, extra
            err = capsys.readouterr().err
            assert f"is in use by another lemo run: PID {first.pid} on host {HOST}, since " in err, err
            assert "Wait for it to finish" in err and "choose another --output-dir" in err
            assert f"delete {out / LOCK_NAME}" in err
            assert temp.is_dir() and (temp / "trainable.safetensors").is_file(), extra
        assert not list(tmp_path.glob("run.old-*"))  # --overwrite did not move the live run aside
        go.write_text("")
        _, err = first.communicate(timeout=300)
    finally:
        go.write_text("")
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert (out / "checkpoints" / "step-0000002").is_dir()
    assert not (out / LOCK_NAME).exists()  # released at the end


def test_the_lock_of_a_killed_run_is_taken_over_with_a_message(
    tiny_model_dir, text_file, tmp_path, holder, caplog
):
    out = tmp_path / "run"
    dead = holder(out)
    dead.kill()  # SIGKILL: no cleanup, the lock file stays with its PID
    dead.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == dead.pid
    with caplog.at_level(logging.WARNING):
        finetune(tiny_finetune_config(tiny_model_dir, text_file, out, steps=1))
    assert f"taking over the lock on {out} left by PID {dead.pid} on host {HOST}" in caplog.text
    assert "that process ended without releasing it" in caplog.text
    assert (out / "adapter").is_dir() and not (out / LOCK_NAME).exists()


def test_a_live_holder_is_refused_and_a_lock_of_another_host_is_never_taken_over(tmp_path, holder):
    live = holder(tmp_path / "a")
    with pytest.raises(RunLockedError, match=f"PID {live.pid} on host {HOST}"):
        RunLock(tmp_path / "a").acquire()
    other = tmp_path / "b"
    other.mkdir()
    record = {"pid": os.getpid() + 1, "host": "gpu-node-7", "since": "2026-12-04T10:00:00"}
    (other / LOCK_NAME).write_text(json.dumps(record))
    with pytest.raises(RunLockedError) as err:
        RunLock(other).acquire()
    assert "PID" in str(err.value) and "gpu-node-7, since 2026-12-04 10:00:00" in str(err.value)
    assert "cannot check a process on host gpu-node-7" in str(err.value)


def test_temp_checkpoints_are_removed_only_by_the_lock_holder(tmp_path, holder, caplog):
    run = tmp_path / "run"
    other = holder(run)
    temp = run / "checkpoints" / ".tmp-step-0000003-abcd1234"
    temp.mkdir(parents=True)
    state = {"trainable": {"w": torch.zeros(2)}}
    with caplog.at_level(logging.WARNING):
        save_checkpoint(run / "checkpoints", 1, state)
    assert temp.is_dir() and f"locked by PID {other.pid}" in caplog.text
    other.kill()
    other.wait()
    save_checkpoint(run / "checkpoints", 2, state)  # the holder is gone: the temp folder is a leftover now
    assert not temp.exists()


def test_the_lock_is_released_when_a_run_fails(tiny_model_dir, text_file, tmp_path, monkeypatch):
    out = tmp_path / "run"

    def nan(*a, **k):
        raise FloatingPointError("the loss is not finite")

    monkeypatch.setattr(loop, "_accumulate", nan)
    with pytest.raises(FloatingPointError):
        finetune(tiny_finetune_config(tiny_model_dir, text_file, out, steps=1))
    assert (out / "config.yaml").is_file() and not (out / LOCK_NAME).exists()
    RunLock(out).acquire()  # free again


def test_a_recorded_pid_that_lives_on_without_the_flock_is_taken_over(tmp_path, caplog):
    # After a reboot or in a new container the dead run's PID may belong to another program: the flock, which the
    # kernel dropped with the run, decides, not the PID.
    record = {"pid": os.getppid(), "host": HOST, "since": "2026-12-04T10:00:00"}
    (tmp_path / LOCK_NAME).write_text(json.dumps(record))
    lock = RunLock(tmp_path)
    with caplog.at_level(logging.WARNING):
        lock.acquire()
    assert f"left by PID {os.getppid()} on host {HOST}" in caplog.text
    assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
