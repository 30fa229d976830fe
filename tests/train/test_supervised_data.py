"""Supervised data: prompt/completion and chat records train on their completions only, in every row mode."""

from __future__ import annotations

import itertools
import json
import logging

import pytest
import torch
import torch.nn.functional as F

from lemo.testing import tiny_model
from lemo.train.data import (
    IGNORE_INDEX,
    ChatRecord,
    CompletionRecord,
    DataOrder,
    TextRecord,
    TokenRecord,
    build_examples,
    collate,
    load_documents,
    load_records,
    tokenize_records,
)

IGN = IGNORE_INDEX


class CharTokenizer:
    """One token per character (code point mod 250); EOS is 255."""

    eos_token_id = 255

    def encode(self, text: str) -> list[int]:
        return [ord(c) % 250 for c in text]


@pytest.fixture(scope="module")
def smol_tok(smollm2):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2)


def _record(prompt_len: int, completion_len: int, start: int) -> TokenRecord:
    """Distinct ids start, start+1, ... so a test can find each record again; -100 on the prompt."""
    ids = list(range(start, start + prompt_len + completion_len))
    return TokenRecord(ids, [IGN] * prompt_len + ids[prompt_len:], f"r{start}")


def _segments(row):
    """(ids, labels, positions) of each record in a packed row, split where positions restart at 0."""
    real = int(row.attention_mask.sum())
    starts = [i for i in range(real) if row.position_ids[i] == 0] + [real]
    return [
        (row.input_ids[a:b].tolist(), row.labels[a:b].tolist(), row.position_ids[a:b].tolist())
        for a, b in itertools.pairwise(starts)
    ]


# ------------------------------------------------------------------------------------------- tokenizing


def test_completion_labels_with_a_fake_tokenizer():
    [rec] = tokenize_records([CompletionRecord("ab", "cd")], CharTokenizer())
    assert list(rec.input_ids) == [97, 98, 99, 100, 255]
    assert list(rec.labels) == [IGN, IGN, 99, 100, 255]


def test_completion_labels_with_smollm2(smol_tok):
    prompt, completion = "Question: what is the capital of France?\nAnswer:", " Paris."
    [rec] = tokenize_records([CompletionRecord(prompt, completion)], smol_tok)
    p = smol_tok.encode(prompt, add_special_tokens=False)
    c = smol_tok.encode(completion, add_special_tokens=False)
    eos = smol_tok.eos_token_id
    assert list(rec.input_ids) == p + c + [eos]
    assert list(rec.labels) == [IGN] * len(p) + c + [eos]


def test_text_records_train_every_token():
    [rec] = tokenize_records([TextRecord("ab")], CharTokenizer())
    assert (list(rec.input_ids), rec.labels) == ([97, 98, 255], None)


def test_chat_labels_only_assistant_turns(smol_tok):
    messages = [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Say bye."},
        {"role": "assistant", "content": "Bye."},
    ]
    [rec] = tokenize_records([ChatRecord(messages)], smol_tok)
    # The pieces are tokenized one by one, yet give the same ids as the template tokenized whole.
    assert list(rec.input_ids) == smol_tok.apply_chat_template(messages)["input_ids"]
    spans, span = [], []
    for tok, lab in zip(rec.input_ids, rec.labels, strict=True):
        if lab == IGN and span:
            spans.append(span)
            span = []
        elif lab != IGN:
            assert lab == tok
            span.append(tok)
    spans += [span] if span else []
    # Each assistant turn's content plus what the template closes the turn with; no role header.
    assert [smol_tok.decode(s) for s in spans] == ["Hello! How can I help?<|im_end|>\n", "Bye.<|im_end|>\n"]


def test_chat_without_a_template_names_the_fix():
    with pytest.raises(
        ValueError, match=r"d\.jsonl:4: a \"messages\" record needs a tokenizer with a chat template"
    ):
        tokenize_records([ChatRecord([{"role": "user", "content": "x"}], "d.jsonl:4")], CharTokenizer())


