"""Run folders: config.json, forget/retain sets, history.jsonl (appended per iteration), snapshots, summary.json."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import io
import json
import os
import platform
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmc_core.config import RunConfig
from pmc_core.prompts import PromptItem, load_prompts, save_prompts

RUNS_ENV = "PMC_LAB_RUNS"
VERSIONED = ("torch", "transformers", "peft", "accelerate", "rouge-score", "safetensors", "gguf")


class RunFolderError(ValueError):
    """A run folder that cannot be read; names the file and line."""


def runs_root() -> Path:
    """Where runs are saved by default: $PMC_LAB_RUNS, else ./runs."""
    return Path(os.environ.get(RUNS_ENV) or "runs")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def new_run_dir(root: Path | None = None, label: str = "run") -> Path:
    """A fresh, timestamped folder name under `root` (not yet created)."""
    root = Path(root or runs_root())
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = root / f"{stamp}-{label}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{stamp}-{label}-{suffix}"
    return candidate


def write_run_start(folder: Path, config: RunConfig, forget: list[PromptItem], retain: list[PromptItem],
                    model_info: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "snapshots").mkdir(exist_ok=True)
    extra = {
        "seed": config.seed,
        "versions": library_versions(),
        "model_info": model_info,
        "created": dt.datetime.now().isoformat(timespec="seconds"),
    }
    config.save(folder / "config.json", extra)
    save_prompts(forget, folder / "forget.jsonl")
    save_prompts(retain, folder / "retain.jsonl")
    (folder / "history.jsonl").touch()


def append_record(folder: Path, record: dict[str, Any]) -> None:
    """Append one iteration and flush it to disk, so a crash loses at most the iteration in flight."""
    with open(folder / "history.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def write_history(folder: Path, records: list[dict[str, Any]]) -> None:
    """Replace history.jsonl with `records` (after a rewind, or when the last record gained its final evaluation)."""
    (folder / "history.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                                          encoding="utf-8")


def snapshot_iterations(folder: Path) -> list[int]:
    """Iterations with a weight snapshot in folder/snapshots. Example: iter_0000, iter_0003 -> [0, 3]."""
    return sorted(int(p.stem.split("_")[1]) for p in (Path(folder) / "snapshots").glob("iter_*.safetensors"))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    staging = path.with_suffix(path.suffix + ".tmp")
    staging.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    staging.replace(path)


def read_history(path: Path) -> list[dict[str, Any]]:
    """Records of history.jsonl; a torn last line (a crash mid-write) is dropped, any other bad line is an error."""
    lines = path.read_text(encoding="utf-8").splitlines()
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                break
            raise RunFolderError(f"{path}, line {number}: not valid JSON ({error.msg})") from None
    return records


@dataclass
class SavedRun:
    folder: Path
    config: RunConfig
    meta: dict[str, Any]
    forget: list[PromptItem]
    retain: list[PromptItem]
    history: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def snapshot_iterations(self) -> list[int]:
        return snapshot_iterations(self.folder)


def load_run(folder: str | Path) -> SavedRun:
    """Read a run folder written by PMCRun (here or by the CLI on another machine)."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise RunFolderError(f"{folder} is not a run folder: it has no config.json")
    meta = json.loads(config_path.read_text())
    config = RunConfig.load(config_path)
    history_path = folder / "history.jsonl"
    history = read_history(history_path) if history_path.is_file() else []
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    forget = load_prompts(folder / "forget.jsonl") if (folder / "forget.jsonl").is_file() else []
    retain = load_prompts(folder / "retain.jsonl") if (folder / "retain.jsonl").is_file() else []
    return SavedRun(folder, config, {k: v for k, v in meta.items() if k != "config"}, forget, retain, history, summary)


def list_runs(root: Path | None = None) -> list[dict[str, Any]]:
    """One row per run folder under `root`, newest first: name, model, iterations, summary figures."""
    root = Path(root or runs_root())
    rows = []
    for config_path in sorted(root.glob("*/config.json"), reverse=True):
        folder = config_path.parent
        try:
            meta = json.loads(config_path.read_text())
            history_path = folder / "history.jsonl"
            iterations = sum(1 for line in history_path.read_text().splitlines() if line.strip()) - 1 if history_path.is_file() else 0
            summary_path = folder / "summary.json"
            summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        except (OSError, json.JSONDecodeError) as error:
            rows.append({"name": folder.name, "path": str(folder), "error": str(error)})
            continue
        rows.append({
            "name": folder.name,
            "path": str(folder),
            "created": meta.get("created"),
            "model": meta.get("config", {}).get("model", {}).get("source"),
            "method": meta.get("config", {}).get("method", {}).get("name"),
            "iterations": max(iterations, 0),
            "finished": bool(summary),
            "forget_rouge_after": summary.get("forget_rouge_after"),
            "retain_rouge_after": summary.get("retain_rouge_after"),
        })
    return rows


def delete_run(folder: str | Path) -> None:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise RunFolderError(f"refusing to delete {folder}: it is not a run folder (no config.json)")
    shutil.rmtree(folder)


def zip_run(folder: str | Path) -> bytes:
    """The whole run folder as zip bytes, for download."""
    folder = Path(folder)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, Path(folder.name) / path.relative_to(folder))
    return buffer.getvalue()
