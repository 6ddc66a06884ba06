"""`likra study <name>` (one sub-command per registered study) and `likra report`."""

from __future__ import annotations

import argparse

from likra.cli.common import Command, add_config_flag, add_objective_flags, config_with_objectives


def add_study_arguments(parser: argparse.ArgumentParser) -> None:
    from likra.config import add_flags
    from likra.experiments.curve import CurveConfig
    from likra.experiments.studies import STUDIES

    kinds = parser.add_subparsers(dest="study", required=True)
    for study in STUDIES.values():
        p = kinds.add_parser(study.name, help=study.help, description=study.help, allow_abbrev=False)
        add_config_flag(p)
        add_flags(p, CurveConfig)
        add_objective_flags(p)  # every objective's settings (a plug-in's too), as train and curve take them
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
        p.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="also the libraries' logs"
        )
        p.add_argument("--plugin", action="append", metavar="MODULE", default=argparse.SUPPRESS, help="a plug-in")
        if study.settings is not None:
            add_flags(p, study.settings, prefix=study.prefix)


def run_study(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from likra.config import config_from_args, load_yaml
    from likra.experiments.curve import CurveConfig
    from likra.experiments.studies import get_study
    from likra.experiments.studies import run_study as run
    from likra.model.loading import check_quantize_available

    study = get_study(args.study)
    values = load_yaml(args.config) if args.config else {}
    section = (values.pop(study.section, None) or {}) if study.settings is not None else {}
    cfg = config_with_objectives(CurveConfig, args, values)
    check_quantize_available(cfg.quantize)
    if cfg.lm_eval_out:
        from likra.errors import LikraError

        raise LikraError("--lm-eval-out is written by likra curve and likra eval, not by the studies")
    if study.eval_data and args.eval_data is None and "eval_data" not in values:
        cfg = replace(cfg, eval_data=study.eval_data)
    options = config_from_args(study.settings, args, section, prefix=study.prefix) if study.settings else None
    paths = run(study, cfg, options, progress=not args.quiet)
    if paths:
        print("written: " + ", ".join(str(p) for p in paths))
    return 0


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a curve folder")


def run_report(args: argparse.Namespace) -> int:
    from likra.experiments.folder import CurveFolder
    from likra.experiments.report import write_folder_report

    paths = write_folder_report(CurveFolder(args.folder))
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


STUDY = Command(
    "study",
    "the studies (negatives, contamination, weight, dpo, objectives, likelihood, and registered ones)",
    add_study_arguments,
    run_study,
)
REPORT = Command(
    "report", "one markdown report of a curve folder's curve and studies", add_report_arguments, run_report
)
