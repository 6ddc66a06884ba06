"""Prompt formats (cloze | letter), the chat template, and the one loader that applies them to any data spec.

- **cloze** (default): the benchmark's own prompt, each choice scored as " " + its text.
- **letter**: lm-eval's `mmlu` prompt for every multiple-choice record,

      {question}\\nA. {choice 0}\\nB. {choice 1}\\n...\\nAnswer:      scored on " A", " B", ...

  where {question} is the question alone: the cloze prompt without its "Question: " opening and its
  "\\nAnswer:" ending when it has them (MMLU's stripped question, as the harness's `question.strip()`), else
  the cloze prompt without a trailing "\\nAnswer:". MMLU records start with the harness's task description
  ("The following are multiple choice questions (with answers) about {subject}.\\n\\n"), so at 0 shots the
  context equals the harness's `mmlu_<subject>` context; few-shot examples carry no description and come
  first (the harness puts its description before the shots).
- **chat template** (`--chat-template`): the prompt becomes one user turn rendered with the tokenizer's chat
  template and `add_generation_prompt=True`; the answer follows the assistant header directly (no space:
  lm-eval's `--apply_chat_template` drops the target delimiter the same way). Training and scoring use the
  same rendering. A BOS the template writes is dropped when likra adds the BOS token itself.

Preference pairs (`likra.data.preferences`) are detected by their keys: a JSONL file whose first row has
`chosen`/`rejected`, a `save_to_disk` folder, or a hub dataset `owner/name:split`. They are two-choice
records; `letter` does not apply to them, and the chat template renders their conversations.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from likra.config import option, settings
from likra.data.benchmarks import BENCHMARKS, SOURCES, check_unique_ids, default_fewshot_spec, load_spec
from likra.data.examples import FEWSHOT_SEED, draw_shots
from likra.data.lmeval_tasks import is_lmeval, lmeval_records, task_identity
from likra.data.records import MCRecord
from likra.errors import LikraError

log = logging.getLogger(__name__)

FORMATS = ("cloze", "letter")
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_QUESTION = re.compile(r"Question: (.*)\nAnswer:", re.S)
_HUB_PREFS = re.compile(r"([\w.-]+/[\w.-]+):([\w.+-]+)")


def mmlu_description(subject: str) -> str:
    """lm-eval's description of task `mmlu_<subject>`."""
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def question_stem(prompt: str) -> str:
    """The question of a cloze prompt, as the letter format shows it."""
    match = _QUESTION.fullmatch(prompt)
    if match:
        return match.group(1)
    return prompt[: -len("\nAnswer:")] if prompt.endswith("\nAnswer:") else prompt


def letter_record(rec: MCRecord, description: bool = True) -> MCRecord:
    """`rec` in lm-eval's mmlu letter style: lettered choices in the prompt, scored on " A", " B", ..."""
    if len(rec.choices) > len(LETTERS):
        raise LikraError(f"record {rec.id!r} has {len(rec.choices)} choices; the letter format has {len(LETTERS)}")
    header = ""
    parts = rec.id.split("/")
    if description and rec.source == "mmlu" and len(parts) == 4:  # mmlu/<split>/<subject>/<n>
        header = mmlu_description(parts[2])
    lines = "".join(f"\n{LETTERS[i]}. {choice}" for i, choice in enumerate(rec.choices))
    prompt = f"{header}{question_stem(rec.prompt)}{lines}\nAnswer:"
    return replace(rec, prompt=prompt, choices=tuple(LETTERS[: len(rec.choices)]), separator=" ")


def chat_prompt(tokenizer, text: str) -> str:
    """`text` as one user turn of the tokenizer's chat template, ending with the assistant header."""
    from likra.data.preferences import strip_bos_text

    if not getattr(tokenizer, "chat_template", None):
        raise LikraError("--chat-template: the model's tokenizer has no chat template")
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )
    return strip_bos_text(tokenizer, rendered)


def chat_record(rec: MCRecord, tokenizer) -> MCRecord:
    return replace(rec, prompt=chat_prompt(tokenizer, rec.prompt), separator="")


@settings
class DataSettings:
    """Where questions come from and how they are prompted (training and evaluation alike)."""

    data: str = option("arc-train", help="benchmark spec (e.g. arc-train, arc_easy:train+validation) or a JSONL file")
    source: str = option("auto", help="where benchmark data comes from", choices=SOURCES)
    format: str = option(
        "cloze",
        help="prompt format: cloze (benchmark prompt, choice texts) or letter (lm-eval mmlu style, ' A', ' B', ...)",
        choices=FORMATS,
    )
    chat_template: bool = option(False, help="render prompts with the tokenizer's chat template (recorded in runs)")
    include_path: list[str] | None = option(
        None, help="folders of lm-eval task YAMLs for data specs lmeval:<task>[:<split>] (the harness's own tasks too)"
    )


