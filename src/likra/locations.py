"""Where a model or run named on the command line lives: a local path, or a Hugging Face hub repository.

How a name is read (`hub_id`), first rule that applies:

1. `hub:owner/name` (models also `hub:name`): the hub, always; the explicit way to name a repository whose
   owner is also the name of a local folder;
2. an existing path: local;
3. `owner/name` (one slash, the hub's characters): a hub id when there is no local file or folder `owner`;
   with one (`runs/does_not_exist` where `runs/` exists), it is a mistyped local path and refused locally;
4. models only: a bare `name` without a slash (`gpt2`): a hub id; the hub's ids without an owner are its
   canonical models, never a stranger's repository;
5. anything else (`./x`, `/x`, `~/x`, `a/b/c`, `x/`, a name with spaces): a local path, refused when it does not
   exist, without touching the network.

A hub id is looked up on the hub only when the hub answers: with `HF_HUB_OFFLINE=1`, or when
`huggingface.co` (`HF_ENDPOINT`) does not answer within `HUB_TIMEOUT` seconds (asked once per process, when a
hub id is first used), the process works offline (huggingface_hub's and datasets' offline mode): models, runs
and data sets are read from the local hub cache alone, so an unknown name fails in seconds instead of retrying
for a minute.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from likra.errors import LikraError
from likra.limits import shorten

HUB_PREFIX = "hub:"
HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")
HUB_TIMEOUT = 3.0


def hub_id(name: str, bare: bool = False) -> str | None:
    """The hub repository `name` names (see the module docstring; `bare`: a name without owner may be one,
    as models' can), or None when it names a local path."""
    name = str(name)
    if name.startswith(HUB_PREFIX):
        repo = name[len(HUB_PREFIX) :]
        if not (HUB_REPO_ID.match(repo) or (bare and HUB_NAME.match(repo))):
            raise LikraError(f"{shorten(name)}: after {HUB_PREFIX} give a hub repository id, owner/name")
        return repo
    if Path(name).exists():
        return None
    if HUB_REPO_ID.match(name):
        return None if Path(name.split("/")[0]).exists() else name
    if bare and HUB_NAME.match(name) and name.strip("."):
        return name
    return None


def local_hint(name: str) -> str:
    """Why `name`, which does not exist, was not taken for a hub id."""
    owner = str(name).split("/")[0]
    if HUB_REPO_ID.match(str(name)) and Path(owner).exists():
        return f"a local {owner!r} exists, so this is a local path; write {HUB_PREFIX}{name} for the hub repository"
    return f"a hub repository is owner/name or {HUB_PREFIX}owner/name"


@functools.cache
def hub_reachable() -> bool:
    """Whether the hub answers (any HTTP answer) within HUB_TIMEOUT seconds; False in offline mode."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return False
    try:
        from huggingface_hub.utils import get_session

        get_session().head(constants.ENDPOINT, timeout=HUB_TIMEOUT)
    except Exception:  # no route, no DNS, a timeout, offline mode: all mean "use the cache"
        work_offline()
        return False
    return True


def work_offline() -> None:
    """Put this process's hub clients into their offline mode (read the local cache, never retry)."""
    import sys

    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True


def hub_options() -> dict:
    """Keyword arguments for a hub download: the local cache only when the hub does not answer."""
    return {} if hub_reachable() else {"local_files_only": True}


def offline_reason(options: dict) -> str:
    """What to add to a failed hub load: that only the cache was read, when it was."""
    if not options.get("local_files_only"):
        return ""
    return "not in the local hub cache, and the hub does not answer (offline)"
