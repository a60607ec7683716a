"""Exact communication accounting: bytes per party and rounds, grouped by primitive and op."""

from __future__ import annotations

import collections
import contextlib
import dataclasses

from secjax.runtime.comm import Exchange
from secjax.text import render


@dataclasses.dataclass
class Tally:
    """Communication of one group of exchanges."""

    sent: list[int]
    dealer: int = 0
    rounds: int = 0
    calls: int = 0

    def add(self, exchange: Exchange) -> None:
        self.sent = [a + b for a, b in zip(self.sent, exchange.sent)]
        self.dealer += exchange.dealer
        self.rounds += exchange.rounds

    @property
    def max_sent(self) -> int:
        return max(self.sent) if self.sent else 0


# The labels of a call's own work outside every primitive: sharing its secret inputs,
# revealing its outputs, and anything else (a deferred value computed for an output).
SHARING = "(sharing inputs)"
REVEALING = "(revealing outputs)"
OUTSIDE_PRIMITIVES = "(outside primitives)"
PHASES = {"sharing": SHARING, "revealing": REVEALING}


class CostLog:
    """Accumulates the exchanges of every protocol step, labelled by the model scope and the
    JAX primitive whose rule ran them (set by the interpreter) and by the protocol operation
    inside the step."""

    def __init__(self, n_parties: int):
        self.n_parties = n_parties
        self.by_label: dict[tuple[str, str, str], Tally] = collections.defaultdict(
            lambda: Tally([0] * n_parties)
        )
        self._label = (OUTSIDE_PRIMITIVES, "")  # (primitive or function, scope)
        self.largest = 0

    @contextlib.contextmanager
    def label(self, name: str, scope: str = ""):
        """Attribute what runs inside to primitive ``name`` (or a named function) within
        ``scope`` (the equation's name stack, e.g. ``FlaxBertModule/encoder/layer/0``)."""
        outer, self._label = self._label, (name, scope)
        try:
            yield
        finally:
            self._label = outer

    def current_label(self) -> tuple[str, str]:
        """The (primitive or function, scope) that exchanges are attributed to now."""
        return self._label

    def add(self, exchanges) -> None:
        """Record one call of a step whose exchanges were traced as ``exchanges``."""
        touched = set()
        for exchange in exchanges:
            self.largest = max(self.largest, exchange.dealer, *exchange.sent)
            name, scope = self._label
            key = (scope, name, exchange.op)  # the order of CostReport.rows
            self.by_label[key].add(exchange)
            touched.add(key)
        for key in touched:
            self.by_label[key].calls += 1

    def report(self, **info) -> CostReport:
        return CostReport(self.n_parties, dict(self.by_label), info, self.largest)


@dataclasses.dataclass
class CostReport:
    """What each party sends and how many rounds a secure call takes.

    ``rows`` maps (scope, primitive, protocol op) to a :class:`Tally`. Rounds add up along
    the sequential order of the program, so the total is an upper bound on the critical path.
    """

    n_parties: int
    rows: dict[tuple[str, str, str], Tally]
    info: dict
    largest: int = 0  # the most bytes one party (or the dealer) sends in one exchange

    def _total(self, rows) -> Tally:
        total = Tally([0] * self.n_parties)
        for tally in rows:
            total.sent = [a + b for a, b in zip(total.sent, tally.sent)]
            total.dealer += tally.dealer
            total.rounds += tally.rounds
            total.calls += tally.calls
        return total

    @property
    def total(self) -> Tally:
        return self._total(self.rows.values())

    @property
    def bytes_per_party(self) -> list[int]:
        return self.total.sent

    @property
    def rounds(self) -> int:
        return self.total.rounds

    def without_input_sharing(self) -> CostReport:
        """The report less the sharing of the call's secret inputs: what each call costs when
        they were shared beforehand, as a served model's weights are (once, not per query).
        Comparable with figures for computation on inputs already shared. (Passing handles,
        :func:`secjax.share`, measures this instead of subtracting it.)"""
        rows = {row: tally for row, tally in self.rows.items() if row[1] != SHARING}
        return CostReport(self.n_parties, rows, self.info, self.largest)

    def phases(self) -> dict[str, Tally]:
        """``sharing`` (the call's secret inputs, by their owners), ``computing`` (everything
        else) and ``revealing`` (the outputs not kept secret): their sum is :attr:`total`.
        An argument passed as a handle costs nothing here."""
        labels = {label: phase for phase, label in PHASES.items()}
        return {
            phase: self._total(
                [
                    tally
                    for row, tally in self.rows.items()
                    if labels.get(row[1], "computing") == phase
                ]
            )
            for phase in ("sharing", "computing", "revealing")
        }

    def _grouped(self, key) -> dict[str, Tally]:
        groups = collections.defaultdict(list)
        for row, tally in self.rows.items():
            groups[key(*row)].append(tally)
        return {name: self._total(rows) for name, rows in groups.items()}

    def by_primitive(self) -> dict[str, Tally]:
        return self._grouped(lambda scope, primitive, op: primitive)

    def by_op(self) -> dict[str, Tally]:
        """Per protocol operation (``bilinear``, ``trunc``, ``msb``, ``a2b``...)."""
        return self._grouped(lambda scope, primitive, op: op)

    def by_scope(self, depth: int | None = None) -> dict[str, Tally]:
        """Per model scope, cut to its first ``depth`` components:
        ``by_scope(4)`` groups a Hugging Face BERT by ``FlaxBertModule/encoder/layer/N``."""
        return self._grouped(
            lambda scope, primitive, op: "/".join(scope.split("/")[:depth]) or "(top level)"
        )

    def estimate_seconds(self, bandwidth_bps: float = 5e9, latency_s: float = 1e-3) -> float:
        """Time on a network: the busiest party's bytes at ``bandwidth_bps`` bits per second
        plus one latency per round (defaults: PUMA's LAN, 5 Gbps and 1 ms)."""
        total = self.total
        return total.max_sent * 8 / bandwidth_bps + total.rounds * latency_s

    def table(self):
        """A ``rich`` table: one row per primitive, then the total."""
        from rich.table import Table

        table = Table(title=self.info.get("title", "secjax cost report"))
        table.add_column("primitive")
        for party in range(self.n_parties):
            table.add_column(f"P{party} sent", justify="right")
        table.add_column("dealer", justify="right")
        table.add_column("rounds", justify="right")
        rows = sorted(self.by_primitive().items(), key=lambda kv: -kv[1].max_sent)
        phases = self.phases()
        for name, tally in rows + [
            ("computing (all but sharing and revealing)", phases["computing"]),
            ("total", self.total),
        ]:
            table.add_row(
                name, *map(format_bytes, tally.sent), format_bytes(tally.dealer), str(tally.rounds)
            )
        return table

    def __str__(self) -> str:
        return render(self.table())


def format_bytes(n: int) -> str:
    """Human-readable bytes: 1536 -> '1.5 KiB'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