def fewshot_records(
    eval_spec: str,
    evaluated: Sequence[MCRecord],
    shots: int,
    fewshot_data: str | None = None,
    source: str = "auto",
    fmt: str = "cloze",
    chat_template: bool = False,
    seed: int = FEWSHOT_SEED,
) -> list[MCRecord]:
    """The few-shot examples, in prefix order, for questions `evaluated` of `eval_spec`: `shots` solved
    examples drawn seeded from `fewshot_data` (default: the benchmark's train split), never an evaluated
    question, in prompt format `fmt` without the task description; none for 0 shots."""
    if shots <= 0:
        return []
    if is_lmeval(eval_spec):  # the harness's sampler puts each question's shots in its prompt (`load_data`)
        if fewshot_data:
            raise LikraError(f"--fewshot-data: {eval_spec} takes its shots from the task's own few-shot split")
        return []
    if chat_template:
        raise LikraError("--shots with --chat-template is not supported (the shots would sit outside the template)")
    pool = format_records(
        load_spec(fewshot_data or default_fewshot_spec(eval_spec), source=source), fmt, description=False
    )
    return draw_shots(pool, shots, seed, {r.id for r in evaluated})


def format_records(
    records: Sequence[MCRecord], fmt: str = "cloze", chat_template: bool = False, tokenizer=None, description=True
) -> list[MCRecord]:
    """Multiple-choice records in prompt format `fmt`, through the chat template when asked."""
    if fmt not in FORMATS:
        raise LikraError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    out = [letter_record(r, description) for r in records] if fmt == "letter" else list(records)
    if chat_template:
        out = [chat_record(r, tokenizer) for r in out]
    return out


@dataclass
class DataInfo:
    """What `load_data` did: the kind of data, the format, and how long pairs were handled."""

    kind: str = "questions"  # or "preferences"
    format: str = "cloze"
    chat_template: bool = False
    max_length: int | None = None
    skipped_too_long: list[str] = field(default_factory=list)  # ids of pairs whose answers do not fit
    prompts_cut: int = 0  # pairs whose prompt is cut from the left to fit
    lmeval: dict | None = None  # lm-eval tasks: each task's version, config hash and split; the shots in prompts

    def to_json(self) -> dict:
        out = {"kind": self.kind, "format": self.format, "chat_template": self.chat_template}
        if self.lmeval:
            out["lmeval"] = self.lmeval
        if self.kind == "preferences":
            out.update(
                max_length=self.max_length,
                skipped_too_long=len(self.skipped_too_long),
                skipped_ids=self.skipped_too_long,
                prompts_cut_from_left=self.prompts_cut,
            )
        return out


def _preference_part(piece: str):
    """(reader, argument) when a data spec part is preference data, else None."""
    from likra.data.preferences import is_dataset_folder, jsonl_is_preferences

    path = Path(piece)
    if path.is_file():
        return ("jsonl", path) if jsonl_is_preferences(path) else None
    folder, _, split = piece.rpartition(":")
    if is_dataset_folder(piece):
        return ("folder", (path, None))
    if folder and is_dataset_folder(folder):
        return ("folder", (Path(folder), split))
    match = _HUB_PREFS.fullmatch(piece.removeprefix("hub:"))
    owner = match.group(1).split("/")[0] if match else ""
    # a local `owner` folder makes `owner/name:split` a local path (likra.locations), unless written hub:...
    if match and owner not in BENCHMARKS and (piece.startswith("hub:") or not Path(owner).exists()):
        return ("hub", (match.group(1), match.group(2)))
    return None


