"""The one record type every benchmark adapter produces: a multiple-choice question."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from likra.errors import LikraError
from likra.limits import MAX_LINE_BYTES, mib, parse_json


@dataclass(frozen=True)
class MCRecord:
    """A multiple-choice question.

    `prompt` is the context the model sees; each choice is scored as the continuation
    `prompt + separator + choice` where `separator` is the text placed between them: a single space
    for lm-eval style "Question: ...\\nAnswer:" prompts (lm-eval's `target_delimiter`), nothing after a
    chat template's assistant turn or in a preference pair (TRL concatenates prompt and response).
    """

    id: str
    prompt: str
    choices: tuple[str, ...]
    gold: int
    source: str = ""
    separator: str = " "

    def continuation(self, index: int) -> str:
        """The scored text of choice `index`, with its separator (lm-eval convention: a leading space)."""
        return self.answer(self.choices[index])

    def answer(self, text: str) -> str:
        """`text` (a choice, or a negative drawn elsewhere) as scored or trained after this prompt."""
        return self.separator + text

    def to_json(self) -> dict:
        d = asdict(self)
        d["choices"] = list(self.choices)
        return d


def validate_record(rec: MCRecord, where: str) -> MCRecord:
    """Raise LikraError naming `where` if the record cannot be used for Likra training/eval."""
    if len(rec.choices) < 2:
        raise LikraError(f"{where}: record {rec.id!r} has {len(rec.choices)} choice(s); need at least 2")
    if not isinstance(rec.gold, int) or isinstance(rec.gold, bool) or not 0 <= rec.gold < len(rec.choices):
        raise LikraError(
            f"{where}: record {rec.id!r} has gold index {rec.gold!r} out of range 0..{len(rec.choices) - 1}"
        )
    gold_text = rec.choices[rec.gold].strip()
    for i, choice in enumerate(rec.choices):
        if i != rec.gold and choice.strip() == gold_text:
            raise LikraError(
                f"{where}: record {rec.id!r} has incorrect choice {i} identical to the gold answer {gold_text!r}"
            )
    return rec


JSONL_FIELDS = {"prompt": str, "choices": list, "gold": int}
PAIR_FIELDS = ("chosen", "rejected")
QUESTION_FIELDS = ("choices", "gold")


def refuse_ambiguous(obj: Any, where: str) -> None:
    """A row with fields of both a preference pair (`chosen`/`rejected`) and a question (`choices`/`gold`) could
    be read either way: refuse it rather than silently drop half of it."""
    if not isinstance(obj, dict):
        return
    pair = [f for f in PAIR_FIELDS if obj.get(f) is not None]
    question = [f for f in QUESTION_FIELDS if obj.get(f) is not None]
    if pair and question:
        raise LikraError(
            f"{where}: the row has both preference fields ({', '.join(pair)}) and question fields "
            f"({', '.join(question)}); a row is either a pair (prompt, chosen, rejected) or a question "
            "(prompt, choices, gold): drop the other fields"
        )


def _lines(path: Path):
    """(line number, text) of a UTF-8 file (a byte-order mark is skipped), or a LikraError at the first line
    that is not UTF-8 or is longer than `likra.limits.MAX_LINE_BYTES`."""
    with path.open("rb") as fh:
        lineno = 0
        while True:
            raw = fh.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > MAX_LINE_BYTES:
                raise LikraError(f"{path}:{lineno}: a line longer than {mib(MAX_LINE_BYTES)}")
            try:
                yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError:
                raise LikraError(f"{path}:{lineno}: not UTF-8 text") from None


def jsonl_objects(path: Path, need_object: bool = True) -> Iterator[tuple[str, int, Any]]:
    """(`file:line`, line number, parsed value) of each non-blank line of a JSONL file, read within
    `likra.limits` (line length, nesting, valid Unicode); a line that is not JSON (or, with `need_object`, not
    a JSON object) is a LikraError naming file:line."""
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        obj = parse_json(line, where)
        if need_object and not isinstance(obj, dict):
            raise LikraError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        yield where, lineno, obj


def read_jsonl(path: str | Path, source: str | None = None) -> list[MCRecord]:
    """Read the documented JSONL schema: one object a line with `prompt` (str), `choices` (list of non-empty
    str), `gold` (int, 0-based), and optional `id` (str, default the line number; ids must be unique)."""
    path = Path(path)
    if not path.is_file():
        raise LikraError(f"{path}: no such file")
    records = []
    seen: dict[str, int] = {}
    for where, lineno, obj in jsonl_objects(path):
        refuse_ambiguous(obj, where)
        for field, kind in JSONL_FIELDS.items():
            if field not in obj:
                raise LikraError(f"{where}: missing field {field!r}")
            if not isinstance(obj[field], kind) or isinstance(obj[field], bool):
                raise LikraError(f"{where}: field {field!r} must be {kind.__name__}")
        if not all(isinstance(c, str) for c in obj["choices"]):
            raise LikraError(f"{where}: field 'choices' must be a list of strings")
        empty = [i for i, c in enumerate(obj["choices"]) if not c.strip()]
        if empty:
            raise LikraError(f"{where}: choice {empty[0]} is empty")
        rec_id = obj.get("id", f"{path.stem}-{lineno}")
        if not isinstance(rec_id, (str, int)) or isinstance(rec_id, bool):
            raise LikraError(f"{where}: field 'id' must be a string")
        rec_id = str(rec_id)
        if rec_id in seen:
            raise LikraError(f"{where}: duplicate id {rec_id!r} (first at line {seen[rec_id]})")
        seen[rec_id] = lineno
        rec = MCRecord(
            id=rec_id,
            prompt=obj["prompt"],
            choices=tuple(obj["choices"]),
            gold=obj["gold"],
            source=source or str(obj.get("source", path.stem)),
        )
        records.append(validate_record(rec, where))
    if not records:
        raise LikraError(f"{path}: no records")
    return records
