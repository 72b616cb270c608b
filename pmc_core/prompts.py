"""Prompt sets: reading and writing JSONL/CSV, built-in sets, prompt formatting and padded training batches."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parent.parent / "assets"
BUILTIN_SETS = {"forget": ASSETS / "forget_default.jsonl", "retain": ASSETS / "retain_default.jsonl"}
FIELDS = ("question", "answer", "paraphrase")


class PromptFileError(ValueError):
    """A prompt file or text that cannot be read; names the source, the line and the field at fault."""

    def __init__(self, source: str, line: int | None, field: str | None, problem: str):
        self.source, self.line, self.field, self.problem = source, line, field, problem
        where = source + (f", line {line}" if line is not None else "") + (f", field '{field}'" if field else "")
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class PromptItem:
    question: str
    answer: str | None = None  # ground truth: monitoring and evaluation only, never in the PMC gradient
    paraphrase: str | None = None  # the same question in other words, for the generalisation check

    def to_dict(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def _item_from_mapping(row: dict, source: str, line: int) -> PromptItem:
    unknown = [key for key in row if key not in FIELDS and key is not None]
    if unknown:
        raise PromptFileError(source, line, unknown[0], f"unknown field (allowed: {', '.join(FIELDS)})")
    values: dict[str, str | None] = {}
    for key in FIELDS:
        value = row.get(key)
        if value is not None and not isinstance(value, str):
            raise PromptFileError(source, line, key, f"must be text, got {type(value).__name__}")
        values[key] = value.strip() if value and value.strip() else None
    if not values["question"]:
        raise PromptFileError(source, line, "question", "missing or empty")
    return PromptItem(**values)


def parse_prompts(text: str, source: str, fmt: str) -> list[PromptItem]:
    """Parse JSONL or CSV text into prompt items; `source` names it in errors."""
    if fmt == "jsonl":
        items = []
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except json.JSONDecodeError as error:
                raise PromptFileError(source, number, None, f"not valid JSON ({error.msg}, column {error.colno})") from None
            if not isinstance(row, dict):
                raise PromptFileError(source, number, None, "each line must be a JSON object like {\"question\": ...}")
            items.append(_item_from_mapping(row, source, number))
        return items
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "question" not in reader.fieldnames:
            raise PromptFileError(source, 1, "question", "the CSV header must have a 'question' column")
        items = []
        for row in reader:
            if None in row:
                raise PromptFileError(source, reader.line_num, None, "more cells than header columns")
            if not any((value or "").strip() for value in row.values()):
                continue
            items.append(_item_from_mapping(row, source, reader.line_num))
        return items
    raise PromptFileError(source, None, None, f"unknown format {fmt!r}: use .jsonl or .csv")


def format_of(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    return {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}.get(suffix, suffix.lstrip("."))


def read_prompt_bytes(data: bytes, source: str) -> list[PromptItem]:
    """Decode and parse the bytes of a prompt file (a path or an upload); the format comes from `source`'s suffix."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PromptFileError(source, None, None, f"not UTF-8 text ({error.reason})") from None
    return parse_prompts(text, source, format_of(source))


def load_prompts(path: str | Path) -> list[PromptItem]:
    """Read a .jsonl or .csv prompt file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PromptFileError(str(path), None, None, "no such file") from None
    return read_prompt_bytes(data, str(path))


def dump_prompts(items: list[PromptItem], fmt: str) -> str:
    """Write prompt items as JSONL or CSV text."""
    if fmt == "jsonl":
        return "".join(json.dumps(item.to_dict(), ensure_ascii=False) + "\n" for item in items)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(FIELDS))
        writer.writeheader()
        for item in items:
            writer.writerow({key: getattr(item, key) or "" for key in FIELDS})
        return buffer.getvalue()
    raise PromptFileError("output", None, None, f"unknown format {fmt!r}: use jsonl or csv")


def save_prompts(items: list[PromptItem], path: str | Path) -> None:
    Path(path).write_text(dump_prompts(items, format_of(path)), encoding="utf-8")


def load_builtin(name: str) -> list[PromptItem]:
    """A built-in set shipped in assets/: 'forget' or 'retain'."""
    if name not in BUILTIN_SETS:
        raise KeyError(f"unknown built-in set {name!r} (known: {', '.join(BUILTIN_SETS)})")
    return load_prompts(BUILTIN_SETS[name])


def format_prompt(tokenizer, question: str) -> str:
    """The text the model sees before its answer: the chat template if it has one, else Question/Answer tags."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
    return f"Question: {question}\nAnswer: "


def prompt_ids(tokenizer, question: str) -> list[int]:
    """Token ids of the formatted prompt; a chat template already holds its special tokens."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    return tokenizer(format_prompt(tokenizer, question), add_special_tokens=not has_template)["input_ids"]


def answer_ids(tokenizer, answer: str) -> list[int]:
    """Token ids of an answer followed by end-of-sequence, so the model learns where to stop."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    return ids + ([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])


def pad_left(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists to the longest (for generation). Example: [[1], [2, 3]] -> ids [[p, 1], [2, 3]]."""
    width = max(len(seq) for seq in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq):] = torch.tensor(seq)
            mask[row, width - len(seq):] = 1
    return ids, mask


def build_batch(tokenizer, questions: list[str], answers: list[str]) -> dict[str, torch.Tensor]:
    """Right-padded (prompt + answer) batch whose labels are -100 on prompt and padding tokens.

    Padded to the longest sequence in this batch, never to a fixed length.
    """
    rows = [(prompt_ids(tokenizer, q), answer_ids(tokenizer, a)) for q, a in zip(questions, answers, strict=True)]
    width = max(len(p) + len(a) for p, a in rows)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for row, (prompt, answer) in enumerate(rows):
        full = prompt + answer
        input_ids[row, : len(full)] = torch.tensor(full)
        attention_mask[row, : len(full)] = 1
        labels[row, len(prompt): len(full)] = torch.tensor(answer)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
