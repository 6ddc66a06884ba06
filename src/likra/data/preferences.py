"""Preference pairs (prompt, chosen, rejected): the format TRL's DPO/reward trainers and the hub use.

A pair is read from a JSONL file, a `datasets` folder written by `save_to_disk`, or a hub dataset
(`owner/name:split`, e.g. `HuggingFaceH4/ultrafeedback_binarized:train_prefs`), in either of TRL's forms:

- standard: `prompt`, `chosen`, `rejected` are strings; the response follows the prompt verbatim (TRL
  concatenates them; write the space or newline you want into the texts);
- conversational: lists of `{"role", "content"}` messages. With an explicit `prompt`, `chosen` and
  `rejected` hold the response turn(s); without one (or when `chosen` starts with the user turn, as in
  ultrafeedback_binarized, whose `prompt` is then ignored) the prompt is every message before the last,
  which both conversations must share. Conversations are rendered with the tokenizer's chat template:
  the prompt messages with `add_generation_prompt=True`, the response as the rest of the rendered
  whole conversation (so it ends with the template's end-of-turn text, as in TRL).

A pair becomes a two-choice question whose gold answer is the chosen response and whose one incorrect
choice is the rejected one (`MCRecord(..., choices=(chosen, rejected), gold=0, separator="")`): the positive
head trains on chosen, the near-miss negative head on rejected, and pairwise accuracy is the accuracy of
that question. Rows are checked with their place named (file:line, folder:row, hub name:split:row).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from likra.data.records import MCRecord, _lines, jsonl_objects, refuse_ambiguous
from likra.errors import LikraError
from likra.limits import parse_json

ROLES = ("system", "user", "assistant")
Messages = tuple[tuple[str, str], ...]  # ((role, content), ...)


@dataclass(frozen=True)
class PreferencePair:
    """One row: `prompt` is text or messages; `chosen`/`rejected` the responses (text or messages)."""

    id: str
    prompt: str | Messages
    chosen: str | Messages
    rejected: str | Messages
    where: str
    source: str = "preferences"

    @property
    def conversational(self) -> bool:
        return not isinstance(self.chosen, str)


def is_preference_row(obj: Any) -> bool:
    """A row in the preference format: it has `chosen` or `rejected` (questions have `choices`)."""
    return isinstance(obj, dict) and ("chosen" in obj or "rejected" in obj) and "choices" not in obj


def _messages(value: Any, field: str, where: str) -> Messages:
    if not isinstance(value, list) or not value:
        raise LikraError(f"{where}: field {field!r} must be a non-empty string or a non-empty list of messages")
    out = []
    for i, msg in enumerate(value):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str) or "content" not in msg:
            raise LikraError(f"{where}: {field}[{i}] must be a message {{'role': ..., 'content': ...}}")
        if msg["role"] not in ROLES:
            raise LikraError(f"{where}: {field}[{i}] has unknown role {msg['role']!r}; valid: {', '.join(ROLES)}")
        if not isinstance(msg["content"], str) or not msg["content"].strip():
            raise LikraError(f"{where}: {field}[{i}] ({msg['role']}) has empty or non-string content")
        out.append((msg["role"], msg["content"]))
    return tuple(out)


def _field(obj: dict, field: str, where: str) -> str | Messages:
    value = obj[field]
    if isinstance(value, str):
        if not value.strip():
            raise LikraError(f"{where}: field {field!r} is empty")
        return value
    return _messages(value, field, where)


def pair_from_row(obj: Any, where: str, default_id: str, source: str) -> PreferencePair:
    """Validate one row and return its pair; every problem is a LikraError naming `where`."""
    if not isinstance(obj, dict):
        raise LikraError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    refuse_ambiguous(obj, where)
    for field in ("chosen", "rejected"):
        if field not in obj or obj[field] is None:
            raise LikraError(f"{where}: missing field {field!r} (a preference row needs prompt, chosen, rejected)")
    chosen, rejected = _field(obj, "chosen", where), _field(obj, "rejected", where)
    if isinstance(chosen, str) != isinstance(rejected, str):
        raise LikraError(f"{where}: 'chosen' and 'rejected' must both be text or both be messages")
    prompt: str | Messages
    if isinstance(chosen, str):
        if obj.get("prompt") is None:
            raise LikraError(f"{where}: missing field 'prompt' (text responses need a text prompt)")
        prompt = _field(obj, "prompt", where)
        if not isinstance(prompt, str):
            raise LikraError(f"{where}: a message-list 'prompt' needs message-list 'chosen' and 'rejected'")
    elif obj.get("prompt") is not None and not isinstance(obj["prompt"], str) and chosen[0][0] == "assistant":
        prompt = _field(obj, "prompt", where)  # explicit conversational prompt
        if isinstance(prompt, str):
            raise LikraError(f"{where}: a text 'prompt' needs text 'chosen' and 'rejected'")
    else:  # implicit prompt: the shared messages before the last one
        if len(chosen) < 2 or len(rejected) < 2 or chosen[:-1] != rejected[:-1]:
            raise LikraError(
                f"{where}: without a message-list 'prompt', 'chosen' and 'rejected' must be conversations that "
                "share every message but the last"
            )
        prompt, chosen, rejected = chosen[:-1], chosen[-1:], rejected[-1:]
    if not isinstance(chosen, str):
        for field, turns in (("chosen", chosen), ("rejected", rejected)):
            if turns[-1][0] != "assistant":
                raise LikraError(
                    f"{where}: the last message of {field!r} must be the assistant's, not {turns[-1][0]!r}"
                )
    if _strip(chosen) == _strip(rejected):
        raise LikraError(f"{where}: 'chosen' is identical to 'rejected'")
    rec_id = obj.get("id", default_id)
    if not isinstance(rec_id, (str, int)) or isinstance(rec_id, bool):
        raise LikraError(f"{where}: field 'id' must be a string")
    return PreferencePair(str(rec_id), prompt, chosen, rejected, where, source)


def _strip(value: str | Messages):
    return value.strip() if isinstance(value, str) else tuple((r, c.strip()) for r, c in value)


def _unique(pairs: list[PreferencePair]) -> list[PreferencePair]:
    seen: dict[str, str] = {}
    for pair in pairs:
        if pair.id in seen:
            raise LikraError(f"{pair.where}: duplicate id {pair.id!r} (first at {seen[pair.id]})")
        seen[pair.id] = pair.where
    return pairs


def read_preference_jsonl(path: str | Path) -> list[PreferencePair]:
    """Every line of a JSONL file as a preference pair (blank lines skipped)."""
    path = Path(path)
    pairs = []
    for where, lineno, obj in jsonl_objects(path, need_object=False):
        pairs.append(pair_from_row(obj, where, f"{path.stem}-{lineno}", path.stem))
    if not pairs:
        raise LikraError(f"{path}: no preference pairs")
    return _unique(pairs)


def jsonl_is_preferences(path: str | Path) -> bool:
    """Whether the first non-blank line of a JSONL file is a preference row (else: questions)."""
    try:
        for lineno, line in _lines(Path(path)):
            if line.strip():
                return is_preference_row(parse_json(line, f"{path}:{lineno}"))
    except LikraError:
        return False  # let the question reader report it
    return False


def rows_to_pairs(rows: Iterable[dict], where: str, source: str) -> list[PreferencePair]:
    pairs = [pair_from_row(dict(row), f"{where}:row {i}", f"{source}/{i}", source) for i, row in enumerate(rows)]
    if not pairs:
        raise LikraError(f"{where}: no preference pairs")
    return _unique(pairs)


def is_dataset_folder(path: str | Path) -> bool:
    """A folder written by `Dataset.save_to_disk` (or `DatasetDict.save_to_disk`)."""
    path = Path(path)
    return path.is_dir() and any((path / f).is_file() for f in ("dataset_info.json", "dataset_dict.json"))


def read_preference_folder(path: str | Path, split: str | None = None) -> list[PreferencePair]:
    """The pairs of a `save_to_disk` folder (a DatasetDict needs `split`; default its only split)."""
    import datasets

    path = Path(path)
    data = datasets.load_from_disk(str(path))
    if isinstance(data, datasets.DatasetDict):
        if split is None:
            if len(data) != 1:
                raise LikraError(f"{path}: holds splits {', '.join(data)}; name one as {path}:<split>")
            split = next(iter(data))
        if split not in data:
            raise LikraError(f"{path}: no split {split!r}; valid: {', '.join(data)}")
        data = data[split]
    return rows_to_pairs(data, str(path), path.name)


def read_preference_hub(name: str, split: str) -> list[PreferencePair]:
    """The pairs of hub dataset `name`, split `split` (e.g. HuggingFaceH4/ultrafeedback_binarized, train_prefs)."""
    import datasets

    from likra.locations import hub_reachable

    hub_reachable()  # offline: the hub cache alone, failing at once
    try:
        data = datasets.load_dataset(name, split=split)
    except Exception as e:  # network, auth and missing-dataset errors all mean the same to the user
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LikraError(
            f"cannot load {name}:{split} from the Hugging Face hub, which may be unreachable ({reason}); "
            "save it with `save_to_disk` where the hub is reachable and pass the folder"
        ) from None
    return rows_to_pairs(data, f"{name}:{split}", name.split("/")[-1])


# -- pairs -> two-choice records ------------------------------------------------------------------
def _chat(tokenizer, messages: Messages, generation_prompt: bool, where: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise LikraError(f"{where}: conversational pairs need a tokenizer with a chat template; this one has none")
    text = tokenizer.apply_chat_template(
        [{"role": r, "content": c} for r, c in messages], tokenize=False, add_generation_prompt=generation_prompt
    )
    return text


def strip_bos_text(tokenizer, text: str) -> str:
    """A rendered template's leading BOS text, dropped when likra adds the BOS token itself."""
    from likra.data.examples import bos_ids

    bos = tokenizer.bos_token
    if bos and bos_ids(tokenizer) and text.startswith(bos):
        return text[len(bos) :]
    return text


