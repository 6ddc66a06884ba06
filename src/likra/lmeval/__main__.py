"""`python -m likra.lmeval ARGS`: the stock `lm_eval` command line (lm-eval's own `HarnessCLI`: `run`, `ls`,
`validate`, and the legacy form without a command), in a process where the `likra` model is registered and
the offline `likra_*` tasks named by `--tasks` are exported and on the include path. lm-eval 0.4 has no entry
points for models, so the `lm_eval` executable cannot find `likra` by itself; this is that executable plus one
import:

    python -m likra.lmeval --model likra --model_args run=RUN,mode=likra --tasks likra_arc_challenge
    python -m likra.lmeval run --model likra --model_args run=RUN --tasks arc_easy --output_path out

The harness's defaults stay its own (`--model` is `hf` unless given). Bad input is one line.
"""

from __future__ import annotations

import importlib.util
import sys


def main(argv: list[str] | None = None) -> int:
    from likra.errors import LikraError

    argv = list(sys.argv[1:] if argv is None else argv)
    if importlib.util.find_spec("lm_eval") is None:
        print("likra: error: lm-eval is not installed: pip install 'likra[lmeval]' (lm-eval 0.4.x)", file=sys.stderr)
        return 2
    from lm_eval._cli.harness import HarnessCLI
    from lm_eval.utils import setup_logging

    from likra.lmeval.invoke import OneLineParser, execute, prepare

    try:
        setup_logging()
        cli = HarnessCLI()
        for parser in (cli._parser, *cli._subparsers.choices.values()):
            parser.__class__ = OneLineParser  # the harness's parsers, their usage errors one line
        saved, sys.argv = sys.argv, ["lm_eval", *argv]  # the harness reads sys.argv itself
        try:
            args = cli.parse_args()
        finally:
            sys.argv = saved
        if args.command == "run":
            execute(prepare(args))
        else:
            cli.execute(args)
    except LikraError as e:
        print(f"likra: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