class RewritingTemplate(CharTokenizer):
    """A template that marks only the last turn, so earlier renders are not prefixes of later ones."""

    chat_template = "fake"

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return "".join(("*" if i == len(messages) - 1 else "") + m["content"] for i, m in enumerate(messages))


def test_chat_template_that_rewrites_earlier_turns_is_refused():
    chat = ChatRecord([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "d.jsonl:1")
    with pytest.raises(ValueError, match=r"d\.jsonl:1: the chat template rewrites earlier turns"):
        tokenize_records([chat], RewritingTemplate())


# ---------------------------------------------------------------------------------------------- loading


def test_mixed_formats_in_one_file(tmp_path):
    path = tmp_path / "mix.jsonl"
    lines = [
        {"text": "plain"},
        {"prompt": "p\r\n", "completion": "c", "id": 7},
        {"messages": [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    records = load_records([path])
    assert [type(r) for r in records] == [TextRecord, CompletionRecord, ChatRecord]
    assert records[1] == CompletionRecord("p\n", "c", f"{path}:2")
    # Text-only callers (perplexity) see supervised records as their plain text.
    assert load_documents([path]) == ["plain", "p\nc", "u\na"]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"prompt": "x"}', '"prompt" and "completion" must both be strings'),
        ('{"prompt": "x", "completion": 3}', '"prompt" and "completion" must both be strings'),
        ('{"messages": []}', '"messages" must be a non-empty list'),
        ('{"messages": [{"role": "user"}]}', 'message 0 needs string "role" and "content" fields'),
        ('{"text": "a", "prompt": "b", "completion": "c"}', "fields of more than one format"),
        ('{"input": "x"}', r'no string "text" field \(got keys \[.input.\]\); accepted formats'),
    ],
)
def test_bad_record_names_file_and_line(tmp_path, line, match):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "ok", "completion": "ok"}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=rf"data\.jsonl:2: {match}"):
        load_records([path])


# ------------------------------------------------------------------------------------------------- rows


def test_pack_keeps_each_records_labels_and_positions():
    records = [_record(20, 10, 0), _record(5, 30, 100), _record(40, 3, 200), _record(1, 12, 300)]
    records.append(TokenRecord(list(range(400, 450))))  # plain text beside them
    rows = build_examples(records, seq_len=64, mode="pack", block_size=16, pad_id=999)
    found = {seg[0][0]: seg for row in rows for seg in _segments(row)}
    assert len(found) == len(records)
    for rec in records:
        ids, labels, positions = found[rec.input_ids[0]]
        assert ids == list(rec.input_ids)
        assert labels == (list(rec.input_ids) if rec.labels is None else list(rec.labels))
        assert positions == list(range(len(ids)))
    for row in rows:
        assert (row.labels[~row.attention_mask.bool()] == IGN).all()


def test_pack_cuts_a_long_prompt_from_the_left(caplog):
    long = _record(100, 20, 0)  # 120 tokens > 64
    with caplog.at_level(logging.WARNING):
        rows = build_examples([long, _record(10, 10, 500)], seq_len=64, mode="pack", block_size=16)
    assert "1 supervised records are longer than --seq-len 64" in caplog.text
    [(ids, labels, positions)] = [s for r in rows for s in _segments(r) if s[0][-1] == 119]
    assert ids == list(range(56, 120)) and positions == list(range(64))
    assert labels == [IGN] * 44 + list(range(100, 120))  # the whole completion, 44 prompt tokens before it


def test_pack_refuses_a_completion_longer_than_a_row():
    with pytest.raises(
        ValueError, match=r"r0: its completion holds 64 tokens.*raise --seq-len to at least 65"
    ):
        build_examples([_record(10, 64, 0)], seq_len=64, mode="pack", block_size=16)


