"""`likra export RUN DIR`: a run as a hub-ready folder (peft adapters, the first head at the root, likra.json, a
model card); optionally pushed."""

from __future__ import annotations

import argparse

from likra.cli.common import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="run folder written by `likra train`")
    parser.add_argument("dir", help="folder to write (refused if it exists, unless --overwrite and likra wrote it)")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR if it is a folder likra wrote")
    parser.add_argument(
        "--base-model-path",
        metavar="ID_OR_FOLDER",
        help="what the adapters name as their base (base_model_name_or_path): default the run's hub id, else the "
        "local folder likra loads the base from (e.g. the embedded model's rebuild); give where you put those "
        "exact weights for others",
    )
    parser.add_argument("--license", default="apache-2.0", help="licence of the heads in the card (default apache-2.0)")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload DIR to this hub repo (user-or-org/name)")
    parser.add_argument("--private", action="store_true", help="create the hub repo as private")


def run(args: argparse.Namespace) -> int:
    from likra.errors import LikraError
    from likra.locations import HUB_REPO_ID
    from likra.reports.hub import export_run, push_to_hub

    if args.push_to_hub and not HUB_REPO_ID.match(args.push_to_hub):
        raise LikraError(f"--push-to-hub {args.push_to_hub!r}: a hub repo id is user-or-org/name")
    out = export_run(args.run, args.dir, args.overwrite, args.base_model_path, args.license)
    print(f"exported {args.run} to {out} (the first head at the root, adapters/<head>/, likra.json, README.md)")
    if args.push_to_hub:
        print(f"pushed to {push_to_hub(out, args.push_to_hub, args.private)}")
    return 0


COMMAND = Command(
    "export",
    "write a run as a hub-ready folder (peft adapters, model card); --push-to-hub uploads it",
    add_arguments,
    run,
)
