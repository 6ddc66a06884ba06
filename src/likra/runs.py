"""Run folders: both adapters as safetensors plus a manifest, `likra.json`.

<run>/likra.json              base model, data spec, hyper-parameters, versions, example counts
<run>/adapters/positive/      peft adapter (adapter_config.json + adapter_model.safetensors)
<run>/adapters/negative/
"""

from __future__ import annotations

import functools
import logging
import shutil
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from likra.errors import LikraError
from likra.io import (
    TEMPORARY_MARKER,
    atomic_write_json,
    backup_path,
    check_temporary,
    mark_temporary,
    remove_temporary,
)
from likra.limits import read_json_file, shorten
from likra.locations import hub_id, hub_options, local_hint, offline_reason

MANIFEST = "likra.json"
ADAPTERS = "adapters"
FORMAT_VERSION = 1


# Distribution names: what likra needs, then every optional package (its extras and tracking backends).
REQUIRED_PACKAGES = ("likra", "torch", "transformers", "peft", "accelerate", "datasets")
OPTIONAL_PACKAGES = ("lm-eval", "trl", "tensorboard", "bitsandbytes", "huggingface_hub", "wandb")


def library_versions() -> dict[str, str]:
    """The installed version of every package likra uses ("not installed" for a missing optional one), read
    from the packages' metadata without importing them."""
    out = {}
    for pkg in (*REQUIRED_PACKAGES, *OPTIONAL_PACKAGES):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(run: str | Path) -> dict:
    """The manifest of a finished run, or a LikraError saying why the folder is not one."""
    run = Path(run)
    path = run / MANIFEST
    if not run.is_dir():
        raise LikraError(f"{run}: run folder does not exist")
    if not path.is_file():
        raise LikraError(f"{run}: not a likra run folder (no {MANIFEST})")
    manifest = read_json_file(path, "unreadable manifest")
    if not isinstance(manifest, dict):
        raise LikraError(f"{path}: manifest is not a JSON object")
    for key in ("format", "model", "heads"):
        if key not in manifest:
            raise LikraError(f"{path}: manifest lacks {key!r}")
    if manifest["format"] != FORMAT_VERSION:
        raise LikraError(f"{path}: manifest format {manifest['format']} is not {FORMAT_VERSION}")
    model = manifest["model"]
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise LikraError(f"{path}: manifest 'model' must be an object with a 'name'")
    heads = manifest["heads"]
    if not isinstance(heads, list) or not heads or not all(isinstance(h, str) and h for h in heads):
        raise LikraError(f"{path}: manifest 'heads' must be a non-empty list of head names")
    return manifest


def resolve_run(run: str | Path) -> Path:
    """A local run folder as it is; a hub repository (`owner/name` with no local `owner`, or `hub:owner/name`:
    `likra.locations.hub_id`): the run exported there (`likra export --push-to-hub`), downloaded to the hub
    cache, or read from that cache alone when the hub does not answer. Offline, that is one line."""
    repo = hub_id(str(run))
    if repo is None:
        if not Path(run).exists():
            raise LikraError(f"{shorten(str(run))}: run folder does not exist ({local_hint(str(run))})")
        return Path(run)
    return _download_run(repo)


@functools.cache
def _download_run(repo: str) -> Path:
    """One download per repo and process (eval reads the manifest, then loads the heads)."""
    from huggingface_hub import snapshot_download

    options = hub_options()
    logging.getLogger(__name__).warning("%s: no such local folder; reading the run from the hub", repo)
    try:
        return Path(snapshot_download(repo_id=repo, repo_type="model", **options))
    except Exception as e:  # offline, unknown repo, no access: many exception types
        reason = offline_reason(options) or f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"
        raise LikraError(
            f"{repo}: no such local run folder, and downloading it from the hub failed: {reason}"
        ) from None