def test_chunk_labels_follow_their_tokens_across_the_cut():
    records = [
        _record(30, 50, 0),
        _record(20, 30, 100),
    ]  # 130 tokens -> 2 rows of 64; the first completion is cut
    rows = build_examples(records, seq_len=64, mode="chunk", block_size=16)
    assert len(rows) == 2
    flat_labels = [y for r in records for y in r.labels]
    assert torch.cat([r.labels for r in rows]).tolist() == flat_labels[:128]
    assert torch.cat([r.input_ids for r in rows]).tolist() == [t for r in records for t in r.input_ids][:128]
    assert rows[1].labels[0].item() == 64  # token 64 (mid-completion) keeps its label in the next row


def test_chunk_drops_rows_of_prompt_text_only(caplog):
    records = [_record(140, 10, 0)]  # rows 0 and 1 hold only prompt; row 2 holds the completion
    with caplog.at_level(logging.INFO):
        rows = build_examples(records * 2, seq_len=64, mode="chunk", block_size=16)
    assert "hold only prompt text" in caplog.text
    assert all((r.labels[1:] != IGN).any() for r in rows)
    with pytest.raises(ValueError, match=r"no row of --seq-len 64 holds a completion token"):
        build_examples([_record(130, 1, 0)], seq_len=64, mode="chunk", block_size=16)


def test_records_without_labels_are_skipped(caplog):
    empty = TokenRecord([1, 2, 3], [IGN] * 3, "d.jsonl:9")
    with caplog.at_level(logging.WARNING):
        rows = build_examples([empty, _record(10, 10, 100)], seq_len=64, mode="pack", block_size=16)
    assert "1 of 2 records have no token to train on" in caplog.text and "d.jsonl:9" in caplog.text
    assert [s[0][0] for r in rows for s in _segments(r)] == [100]


# ------------------------------------------------------------------------------------------------- loss


@pytest.mark.parametrize("mode", ["chunk", "pack"])
def test_loss_counts_completion_tokens_only(mode):
    model = tiny_model("llama", layers=2, vocab=256).eval()
    tok = CharTokenizer()
    pairs = [
        ("the prompt is long enough here ", "and this completes it."),
        ("q? ", "an answer that runs on."),
    ]
    records = tokenize_records([CompletionRecord(p, c) for p, c in pairs * 2], tok)
    rows = build_examples(records, seq_len=64, mode=mode, block_size=16, pad_id=0)
    batch = collate(rows)
    with torch.no_grad():
        out = model(**batch)
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits  # [B, T, V]
    # By hand: position t predicts token t+1; keep the targets that are completion tokens.
    targets, chosen = [], []
    for b, row in enumerate(rows):
        tokens = row.input_ids.tolist()
        completion = torch.zeros(len(tokens), dtype=torch.bool)  # [T]
        if mode == "pack":
            pos = 0
            for seg_ids, _, _ in _segments(row):
                prompt_len = next(len(tok.encode(p)) for p, c in pairs if seg_ids[0] == tok.encode(p)[0])
                completion[pos + prompt_len : pos + len(seg_ids)] = True
                pos += len(seg_ids)
        else:
            marks = [m for p, c in pairs * 2 for m in [False] * len(p) + [True] * (len(c) + 1)]
            completion[:] = torch.tensor(marks[b * 64 : (b + 1) * 64])
        for t in range(len(tokens) - 1):
            if completion[t + 1]:
                chosen.append(logits[b, t])
                targets.append(tokens[t + 1])
    expected = F.cross_entropy(torch.stack(chosen), torch.tensor(targets))
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)


def test_unlabelled_rows_are_harmless_in_a_batch_but_not_alone():
    """Why `build_examples` drops rows without labels: both losses average over the batch's scored tokens."""
    from lemo.ops import segmented_cross_entropy

    model = tiny_model("llama", layers=1, vocab=256).eval()
    ids = torch.randint(0, 256, (2, 64))  # [B, T]
    labels = ids.clone()
    labels[0] = IGN  # row 0: prompt only
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=ids, labels=labels).loss)  # HF's loss, one row scored
        assert torch.isnan(model(input_ids=ids, labels=torch.full_like(ids, IGN)).loss)  # 0 / 0
        hidden, weight = torch.randn(8, 4), torch.randn(16, 4)  # lemo's segmented loss: the same 0 / 0
        assert torch.isnan(
            segmented_cross_entropy(hidden, weight, torch.full((8,), IGN), backend="reference")
        )


