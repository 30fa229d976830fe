"""Record formats and their tokenization: a record in, token ids plus per-token labels out.

Labels sit under their own tokens (unshifted, as HF expects `labels`): the model's loss shifts them, so the
label at position t is the target of the prediction made at position t - 1. IGNORE_INDEX marks tokens that
are context only (prompts, user turns, padding).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

IGNORE_INDEX = -100
"""Label value that `torch.nn.functional.cross_entropy` (and HF losses) skip."""

FORMATS = (
    'accepted formats: {"text": "..."}, {"prompt": "...", "completion": "..."}, or '
    '{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}'
)


@dataclass
class TextRecord:
    """Plain text: every token is trained on."""

    text: str
    source: str = ""
    """Where the record came from ("data.jsonl:3"), for error messages."""


@dataclass
class CompletionRecord:
    """A prompt and its completion: only the completion (and the EOS after it) is trained on."""

    prompt: str
    completion: str
    source: str = ""


@dataclass
class ChatRecord:
    """A conversation, rendered with the tokenizer's chat template: only assistant turns are trained on."""

    messages: list[dict[str, str]]
    """[{"role": ..., "content": ...}, ...]; "assistant" messages are the trained ones."""
    source: str = ""


Record = TextRecord | CompletionRecord | ChatRecord


def parse_record(obj: Any, where: str) -> Record:
    """The record in one decoded JSONL line; `where` ("file:line") prefixes every error.

    Extra fields are ignored, but fields of two formats in one object are refused: which one to train on
    would be a guess.
    """
    if not isinstance(obj, dict):
        raise ValueError(f'{where}: no string "text" field (got {type(obj).__name__}); {FORMATS}.')
    found = [name for name, keys in _KEYS.items() if any(k in obj for k in keys)]
    if len(found) > 1:
        raise ValueError(
            f"{where}: fields of more than one format ({', '.join(found)}); keep one format per line; {FORMATS}."
        )
    if not found or (found == ["text"] and not isinstance(obj["text"], str)):
        raise ValueError(f'{where}: no string "text" field (got keys {sorted(obj)}); {FORMATS}.')
    if found == ["text"]:
        return TextRecord(_lf(obj["text"]), where)
    if found == ["prompt/completion"]:
        if not (isinstance(obj.get("prompt"), str) and isinstance(obj.get("completion"), str)):
            raise ValueError(
                f'{where}: "prompt" and "completion" must both be strings (got keys {sorted(obj)}); {FORMATS}.'
            )
        return CompletionRecord(_lf(obj["prompt"]), _lf(obj["completion"]), where)
    messages = obj["messages"]
    if not isinstance(messages, list) or not messages:
        raise ValueError(f'{where}: "messages" must be a non-empty list of messages; {FORMATS}.')
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)):
            got = f"keys {sorted(m)}" if isinstance(m, dict) else type(m).__name__
            raise ValueError(
                f'{where}: message {i} needs string "role" and "content" fields (got {got}); {FORMATS}.'
            )
    return ChatRecord([{**m, "content": _lf(m["content"])} for m in messages], where)


_KEYS = {"text": ("text",), "prompt/completion": ("prompt", "completion"), "messages": ("messages",)}


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def record_text(record: Record) -> str:
    """The record as plain text (for perplexity and calibration): prompt + completion, or the turns' contents
    one per line."""
    if isinstance(record, TextRecord):
        return record.text
    if isinstance(record, CompletionRecord):
        return record.prompt + record.completion
    return "\n".join(m["content"] for m in record.messages)


@dataclass
class TokenRecord:
    """One tokenized record: what `build_examples` cuts or packs into rows."""

    input_ids: Sequence[int]
    labels: Sequence[int] | None = None
    """One label per token, IGNORE_INDEX where nothing is learned; None: every token is trained on."""
    source: str = ""

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.input_ids):
            raise ValueError(
                f"{self.source or 'TokenRecord'}: {len(self.labels)} labels for {len(self.input_ids)} tokens; "
                "pass one label per token."
            )


def tokenize_documents(docs: Sequence[str], tokenizer: Any) -> list[list[int]]:
    """Token ids per document, without BOS or other special tokens, plus one EOS when the tokenizer has one.

    `tokenizer` is a HF tokenizer or any object with `encode(text) -> list[int]` and, optionally,
    `eos_token_id`. The EOS marks document boundaries inside chunked rows, so the model learns where a text
    ends.
    """
    encode, eos = _encoder(tokenizer), _eos(tokenizer)
    return [encode(doc) + eos for doc in docs]


