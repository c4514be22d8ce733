"""`python -m cluster COMMAND ...`: the command line of the cluster tools.

Each command lives in its own module with a `register(subparsers)` that adds its parser and sets
`run` (parsed arguments -> exit code) as that parser's default; add a module to COMMANDS to add a
command.
"""

from __future__ import annotations

import argparse
import sys

from cluster import cli_plan, cli_preflight, cli_stage, cli_tfvars

COMMANDS = (cli_plan, cli_stage, cli_tfvars, cli_preflight)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