def load_run_model(
    run: str | Path,
    dtype: str | None = None,
    device=None,
    device_map: str | None = None,
    quantize: str | None = None,
    score_dtype: str | None = None,
):
    """(PeftModel with the run's heads, tokenizer, manifest); `run` a folder or a hub repo id. The base is loaded
    for scoring (`likra.model.precision`: `dtype`/`score_dtype`, default auto: fp32 where it fits, whatever the run
    trained in) and quantized as the run was unless told otherwise; `device_map` spreads it over devices (see
    `load_base_model`). The precision is kept with the model (`precision_of`)."""
    from likra.model.heads import load_heads
    from likra.model.loading import load_base_model, load_tokenizer
    from likra.model.precision import Precision, mark, scoring_precision

    run = resolve_run(run)
    manifest = read_manifest(run)
    model_info = manifest["model"]
    quantize = quantize or model_info.get("quantize")  # "none": full precision, even for a run on a 4-bit base
    precision = scoring_precision(model_info["name"], dtype, score_dtype, device, quantize, device_map)
    trained = (manifest.get("precision") or {}).get("train") or model_info.get("dtype")
    precision = Precision(trained if trained in ("fp32", "bf16", "fp16") else None, precision.score, precision.note)
    base = load_base_model(model_info["name"], precision.score, device, device_map=device_map, quantize=quantize)
    model = load_heads(base, Path(run) / ADAPTERS, tuple(manifest["heads"]))
    return mark(model, precision), load_tokenizer(model_info["name"]), manifest


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse to write a run (or an export) to `out` unless it is free, or `overwrite` and it holds a run likra
    wrote: `--overwrite` never deletes a folder without a likra manifest (a user's own files). The names likra
    writes through (`<out>.partial`, and `<out>.old` when `out` is replaced) must be free or likra's own
    (`likra.io.check_temporary`)."""
    out = Path(out)
    check_temporary(out.with_name(out.name + ".partial"), out)
    if not out.exists() and not out.is_symlink():
        return
    is_run = out.is_dir() and not out.is_symlink() and (out / MANIFEST).is_file()
    if not overwrite:
        raise LikraError(
            f"{out}: already {'holds a run' if is_run else 'exists'}; choose another --out or pass --overwrite"
        )
    if out.is_symlink():
        raise LikraError(f"{out}: is a symbolic link; --overwrite only replaces run folders written by likra")
    if not is_run:
        raise LikraError(
            f"{out}: exists and is not a likra run folder (no {MANIFEST}); --overwrite only replaces "
            "run folders written by likra; choose another --out"
        )
    try:
        manifest = read_manifest(out)
    except LikraError as e:
        raise LikraError(f"{e}: --overwrite only replaces folders likra wrote; choose another --out") from None
    foreign = foreign_files(out, manifest)
    if foreign:
        raise LikraError(
            f"{out}: holds {len(foreign)} file(s) likra did not write there (e.g. {shorten(str(foreign[0]))}); "
            "--overwrite only replaces folders likra wrote, whole; choose another --out"
        )
    check_temporary(backup_path(out), out)


# What runs and exports of versions that did not list their files hold (their top-level names).
LEGACY_NAMES = {MANIFEST, ADAPTERS, "tensorboard", "wandb", "README.md"} | {
    "adapter_config.json",
    "adapter_model.safetensors",
}


def written_files(folder: Path) -> list[str]:
    """Every file under `folder`, as a relative POSIX path, sorted (the manifest's `files`)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())


def foreign_files(folder: Path, manifest: dict) -> list[str]:
    """The files under a likra folder that its manifest does not list (for folders of earlier versions, which list
    none: those outside the names such folders hold)."""
    listed = manifest.get("files")
    present = [f for f in written_files(folder) if f not in (MANIFEST, TEMPORARY_MARKER)]
    if isinstance(listed, list):
        return [f for f in present if f not in set(listed)]
    return [f for f in present if f.split("/", 1)[0] not in LEGACY_NAMES]


def seal(staging: Path) -> None:
    """List in the staged folder's manifest every file likra wrote there, so that `--overwrite` can tell them from a
    user's (`check_out`)."""
    path = staging / MANIFEST
    if not path.is_file():
        return
    manifest = read_json_file(path, "unreadable manifest")
    files = [f for f in written_files(staging) if f not in (MANIFEST, TEMPORARY_MARKER)]
    atomic_write_json(path, {**manifest, "files": files})


def replace_folder(staging: Path, target: Path, overwrite: bool) -> Path:
    """Move the finished folder `staging` (`likra.io.temporary_folder`) to `target` by renames: an existing
    `target` (a likra folder, checked again here) is renamed to `<target>.old`, marked as likra's backup, and
    removed once the new folder is in place."""
    staging, target = Path(staging), Path(target)
    seal(staging)
    if target.exists() or target.is_symlink():
        check_out(target, overwrite)
        old = backup_path(target)
        remove_temporary(old, target)
        mark_temporary(target)  # from here on it is likra's backup copy
        try:
            target.rename(old)
        except BaseException:
            (target / TEMPORARY_MARKER).unlink(missing_ok=True)
            raise
        staging.rename(target)
        shutil.rmtree(old)
    else:
        staging.rename(target)
    (target / TEMPORARY_MARKER).unlink(missing_ok=True)
    return target


def finish_run(staging: Path, target: Path, manifest: dict, overwrite: bool) -> Path:
    """Write the manifest into `staging` and move it to `target` (`replace_folder`)."""
    manifest = {"format": FORMAT_VERSION, "created": now_iso(), "versions": library_versions(), **manifest}
    atomic_write_json(staging / MANIFEST, manifest)
    return replace_folder(staging, target, overwrite)
