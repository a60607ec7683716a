"""The ``secjax`` command: what this installation supports, and cost estimates."""
from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table


def _primitives(_args) -> int:
    from secjax.interpreter import RULES
    from secjax.nn import OVERRIDES

    table = Table(title="Primitives with a secure rule (all-public equations run in the clear)")
    table.add_column("module")
    table.add_column("primitives")
    by_module: dict[str, list[str]] = {}
    for name, rule in sorted(RULES.items()):
        by_module.setdefault(rule.__module__.rsplit(".", 1)[-1], []).append(name)
    for name in sorted(OVERRIDES):
        by_module.setdefault("nn overrides (named functions)", []).append(name)
    for module, names in by_module.items():
        table.add_row(module, ", ".join(names))
    Console().print(table)
    return 0


def _info(_args) -> int:
    import jax

    import secjax
    from secjax.protocols import PROTOCOLS

    console = Console()
    console.print(f"secjax {secjax.__version__} on jax {jax.__version__} "
                  f"({jax.default_backend()})")
    for name, cls in PROTOCOLS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        console.print(f"  protocol [bold]{name}[/bold]: {doc}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="secjax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="version, backend and protocols").set_defaults(run=_info)
    commands.add_parser("primitives", help="the primitives secjax can compute securely"
                        ).set_defaults(run=_primitives)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
