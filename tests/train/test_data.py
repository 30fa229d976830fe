"""lemo.train.data: loading, tokenizing, chunk/pack rows, resumable order, collate."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from lemo.train.data import (
    IGNORE_INDEX,
    DataOrder,
    build_examples,
    collate,
    load_documents,
    tokenize_documents,
)


class CharTokenizer:
    """One token per character (code point mod 250); EOS is 255."""

    eos_token_id = 255

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 250 for c in text]


def _docs(*lengths: int) -> list[list[int]]:
    # Distinct token values per document so tests can tell documents apart.
    start = itertools.count()
    return [[next(start) for _ in range(n)] for n in lengths]


# ---------------------------------------------------------------------------------------------------- loading


def test_load_txt_jsonl_and_directory(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"line one\r\nline two\r\n")
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"text": "first"}) + "\n\n" + json.dumps({"text": "second", "id": 2}) + "\n"
    )
    (tmp_path / "empty.txt").write_text("  \n")
    (tmp_path / "notes.md").write_text("ignored: not .txt/.jsonl")
    assert load_documents([tmp_path]) == ["first", "second", "line one\nline two\n"]
    assert load_documents([tmp_path / "b.txt"]) == ["line one\nline two\n"]


def test_missing_file_names_path_and_fix(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError, match=r"nope\.txt does not exist; check the path"):
        load_documents([missing])


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\n")
    with pytest.raises(ValueError, match=r"empty\.txt is empty; pass a file with text"):
        load_documents([path])


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"content": "x"}', 'no string "text" field'),
        ("[1, 2]", r"no string \"text\" field \(got list\)"),
    ],
)
def test_bad_jsonl_line_names_line_number(tmp_path, line, match):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"data\.jsonl:2: {match}"):
        load_documents([path])


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b")
    with pytest.raises(ValueError, match=r"unsupported file type '\.csv'; pass \.txt"):
        load_documents([path])


# ------------------------------------------------------------------------------------------------- tokenizing


def test_tokenize_appends_eos_only():
    assert tokenize_documents(["ab", "c"], CharTokenizer()) == [[97, 98, 255], [99, 255]]


def test_tokenize_hf_tokenizer_adds_no_bos():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1, "<unk>": 2, "hello": 3, "world": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    assert hf.encode("hello world")[0] == 0  # the post-processor would add BOS...
    assert tokenize_documents(["hello world", "world"], hf) == [[3, 4, 1], [4, 1]]  # ...but not here


# --------------------------------------------------------------------------------------------------- examples


def test_chunk_rows_are_consecutive_and_drop_the_tail():
    docs = _docs(100, 50, 30)  # 180 tokens -> 2 rows of 64, 52 dropped
    rows = build_examples(docs, seq_len=64, mode="chunk")
    assert len(rows) == 2
    flat = torch.cat([r.input_ids for r in rows])
    assert flat.tolist() == list(range(128))
    for r in rows:
        assert r.position_ids.tolist() == list(range(64))
        assert torch.equal(r.labels, r.input_ids)
        assert r.attention_mask.tolist() == [1] * 64


def test_chunk_too_few_tokens_says_how_many():
    with pytest.raises(
        ValueError, match=r"hold 40 tokens, fewer than one row of --seq-len 64; lower --seq-len"
    ):
        build_examples(_docs(30, 10), seq_len=64, mode="chunk")


def test_seq_len_below_one_block():
    with pytest.raises(
        ValueError, match=r"--seq-len 32 is below one block \(64 tokens\); use --seq-len >= 64"
    ):
        build_examples(_docs(100), seq_len=32, mode="pack")


def test_pack_keeps_every_token_and_restarts_positions():
    docs = _docs(40, 30, 20, 150, 10, 64)  # 150 > seq_len: split into 64 + 64 + 22
    seq_len = 64
    rows = build_examples(docs, seq_len=seq_len, mode="pack", pad_id=999)
    real = [r.input_ids[r.attention_mask.bool()] for r in rows]
    # No token lost or duplicated.
    assert sorted(torch.cat(real).tolist()) == sorted(t for d in docs for t in d)
    for r in rows:
        assert r.input_ids.shape == r.position_ids.shape == r.labels.shape == (seq_len,)
        pad = ~r.attention_mask.bool()
        assert (r.labels[pad] == IGNORE_INDEX).all() and (r.input_ids[pad] == 999).all()
        assert torch.equal(r.labels[~pad], r.input_ids[~pad])
        assert pad.long().diff().min() >= 0  # padding only at the tail
        # Every document (piece) starts at position 0 and counts up by one; a piece is contiguous tokens.
        ids, pos = r.input_ids[~pad].tolist(), r.position_ids[~pad].tolist()
        for i in range(1, len(ids)):
            assert pos[i] == 0 or (pos[i] == pos[i - 1] + 1 and ids[i] == ids[i - 1] + 1)
        # Padding continues the last document's positions, staying below seq_len.
        if pad.any():
            tail = r.position_ids[~pad][-1].item()
            assert r.position_ids[pad].tolist() == list(range(tail + 1, tail + 1 + int(pad.sum())))
    # First fit: 40 -> row 0, 30 -> row 1, 20 -> row 0, pieces 64 and 64 -> rows 2 and 3, 22 -> row 1, ...
    assert rows[0].position_ids[:60].tolist() == list(range(40)) + list(range(20))


def test_pack_first_fit_order():
    rows = build_examples(_docs(40, 30, 20, 10), seq_len=64, mode="pack")
    # 40 -> row 0; 30 -> row 1 (40 + 30 > 64); 20 -> row 0 (60); 10 -> row 1 (40).
    assert [int(r.attention_mask.sum()) for r in rows] == [60, 40]
    assert rows[0].input_ids[:60].tolist() == list(range(40)) + list(range(70, 90))


def test_collate_stacks_batch():
    rows = build_examples(_docs(200), seq_len=64, mode="chunk")
    batch = collate(rows[:3])
    assert set(batch) == {"input_ids", "position_ids", "labels", "attention_mask"}
    assert all(t.shape == (3, 64) and t.dtype == torch.long for t in batch.values())


# ------------------------------------------------------------------------------------------------------ order


def test_data_order_epochs_are_permutations():
    order = DataOrder(num_examples=7, seed=3)
    stream = list(itertools.chain.from_iterable(itertools.islice(order.batches(0, 1), 21)))
    for e in range(3):
        assert sorted(stream[e * 7 : (e + 1) * 7]) == list(range(7))
    assert order.epoch_order(0) != order.epoch_order(1)
    assert DataOrder(7, seed=4).epoch_order(0) != order.epoch_order(0)
    assert DataOrder(7, seed=3).epoch_order(2) == order.epoch_order(2)


@pytest.mark.parametrize(("batch_size", "resume_at"), [(1, 5), (3, 2), (3, 7), (4, 4)])
def test_data_order_resume_sees_the_same_batches(batch_size, resume_at):
    order = DataOrder(num_examples=10, seed=0)
    full = list(itertools.islice(order.batches(0, batch_size), 20))
    resumed = list(itertools.islice(DataOrder(10, seed=0).batches(resume_at, batch_size), 20 - resume_at))
    assert resumed == full[resume_at:]
    assert all(len(b) == batch_size for b in full)


def test_data_order_rejects_batch_larger_than_data():
    with pytest.raises(
        ValueError, match=r"--batch-size 5 must be between 1 and the number of examples \(4\)"
    ):
        next(DataOrder(4).batches(0, 5))
