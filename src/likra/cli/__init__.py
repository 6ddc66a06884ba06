"""The `likra` command line: one list of commands, each with its flags and its run function.

Library code never imports this package; each command module imports the library it drives."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from likra.cli import curve, evaluate, generate, info, lmeval, study, train
from likra.cli.common import Command
from likra.errors import LikraError

COMMANDS: list[Command] = [
    train.COMMAND,
    evaluate.COMMAND,
    generate.COMMAND,
    info.COMMAND,
    curve.CURVE,
    study.STUDY,
    study.REPORT,
    curve.PLOT,
    lmeval.COMMAND,
]


def _quiet_libraries(quiet: bool) -> None:
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        if quiet:
            transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as likra's one-line error (`--help` still prints the usage)."""

    def error(self, message: str):
        raise LikraError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="likra", allow_abbrev=False, description="Likra: what language models learn from negative examples."
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        p = sub.add_parser(
            command.name, help=command.help, description=command.description or command.help, allow_abbrev=False
        )
        command.add_arguments(p)
        p.set_defaults(_run=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
        )
        _quiet_libraries(args.quiet)
        return args._run(args)
    except LikraError as e:
        print(f"likra: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # unreadable or unwritable user paths
        print(f"likra: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("likra: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