def tokenize_records(records: Sequence[Record], tokenizer: Any) -> list[TokenRecord]:
    """Token ids and labels per record.

    - text: as `tokenize_documents`, labels None (every token trained on);
    - prompt/completion: each tokenized on its own (no special tokens), then prompt + completion + EOS;
      labels IGNORE_INDEX on the prompt, the ids on the completion and the EOS;
    - messages: the chat template rendered prefix by prefix (see `_tokenize_chat`); labels on what each
      assistant message adds after its role header (its content and end-of-turn tokens). No EOS is added:
      the template ends each turn itself.

    Raises:
        ValueError: a chat record and a tokenizer without a chat template, or a template that cannot be
            rendered prefix by prefix.
    """
    encode, eos = _encoder(tokenizer), _eos(tokenizer)
    out = []
    for rec in records:
        if isinstance(rec, TextRecord):
            out.append(TokenRecord(encode(rec.text) + eos, None, rec.source))
        elif isinstance(rec, CompletionRecord):
            prompt, completion = encode(rec.prompt), encode(rec.completion) + eos
            labels = [IGNORE_INDEX] * len(prompt) + completion
            out.append(TokenRecord(prompt + completion, labels, rec.source))
        else:
            out.append(_tokenize_chat(rec, tokenizer, encode))
    return out


def _encoder(tokenizer: Any) -> Callable[[str], list[int]]:
    kwargs: dict[str, Any] = {}
    if _accepts(tokenizer.encode, "add_special_tokens"):
        # verbose=False silences HF's "longer than model_max_length" warning: long rows are the point here.
        kwargs = {"add_special_tokens": False, "verbose": False}
    return lambda text: list(tokenizer.encode(text, **kwargs))


def _eos(tokenizer: Any) -> list[int]:
    eos = getattr(tokenizer, "eos_token_id", None)
    return [] if eos is None else [int(eos)]


def _accepts(fn: Any, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins and C extensions may have no signature
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _tokenize_chat(rec: ChatRecord, tokenizer: Any, encode: Callable[[str], list[int]]) -> TokenRecord:
    """Render messages[:1], messages[:2], ... and label the text each assistant message adds.

    Diffing renders of growing prefixes finds assistant tokens for any template, without parsing it or
    relying on `return_assistant_tokens_mask` (which needs {% generation %} markers few templates have).
    Each added piece of text is tokenized on its own, so a token never straddles a label boundary; turn
    boundaries are special tokens or newlines, where BPE does not merge anyway. The role header of an
    assistant turn ("<|im_start|>assistant\\n") is the template's generation prompt: it is context, not
    trained, when the template renders it as a prefix of the turn.
    """
    if not callable(getattr(tokenizer, "apply_chat_template", None)) or not getattr(
        tokenizer, "chat_template", None
    ):
        raise ValueError(
            f'{rec.source}: a "messages" record needs a tokenizer with a chat template, and this one has none; '
            'use {"prompt": ..., "completion": ...} records instead, or a --model whose tokenizer has a chat '
            "template."
        )

    def render(n: int, generation_prompt: bool = False) -> str:
        if n == 0:
            return ""  # HF refuses to render an empty conversation
        try:
            return tokenizer.apply_chat_template(
                rec.messages[:n], tokenize=False, add_generation_prompt=generation_prompt
            )
        except Exception as err:  # jinja raises its own errors, e.g. for roles out of order
            raise ValueError(
                f"{rec.source}: the chat template cannot render this conversation ({err}); fix the record "
                "or use prompt/completion records."
            ) from err

    ids: list[int] = []
    labels: list[int] = []
    done = ""  # the rendered text tokenized so far

    def extend(upto: str, trained: bool) -> None:
        nonlocal done
        if not upto.startswith(done):
            raise ValueError(
                f"{rec.source}: the chat template rewrites earlier turns as the conversation grows, so the "
                "assistant tokens cannot be found; use prompt/completion records for this data."
            )
        piece = encode(upto[len(done) :])
        ids.extend(piece)
        labels.extend(piece if trained else [IGNORE_INDEX] * len(piece))
        done = upto

    for i, message in enumerate(rec.messages):
        turn = render(i + 1)
        if message["role"] == "assistant":
            header = render(i, generation_prompt=True)
            if header.startswith(done) and turn.startswith(header):
                extend(header, trained=False)
            extend(turn, trained=True)
        else:
            extend(turn, trained=False)
    return TokenRecord(ids, labels, rec.source)
