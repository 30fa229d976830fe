"""Training data: files of documents or supervised records in, fixed-length rows out, in a resumable order.

The pipeline: `load_records` (files -> typed records) -> `tokenize_records` (records -> `TokenRecord`: token
ids plus per-token labels) -> `build_examples` (token records -> `Example` rows of `seq_len` tokens) ->
`DataOrder` (which rows each optimizer step sees) -> `collate` (rows -> a [B, T] batch). Text-only callers
(perplexity, calibration) use `load_documents` (files -> strings) and `tokenize_documents` instead.

Record formats (JSONL, detected per line; a .txt file is one text record):
- {"text": ...}: language modelling, every token is trained on.
- {"prompt": ..., "completion": ...}: only the completion and the EOS after it are trained on.
- {"messages": [{"role": ..., "content": ...}, ...]}: rendered with the tokenizer's chat template; only the
  assistant turns are trained on.

Two ways to make rows:
- "chunk": concatenate every record and cut consecutive rows; positions run 0..seq_len-1 in every row, so
  a row may span a record boundary (the EOS marks it). Labels travel with their tokens across the cut.
  Nothing is padded; a tail shorter than a row is dropped, and so is a row with no label to learn from.
- "pack": place whole records into rows with greedy first-fit; positions restart at 0 at each record, so
  RoPE sees every record from its own start. Unused row tails are padding (labels -100, attention_mask 0).
  A text longer than a row is cut into row-sized pieces; a supervised record longer than a row loses the
  start of its prompt instead, so its completion is never separated from the context it answers.
"""

from lemo.train.data.files import load_documents, load_records
from lemo.train.data.order import DataOrder
from lemo.train.data.records import (
    IGNORE_INDEX,
    ChatRecord,
    CompletionRecord,
    Record,
    TextRecord,
    TokenRecord,
    parse_record,
    record_text,
    tokenize_documents,
    tokenize_records,
)
from lemo.train.data.rows import Example, Mode, build_examples, collate

__all__ = [
    "IGNORE_INDEX",
    "ChatRecord",
    "CompletionRecord",
    "DataOrder",
    "Example",
    "Mode",
    "Record",
    "TextRecord",
    "TokenRecord",
    "build_examples",
    "collate",
    "load_documents",
    "load_records",
    "parse_record",
    "record_text",
    "tokenize_documents",
    "tokenize_records",
]
