"""The zoo table: every tiny Hugging Face Flax model of ``tests/zoo_models.py`` under
``secure_jit`` against ``jax.jit``.

    python benchmarks/zoo.py [--protocol aby3] [--models bert,gpt2] [--all] [--public-inputs]

Columns: the worst row's cosine similarity to plaintext (criterion >= 0.999), next-token
argmax agreement over non-padding positions for language-model heads (>= 95%), the secure
call's seconds (first call: trace, kernel compiles and run), ``jax.jit``'s seconds (first
call: compile and run), and each party's bytes sent and the rounds from ``cost()``. A model
that fails shows its error's first line instead; the run goes on. ``--all`` adds the models
marked slow.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]  # this checkout's secjax, and the zoo
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import jax  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.markup import escape  # noqa: E402
from rich.table import Table  # noqa: E402
from zoo_models import (
    ARGMAX_THRESHOLD,
    COSINE_THRESHOLD,
    SLOW,
    ZOO,  # noqa: E402
    argmax_agreement,
    build,
    min_row_cosine,
)

import secjax  # noqa: E402
from secjax.runtime.cost import format_bytes  # noqa: E402


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def run_model(name: str, protocol: str, public_inputs: bool) -> dict:
    row = {"model": name}
    try:
        model = build(name)
        inputs = secjax.public(model.inputs) if public_inputs else model.inputs
        start = time.perf_counter()
        plain = jax.block_until_ready(jax.jit(model.fn)(model.params, **model.inputs))
        row["plain_s"] = time.perf_counter() - start
        f = secjax.secure_jit(model.fn, protocol=protocol, seed=0)
        cost = f.cost(model.params, **inputs)
        row["bytes"] = max(cost.bytes_per_party)
        row["rounds"] = cost.rounds
        start = time.perf_counter()
        secure = f(model.params, **inputs)
        row["secure_s"] = time.perf_counter() - start
        row["cosine"] = min_row_cosine(secure, plain)
        if model.lm_head:
            row["argmax"] = argmax_agreement(secure, plain, model.valid)
    except Exception as exc:  # noqa: BLE001 - a failing model is a row of the table
        row["error"] = _first_line(exc)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="aby3", help="aby3 (default), semi2k or plain")
    parser.add_argument(
        "--models",
        default="",
        help="comma-separated names (default: all fast ones); known: " + ", ".join(ZOO),
    )
    parser.add_argument("--all", action="store_true", help="include the models marked slow")
    parser.add_argument(
        "--public-inputs",
        action="store_true",
        help="token ids, masks and pixels public (weights stay secret)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.models.split(",") if n.strip()] or [
        n for n in ZOO if args.all or n not in SLOW
    ]
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        parser.error(f"unknown models {unknown}; known: {', '.join(ZOO)}")

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    table = Table(
        title=f"secjax zoo under {args.protocol}"
        + (" (public inputs)" if args.public_inputs else "")
    )
    for column, justify in [
        ("model", "left"),
        ("min row cos", "right"),
        ("argmax agree", "right"),
        ("secure s", "right"),
        ("plain s", "right"),
        ("bytes/party", "right"),
        ("rounds", "right"),
        ("error", "left"),
    ]:
        table.add_column(column, justify=justify, overflow="fold")
    with console.status("") as status:
        for name in names:
            status.update(f"running {name} under {args.protocol}...")
            row = run_model(name, args.protocol, args.public_inputs)
            cos = row.get("cosine")
            agree = row.get("argmax")
            table.add_row(
                name,
                ""
                if cos is None
                else (f"{cos:.5f}" if cos >= COSINE_THRESHOLD else f"[red]{cos:.5f}[/red]"),
                ""
                if agree is None
                else (f"{agree:.1%}" if agree >= ARGMAX_THRESHOLD else f"[red]{agree:.1%}[/red]"),
                f"{row['secure_s']:.2f}" if "secure_s" in row else "",
                f"{row['plain_s']:.2f}" if "plain_s" in row else "",
                format_bytes(row["bytes"]) if "bytes" in row else "",
                str(row["rounds"]) if "rounds" in row else "",
                escape(row.get("error", "")),
            )
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
