"""Values past the ring's range: what each protocol returns, and MiniLM's range report.

    python benchmarks/ranges.py [--elements 20000] [--minilm]

Two cases past the bound of aby3's and semi2k's probabilistic truncation (|x| < 2^(k-2)):
a product of 1e4 by 1e4 at the defaults (1e8 > 6.7e7) and 10 by 10 at ``frac_bits=28``
(100 > 64). With ``range_guard="count"`` every protocol and emulation mode runs on as it
would; the table gives the share of wrong elements beside the rate the guard predicts, then
the same values squared (``x * x``: truncated correctly up to 2^(k-1)) and with the safe
truncation. ``--minilm``: the range report of all-MiniLM-L6-v2 at 128 tokens, and its plot
``benchmarks/ranges_minilm.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
from rich.console import Console
from rich.table import Table

import secjax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = [
    ("plain", "protocol"),
    ("semi2k", "protocol"),
    ("semi2k", "ideal"),
    ("aby3", "protocol"),
    ("aby3", "ideal"),
]
CASES = [("1e4 * 1e4", 1e4, 18), ("10 * 10, frac_bits=28", 10.0, 28)]


def _wrong_share(fn, value: float, n: int, **options) -> tuple[float, float]:
    """(share of elements off by more than 1, share the guard predicts) of ``fn(x, x)``."""
    f = secjax.secure_jit(fn, seed=0, range_guard="count", **options)
    x = np.full(n, value, np.float32)
    got = f(x, x.copy())
    predicted = sum(site.expected_wrong for site in f.last_stats.out_of_range) / n
    return float(np.mean(np.abs(got - value * value) > 1.0)), predicted


def cases_table(n: int) -> Table:
    table = Table(
        title=f"elements wrong past the truncation's bound ({n:,} elements, range_guard='count')"
    )
    for column in (
        "case",
        "protocol",
        "emulation",
        "a * b",
        "guard predicts",
        "a * a",
        "a * b, safe truncation",
    ):
        table.add_column(
            column, justify="left" if column in ("case", "protocol", "emulation") else "right"
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", secjax.RangeWarning)
        for name, value, frac in CASES:
            for protocol, emulation in MODES:
                options = dict(protocol=protocol, emulation=emulation, frac_bits=frac)
                product, predicted = _wrong_share(lambda a, b: a * b, value, n, **options)
                square, _ = _wrong_share(lambda a, b: a * a, value, n, **options)
                safe, _ = _wrong_share(
                    lambda a, b: a * b, value, n, safe_truncation=True, **options
                )
                table.add_row(
                    name,
                    protocol,
                    emulation,
                    f"{product:.1%}",
                    f"{predicted:.1%}",
                    f"{square:.1%}",
                    f"{safe:.1%}",
                )
    return table


def minilm_report(console: Console) -> None:
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    from embed_minilm import SENTENCES, load, make_embed

    model, tokenizer = load()
    batch = tokenizer(SENTENCES[:1], padding="max_length", max_length=128, return_tensors="np")
    f = secjax.secure_jit(make_embed(model), protocol="aby3")
    start = time.perf_counter()
    report = f.ranges(
        secjax.private(model.params, 0),
        secjax.private(batch["input_ids"], 1),
        secjax.private(batch["attention_mask"], 1),
    )
    console.print(report.table())
    console.print(
        f"range report in {time.perf_counter() - start:.1f} s (with the frac_bits search)"
    )
    path = os.path.join(ROOT, "benchmarks", "ranges_minilm.png")
    report.plot(path)
    console.print(f"plot: {os.path.relpath(path, ROOT)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=20_000)
    parser.add_argument("--minilm", action="store_true")
    args = parser.parse_args()
    console = Console(width=140)
    console.print(cases_table(args.elements))
    if args.minilm:
        minilm_report(console)


if __name__ == "__main__":
    main()