def render_conversation(tokenizer, prompt: Messages, response: Messages, where: str) -> tuple[str, str]:
    """(prompt text ending with the generation prompt, response text) through the chat template."""
    prompt_text = _chat(tokenizer, prompt, True, where)
    whole = _chat(tokenizer, prompt + response, False, where)
    if not whole.startswith(prompt_text):
        raise LikraError(
            f"{where}: the chat template does not render the conversation as prompt + response "
            "(it rewrites earlier turns); likra cannot split the answer tokens"
        )
    return strip_bos_text(tokenizer, prompt_text), whole[len(prompt_text) :]


def pair_record(pair: PreferencePair, tokenizer=None, chat_template: bool = False) -> MCRecord:
    """The two-choice record of `pair`: choices (chosen, rejected), gold 0, scored right after the prompt.

    Text pairs are used verbatim, or, with `chat_template`, as a user turn and an assistant turn."""
    prompt, chosen, rejected = pair.prompt, pair.chosen, pair.rejected
    if isinstance(chosen, str) and chat_template:
        prompt, chosen, rejected = (("user", prompt),), (("assistant", chosen),), (("assistant", rejected),)
    if isinstance(chosen, str):
        return MCRecord(pair.id, prompt, (chosen, rejected), 0, pair.source, separator="")
    if tokenizer is None:
        raise LikraError(f"{pair.where}: conversational pairs need the model's tokenizer")
    prompt_text, chosen_text = render_conversation(tokenizer, prompt, chosen, pair.where)
    prompt_again, rejected_text = render_conversation(tokenizer, prompt, rejected, pair.where)
    assert prompt_again == prompt_text
    if chosen_text.strip() == rejected_text.strip():
        raise LikraError(f"{pair.where}: 'chosen' is identical to 'rejected' once rendered")
    return MCRecord(pair.id, prompt_text, (chosen_text, rejected_text), 0, pair.source, separator="")