# --------------------------------------------------------------------------------------------- finetune


def _qa_file(tmp_path, austen_dir):
    words = (austen_dir / "emma.txt").read_text()[:20_000].split()
    lines = []
    for i in range(40):
        prompt = " ".join(words[i * 30 : i * 30 + 25]) + "\nContinue:"
        lines.append({"prompt": prompt, "completion": " " + " ".join(words[i * 30 + 25 : i * 30 + 30])})
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


@pytest.mark.parametrize(("mode", "sparse"), [("pack", False), ("chunk", True)])
def test_finetune_on_prompt_completion_trains_completions_only(
    tiny_model_dir, austen_dir, tmp_path, mode, sparse
):
    from transformers import AutoTokenizer

    from lemo.config import FinetuneConfig
    from lemo.integrations.transformers.loading import load_model
    from lemo.train.loop import finetune

    data = _qa_file(tmp_path, austen_dir)
    cfg = FinetuneConfig(
        model=str(tiny_model_dir),
        data=[str(data)],
        seq_len=128,
        data_mode=mode,
        steps=2,
        batch_size=2,
        save_every=0,
        lr=1e-2,
        warmup_steps=0,
        device="cpu",
        output_dir=str(tmp_path / "run"),
        progress=False,
        sparse=sparse,
        # keep_ratio 1: elimination keeps every token, so lemo's own (segmented) loss equals the dense one.
        sparsity={"block_size": 16, "keep_ratio": 1.0},
    )
    result = finetune(cfg)
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))

    # Step 0's loss by hand: LoRA starts as the identity, so the base model scores the first batch.
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = build_examples(
        tokenize_records(load_records([data]), tok), 128, mode, block_size=16, pad_id=tok.pad_token_id
    )
    batch = collate([rows[i] for i in next(DataOrder(len(rows), seed=cfg.seed).batches(0, 2))])
    model, _ = load_model(tiny_model_dir, dtype=torch.float32, device=torch.device("cpu"))
    with torch.no_grad():
        logits = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=batch["attention_mask"],
        ).logits  # [B, T, V]
    targets = batch["labels"][:, 1:]  # [B, T-1]
    scored = targets != IGN  # [B, T-1]: completion tokens (and their EOS) only
    completion_ce = F.cross_entropy(logits[:, :-1][scored], targets[scored])
    assert result.losses[0] == pytest.approx(completion_ce.item(), rel=1e-4)
    all_ce = F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["input_ids"][:, 1:].flatten())
    assert abs(result.losses[0] - all_ce.item()) > 0.01  # it is not the every-token loss
    assert scored.sum() < 0.5 * scored.numel()


def test_cli_finetune_on_a_chat_file(tiny_model_dir, tmp_path):
    from lemo.cli.__main__ import main

    def chat(n: int) -> dict:
        return {
            "messages": [
                {"role": "user", "content": f"Count to {n}, please."},
                {"role": "assistant", "content": " ".join(str(i) for i in range(1, n + 1))},
            ]
        }

    data = tmp_path / "chat.jsonl"
    data.write_text("\n".join(json.dumps(chat(n)) for n in range(3, 30)) + "\n")
    args = ["finetune", "--model", str(tiny_model_dir), "--data", str(data), "--seq-len", "128"]
    args += ["--data-mode", "pack", "--block-size", "16", "--steps", "2", "--no-progress"]
    assert main([*args, "--output-dir", str(tmp_path / "run")]) == 0
    assert (tmp_path / "run" / "adapter").is_dir()