def load_data(
    spec: str,
    source: str = "auto",
    fmt: str = "cloze",
    chat_template: bool = False,
    tokenizer=None,
    max_length: int | None = None,
    shots: int = 0,
) -> tuple[list[MCRecord], DataInfo]:
    """The records of a data spec in the asked format, and what was done to them. An lm-eval task
    (`lmeval:<task>`) is rendered by the harness, with `shots` solved examples from its own sampler in each prompt
    (other data gets its shots as a shared prefix: `fewshot_records`).

    Multiple-choice parts go through `load_spec` and `format_records`; preference parts (JSONL with
    chosen/rejected, a `save_to_disk` folder `[path][:split]`, a hub `owner/name:split`) become two-choice
    records. With `max_length` (tokens), a pair whose longer response does not fit with at least one prompt
    token is skipped and counted (never trained or scored on a cut answer); a pair whose prompt is too long
    keeps its prompt's last tokens (counted)."""
    from likra.data import preferences as prefs

    if fmt not in FORMATS:
        raise LikraError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    info = DataInfo(format=fmt, chat_template=chat_template, max_length=max_length)
    pieces = [spec.strip()] if Path(spec.strip()).exists() else [p.strip() for p in spec.split(",") if p.strip()]
    records: list[MCRecord] = []
    kinds = set()
    for piece in pieces:
        if is_lmeval(piece):
            if fmt != "cloze" or chat_template:
                raise LikraError(
                    f"{piece}: the task's YAML renders its prompts; --format and --chat-template do not apply"
                )
            kinds.add("questions")
            records.extend(lmeval_records(piece, shots))
            info.lmeval = {**(info.lmeval or {}), **task_identity(piece), "shots": shots}
            continue
        part = _preference_part(piece)
        if part is None:
            kinds.add("questions")
            records.extend(format_records(load_spec(piece, source), fmt, chat_template, tokenizer))
            continue
        kinds.add("preferences")
        if fmt == "letter":
            raise LikraError(f"{piece}: preference pairs have no letter format; use --format cloze")
        reader, arg = part
        if reader == "jsonl":
            pairs = prefs.read_preference_jsonl(arg)
        elif reader == "folder":
            pairs = prefs.read_preference_folder(*arg)
        else:
            pairs = prefs.read_preference_hub(*arg)
        records.extend(prefs.pair_record(p, tokenizer, chat_template) for p in pairs)
    if len(kinds) > 1:
        raise LikraError(f"data spec {spec!r} mixes preference pairs and questions; use one kind at a time")
    if not records:
        raise LikraError(f"data spec {spec!r} holds no records")
    check_unique_ids(records, spec)
    if "preferences" in kinds:
        info.kind = "preferences"
        if max_length is not None and tokenizer is not None:
            records = _fit(records, tokenizer, max_length, info)
    return records, info


def _fit(records: list[MCRecord], tokenizer, max_length: int, info: DataInfo) -> list[MCRecord]:
    """Skip (and count) pairs whose longer answer leaves no room for a prompt token; count cut prompts."""
    from likra.data.examples import encode_pair

    kept = []
    for rec in records:
        answers = []
        for i in range(len(rec.choices)):
            context_ids, answer_ids = encode_pair(tokenizer, rec.prompt, rec.continuation(i))
            answers.append(len(answer_ids))
        if max(answers) + 1 > max_length:
            info.skipped_too_long.append(rec.id)
            continue
        if len(context_ids) + max(answers) > max_length:
            info.prompts_cut += 1
        kept.append(rec)
    if info.skipped_too_long:
        log.warning(
            "%d of %d preference pairs skipped: a response is longer than max_length %d tokens (answers are never cut)",
            len(info.skipped_too_long),
            len(records),
            max_length,
        )
    if info.prompts_cut:
        log.warning("%d preference pairs: prompt cut from the left to fit %d tokens", info.prompts_cut, max_length)
    if not kept:
        raise LikraError(f"every preference pair is longer than max_length {max_length} tokens")
    return kept


def run_prompt_settings(manifest: dict) -> tuple[str, bool]:
    """(format, chat template) a run was trained with; runs written before both existed: cloze, none."""
    data = manifest.get("data") if isinstance(manifest.get("data"), dict) else {}
    return data.get("format", "cloze"), bool(data.get("chat_template", False))


def resolve_eval_prompt(run_settings: tuple[str, bool] | None, fmt: str | None, chat: bool | None, cross: bool):
    """The (format, chat template) to score with: the run's unless asked otherwise; asking for another one
    than the run was trained with is refused unless `cross` (--cross-format)."""
    trained_fmt, trained_chat = run_settings or ("cloze", False)
    fmt = trained_fmt if fmt is None else fmt
    chat = trained_chat if chat is None else chat
    if run_settings is not None and not cross:
        if fmt != trained_fmt:
            raise LikraError(
                f"the run's heads were trained on the {trained_fmt} format; scoring them on --format {fmt} "
                "needs --cross-format"
            )
        if chat != trained_chat:
            raise LikraError(
                f"the run's heads were trained {'with' if trained_chat else 'without'} the chat template; "
                f"scoring them {'with' if chat else 'without'} it needs --cross-format"
            )
    return fmt, chat
