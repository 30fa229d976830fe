"""The suite's data (docs/suite.md): the training rows per seed, in both forms, and the eval samples, made once
in forked processes and kept under --work for a resume, which refuses data made with other settings.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import pickle
import time
from concurrent.futures import ProcessPoolExecutor

from suite_jobs import suite_config  # beside this script

from lemo.assets import austen_split, smollm2_dir
from lemo.eval.suite_rows import eval_samples, text_form, training_rows

ROWS_PER_TASK = 10  # training rows per data-making process (a 16K row takes about a second to fit)


def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir(), local_files_only=True)


def _rows(args, seed: int, first: int) -> list[dict]:
    n = min(ROWS_PER_TASK, args.rows - first)
    return training_rows(austen_split()[0], _tokenizer(), args.seq_len, n, seed, suite_config(args), first)


def _samples(args, length: int, family: str) -> list:
    texts, cfg = austen_split()[1], suite_config(args)
    return eval_samples(texts, _tokenizer(), [length], args.questions, 1, cfg, families=[family])


def check_stamp(args) -> None:
    """--work keeps the data for a resume: refuse to reuse data made with other settings."""
    stamp = dict(suite=dataclasses.asdict(suite_config(args)), seq_len=args.seq_len, rows=args.rows)
    stamp.update(questions=args.questions, eval_lengths=args.eval_lengths)
    stamp = json.loads(json.dumps(stamp))  # tuples as lists, as read back
    path = args.work / "data.json"
    if path.exists() and json.loads(path.read_text()) != stamp:
        raise SystemExit(f"{args.work} holds data made with other settings ({path}); pass another --work.")
    args.work.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamp))


def write_data(args) -> None:
    """Training rows per seed (both forms, the same rows) and the eval samples, once; kept for a resume."""
    smollm2_dir()  # convert the model once, before the processes below read it
    check_stamp(args)
    todo = [s for s in args.seeds if not (args.work / f"data/s{s}/text.jsonl").exists()]
    evals = args.work / "eval.pkl"
    cells = [] if evals.exists() else [(n, f) for n in args.eval_lengths for f in suite_config(args).families]
    t0 = time.perf_counter()
    fork = multiprocessing.get_context("fork")  # the children reuse this process's imports and arguments
    with ProcessPoolExecutor(max(1, min(os.cpu_count() or 1, 16)), mp_context=fork) as pool:
        rows = {s: [pool.submit(_rows, args, s, i) for i in range(0, args.rows, ROWS_PER_TASK)] for s in todo}
        samples = [pool.submit(_samples, args, n, f) for n, f in cells]
        for s, futures in rows.items():
            folder = args.work / f"data/s{s}"
            folder.mkdir(parents=True, exist_ok=True)
            records = [r for fut in futures for r in fut.result()]
            with (folder / "sup.jsonl").open("w") as sup, (folder / "text.jsonl.tmp").open("w") as text:
                for r in records:
                    sup.write(json.dumps(r) + "\n")
                    text.write(json.dumps(text_form(r)) + "\n")
            (folder / "text.jsonl.tmp").rename(folder / "text.jsonl")  # last: marks the seed's data complete
        if cells:
            with evals.open("wb") as fh:
                pickle.dump([s for fut in samples for s in fut.result()], fh)
    print(
        f"suite data: seeds {todo or 'cached'}, eval {len(cells)} cells, {time.perf_counter() - t0:.0f} s",
        flush=True,
    )
