"""The ``saerec`` command line: one sub-command per pipeline stage, all over one run directory.

It only parses and dispatches: each group of commands (``stages``, ``inspect``, ``serving``,
``browse``, ``ops``) adds its parsers and names its commands; the stages themselves are in saerec/pipeline.py.
Usage errors and bad input exit with code 2 and one line on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from ..errors import SaerecError
from . import browse, inspect, ops, serving, stages, suite
from .common import _Parser, resolve_config

__all__ = ["COMMANDS", "build_parser", "main", "resolve_config", "_Parser"]

_GROUPS = (stages, suite, inspect, serving, browse, ops)          # in the order `saerec --help` lists them
COMMANDS = {name: cmd for group in _GROUPS for name, cmd in group.COMMANDS.items()}


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="saerec", description="Sparse autoencoders for sequential recommendation (GPTRec + SAE) on Ray.")
    p.add_argument("--log-level", default=os.environ.get("SAEREC_LOG_LEVEL", "INFO"))
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for group in _GROUPS:
        group.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                            format="%(asctime)s %(name)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
        if not args.command:
            parser.print_help()
            return 2
        from ..storage import detach_all
        detach_all()                # every command pulls a remote run afresh
        rc = COMMANDS[args.command](args)
        if rc == 0:
            from ..storage import push_all
            push_all()              # remote runs (--run URI): the local copy goes back to the URI
        return rc
    except SaerecError as e:
        print(f"saerec: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("saerec: interrupted", file=sys.stderr)
        return 130
