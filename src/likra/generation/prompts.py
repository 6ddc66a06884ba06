"""`likra generate`'s settings and its prompt files: JSONL in (one `prompt` a line), JSONL out."""

from __future__ import annotations

from pathlib import Path

from likra.config import option, settings
from likra.data.records import jsonl_objects
from likra.errors import LikraError
from likra.generation.decoder import GenerationSettings
from likra.model.loading import QUANTIZE, ModelSettings, RunQuantizeOption


@settings
class GenerateConfig(GenerationSettings, ModelSettings):
    """`likra generate`: a run's heads (or a plain model, mode base) continue prompts in a mode."""

    run: str | None = option(None, help="run folder written by `likra train`")
    model: str | None = option(None, help="a plain model instead of a run (mode base only)")
    quantize: RunQuantizeOption = option(
        None, help="load the base in 4-bit NF4 (bitsandbytes); default: as the run was trained", choices=QUANTIZE
    )
    prompt: str | None = option(None, help="one prompt to continue")
    data: str | None = option(None, help="JSONL file of prompts, one object a line with a 'prompt' field")
    out: str | None = option(None, help="write the generations as JSONL here (default: print them)")
    overwrite: bool = option(False, help="replace an existing --out file")


def read_prompts(path: str | Path) -> list[dict]:
    """The objects of a JSONL prompt file, each with a non-empty string `prompt` (and optional `id`);
    a bad line is a LikraError naming file:line."""
    path = Path(path)
    if not path.is_file():
        raise LikraError(f"{path}: no such file")
    rows = []
    for where, _, obj in jsonl_objects(path):
        if "prompt" not in obj:
            raise LikraError(f"{where}: missing field 'prompt'")
        if not isinstance(obj["prompt"], str):
            raise LikraError(f"{where}: field 'prompt' must be a string")
        if not obj["prompt"].strip():
            raise LikraError(f"{where}: empty prompt")
        rows.append(obj)
    if not rows:
        raise LikraError(f"{path}: no prompts")
    return rows


def unescape(text: str) -> str:
    """`\\n`, `\\t` and `\\\\` in a stop string typed on a command line, as the characters."""
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "nt\\":
            out.append({"n": "\n", "t": "\t", "\\": "\\"}[text[i + 1]])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)
