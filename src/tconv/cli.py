"""The ``tconv`` command line: one entry point, one module per subcommand.

Each module in :mod:`tconv.commands` named in ``COMMANDS`` exposes
``register(subparsers) -> None``, which adds its parser and sets ``func`` (taking the parsed
arguments, returning the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMANDS: tuple[str, ...] = (
    "demo",
    "shape",
    "inspect",
    "explain",
    "export_c",
    "vectors",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tconv",
        description="Transposed convolution exactly as Keras, PyTorch, ONNX and JAX compute it: "
        "shapes, explanations, C export, test vectors and benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"tconv.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (
        ValueError,
        TypeError,
        IndexError,
        OSError,
        RuntimeError,
        ImportError,
        MemoryError,
    ) as err:
        if isinstance(err, BrokenPipeError):
            # The reader went away (`tconv ... | head`): stop quietly, as Unix tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        print(f"tconv {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
