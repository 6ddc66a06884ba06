"""The `likra` command line: one list of commands, each with its flags and its run function.

Library code never imports this package; each command module imports the library it drives."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

from likra import __version__
from likra.cli import curve, evaluate, export, generate, info, lmeval, study, train
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
    curve.COMPARE,
    lmeval.COMMAND,
    export.COMMAND,
]


def _quiet_libraries(verbose: bool) -> None:
    """A normal run prints likra's own progress and results: the libraries' warnings, their info logs and the
    "Loading weights" bars only with `--verbose`; bitsandbytes is not even imported unless a base is
    quantized (peft imports it eagerly, and on some CPUs its import logs a warning)."""
    import os

    from likra.model.quantization import defer_bitsandbytes

    defer_bitsandbytes()
    if verbose:
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in (
        "transformers",
        "peft",
        "accelerate",
        "datasets",
        "huggingface_hub",
        "torch",
        "bitsandbytes",
        "lm_eval",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Read when transformers and huggingface_hub are imported (commands import them when they run).
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")  # lm-eval tasks build their datasets
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
    if "transformers" in sys.modules:  # imported already (in-process callers, tests)
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()


class Parser(argparse.ArgumentParser):
    """argparse with its usage errors as likra's one-line error (`--help` still prints the usage)."""

    def error(self, message: str):
        raise LikraError(f"{message} (`{self.prog} --help` lists the flags)")


def _command_named(argv: list[str] | None) -> str | None:
    """The sub-command `argv` asks for (its first word that names one), or None (e.g. `likra --help`)."""
    names = {c.name for c in COMMANDS}
    return next((a for a in (sys.argv[1:] if argv is None else argv) if a in names), None)


def build_parser(argv: list[str] | None = None, every_command: bool = False) -> argparse.ArgumentParser:
    """The parser; only the requested command's flags are built (each command imports what it needs then:
    `likra --help` imports no torch), or every command's with `every_command`."""
    parser = Parser(
        prog="likra", allow_abbrev=False, description="Likra: what language models learn from negative examples."
    )
    parser.add_argument("--version", action="version", version=f"likra {__version__}")
    parser.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE",
        help="import a plug-in module (repeatable; also $LIKRA_PLUGINS and the likra.plugins entry points)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also the libraries' logs, warnings and loading bars"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    wanted = _command_named(argv)
    for command in COMMANDS:
        p = sub.add_parser(
            command.name, help=command.help, description=command.description or command.help, allow_abbrev=False
        )
        if every_command or command.name == wanted:
            command.add_arguments(p)
        # `likra curve ... --quiet` as well as `likra -q curve ...`
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress output")
        p.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="also the libraries' logs"
        )
        p.add_argument("--plugin", action="append", metavar="MODULE", default=argparse.SUPPRESS, help="a plug-in")
        p.set_defaults(_run=command.run, _passthrough=command.passthrough)
    return parser


def plugin_arguments(argv: list[str]) -> list[str]:
    """The modules of every `--plugin MODULE` / `--plugin=MODULE` in `argv` (read before the parser is built:
    plug-ins add studies, objectives' flags and choices)."""
    found = []
    for k, arg in enumerate(argv):
        if arg == "--plugin":
            if k + 1 >= len(argv) or argv[k + 1].startswith("-"):
                raise LikraError("--plugin: give a module name")
            found.append(argv[k + 1])
        elif arg.startswith("--plugin="):
            found.append(arg.split("=", 1)[1])
    return found


MAX_ERROR_CHARS = 1000


def _error(message: str) -> int:
    """Print `message` as likra's one error line (newlines folded, cut to MAX_ERROR_CHARS); exit code 2."""
    line = " ".join(message.split()).encode("utf-8", "backslashreplace").decode("utf-8")  # no lone surrogates
    if len(line) > MAX_ERROR_CHARS:
        line = f"{line[:MAX_ERROR_CHARS]}... ({len(line) - MAX_ERROR_CHARS} more characters cut)"
    print(f"likra: error: {line}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    try:
        words = sys.argv[1:] if argv is None else list(argv)
        _quiet_libraries(verbose=bool({"-v", "--verbose"} & set(words)))  # before plug-ins import libraries
        if _command_named(words) is not None or any(w.startswith("--plugin") for w in words):
            from likra.plugins import load_plugins

            load_plugins(plugin_arguments(words))
        parser = build_parser(argv)
        args, extra = parser.parse_known_args(argv)
        if extra and not getattr(args, "_passthrough", False):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args._extra = extra
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
        )
        return args._run(args)
    except LikraError as e:
        return _error(str(e))
    except OSError as e:  # unreadable or unwritable user paths, a full disk
        from likra.io import disk_full_message, write_failure

        reason = write_failure(e)
        return _error(disk_full_message(e.filename, reason=reason) if reason and e.filename else str(e))
    except Exception as e:
        from likra.io import write_failure

        reason = write_failure(e)
        if reason is None:
            raise
        return _error(f"{reason} while writing ({type(e).__name__}: {str(e).strip()}); free some space and run the "
                      "command again (finished work is kept and reused)")  # fmt: skip
    except KeyboardInterrupt:
        print("likra: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
