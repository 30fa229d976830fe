"""Reading data files: .txt (one text per file) and .jsonl (one record per line), or folders of them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from lemo.train.data.records import FORMATS, Record, TextRecord, parse_record, record_text

_SUFFIXES = (".txt", ".jsonl")


def load_records(paths: Sequence[str | Path]) -> list[Record]:
    """Read records from .txt files (one `TextRecord` per file) and .jsonl files (one record per line, its
    format detected per line: text, prompt/completion or messages; see `parse_record`).

    A directory stands for every .txt/.jsonl file directly inside it, in sorted order. Line endings are
    normalised to "\\n"; empty (whitespace-only) text records are dropped.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a file has an unsupported suffix, a JSONL line is bad (the message names file:line), or
            no record has any text.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]  # a lone path is an easy slip; accept it rather than iterate over its characters
    records: list[Record] = []
    for file in _expand(paths):
        records.extend(
            _read_jsonl(file) if file.suffix == ".jsonl" else [TextRecord(_read_text(file), str(file))]
        )
    records = [r for r in records if not isinstance(r, TextRecord) or r.text.strip()]
    if not records:
        raise _empty(paths)
    return records


def load_documents(paths: Sequence[str | Path]) -> list[str]:
    """`load_records` as plain strings, for text-only uses (perplexity, calibration): a prompt/completion
    record becomes prompt + completion, a conversation its messages' contents, one per line."""
    docs = [record_text(r) for r in load_records(paths)]
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise _empty([paths] if isinstance(paths, (str, Path)) else paths)
    return docs


def _empty(paths: Sequence[str | Path]) -> ValueError:
    where = str(paths[0]) if len(paths) == 1 else "the input (" + ", ".join(map(str, paths)) + ")"
    return ValueError(f"{where} is empty; pass a file with text.")


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise FileNotFoundError(
                f"{path} does not exist; check the path or pass a .txt/.jsonl file or a folder."
            )
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in _SUFFIXES)
            if not found:
                raise ValueError(
                    f"{path} is empty; pass a file with text (a folder is read for .txt/.jsonl)."
                )
            files.extend(found)
        elif path.suffix in _SUFFIXES:
            files.append(path)
        else:
            raise ValueError(
                f"{path}: unsupported file type {path.suffix!r}; pass .txt (one document per file) or .jsonl "
                f"(one JSON object per line; {FORMATS})."
            )
    return files


def _read_text(path: Path) -> str:
    try:
        text = path.read_bytes().decode("utf-8-sig")  # -sig: drop a BOM left by Windows editors
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not valid UTF-8 ({err.reason} at byte {err.start}); re-save it as UTF-8."
        ) from err
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _read_jsonl(path: Path) -> list[Record]:
    records = []
    for lineno, line in enumerate(_read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(
                f"{where}: not valid JSON ({err.msg}); each line must be one JSON object; {FORMATS}."
            ) from err
        records.append(parse_record(obj, where))
    return records
