"""The range report: how close each truncation, product and comparison of a program comes to
the bound within which the protocols compute it correctly.

``f.ranges(*args)`` runs ``f`` in the clear (the protocol's functionality with exact
truncations, :class:`secjax.protocols.ideal.Clear`) and records, at every site (an
equation's rule and the kind of bounded step), the largest magnitude that reached it: see
:mod:`secjax.protocols.ranges` for the bounds. The report groups the sites by model scope,
names the first one past its bound with its source line, and gives the largest
``frac_bits`` at which every site fits, found by running again at that setting.
"""

from __future__ import annotations

import collections
import dataclasses
import math

from secjax.protocols.ranges import COMPARISON, PRODUCT, TRUNCATION, Site, explain
from secjax.ring import Ring
from secjax.text import render

# Sites whose bound a value can pass (a comparison's operand always has a sign).
_BOUNDED = frozenset({"truncation", "safe truncation", "product"})


def _bits(site: Site | None) -> str:
    return "" if site is None else f"{site.headroom:.1f}"


def _layer(site: Site, depth: int | None) -> str:
    return "/".join(site.scope.split("/")[:depth]) or "(top level)"


@dataclasses.dataclass
class RangeReport:
    """The sites of one program with the magnitudes that reached them (program order).

    ``largest_frac_bits``: the largest ``frac_bits`` (at this ring size) at which no site
    passes its bound, checked by running at it; None where no setting fits.
    """

    sites: list[Site]
    ring: Ring
    title: str = "secjax range report"
    largest_frac_bits: int | None = None

    @property
    def bounded(self) -> list[Site]:
        """Sites a value can pass whose magnitudes depend on the data (not those inside
        approximations, which fill the ring up to the bound by design: ``Site.planned``)."""
        return [site for site in self.sites if site.kind in _BOUNDED and not site.planned]

    @property
    def fits(self) -> bool:
        """Whether every value stayed below its bound."""
        return self.first_overflow is None

    @property
    def first_overflow(self) -> Site | None:
        """The first site, in program order, that a value reached past its bound."""
        return next((site for site in self.sites if site.past), None)

    @property
    def tightest(self) -> Site | None:
        """The bounded site with the least headroom."""
        return min(self.bounded, key=lambda site: site.headroom, default=None)

    def by_layer(
        self, depth: int | None = 4, *, kind: str | None = None, planned: bool = False
    ) -> dict[str, Site]:
        """The tightest bounded site of each model scope, cut to its first ``depth`` parts
        (4 groups a Hugging Face BERT by ``FlaxBertModule/encoder/layer/N``), of ``kind``
        (``"truncation"``, ``"product"``...) or any; ``planned``: of the sites inside
        approximations instead."""
        sites = (
            [site for site in self.sites if site.planned and site.kind in _BOUNDED]
            if planned
            else self.bounded
        )
        layers: dict[str, Site] = {}
        for site in sites:
            layer = _layer(site, depth)
            if kind not in (None, site.kind):
                continue
            if layer not in layers or site.headroom < layers[layer].headroom:
                layers[layer] = site
        return layers

    def suggested_safe_scopes(self) -> tuple[str, ...]:
        """The scopes of every truncation past its bound, in program order: what to pass as
        ``Config(safe_truncation=...)`` so that only they pay for the safe truncation (a
        product that wraps the ring needs fewer fractional bits instead)."""
        return tuple(
            dict.fromkeys(
                site.scope for site in self.sites if site.past and site.kind == TRUNCATION
            )
        )

    @property
    def wraps(self) -> bool:
        """Whether some product wraps the ring (no truncation can fix that)."""
        return any(site.past and site.kind == PRODUCT for site in self.sites)

    def comparisons(self) -> dict[str, float]:
        """The least headroom of the comparisons' operands per primitive."""
        least: dict[str, float] = collections.defaultdict(lambda: math.inf)
        for site in self.sites:
            if site.kind == COMPARISON:
                least[site.label] = min(least[site.label], site.headroom)
        return dict(least)

    def advice(self) -> str:
        """What to do: nothing, or the fix for the first site past its bound."""
        first = self.first_overflow
        fits = (
            ""
            if self.largest_frac_bits is None
            else f" frac_bits <= {self.largest_frac_bits} fits every site."
        )
        if first is None:
            tight = self.tightest
            room = (
                ""
                if tight is None
                else (
                    f" Least headroom: {tight.headroom:.1f} bits at {tight.label} in "
                    f"{tight.scope or '(top level)'}."
                )
            )
            return f"Every value stays inside its bound.{room}{fits}"
        scopes = self.suggested_safe_scopes()
        safe = (
            ""
            if not scopes or self.wraps
            else f" The safe truncation where needed: Config(safe_truncation={scopes!r})."
        )
        return (
            f"First past its bound: {first.label} at {first.source or 'unknown source'}: "
            f"{explain(first, self.ring)}.{fits}{safe}"
        )

    def table(self, depth: int | None = 4):
        """A ``rich`` table, a row per layer: its tightest probabilistic truncation (the
        step that fails with a probability past its bound), the least headroom of its
        products (which wrap past theirs) and of its approximations' steps (little by
        design), the elements past a bound; then the advice."""
        from rich.table import Table

        table = Table(title=self.title, caption=self.advice(), caption_justify="left")
        for column, justify in (
            ("scope", "left"),
            ("tightest truncation", "left"),
            ("peak", "right"),
            ("bound", "right"),
            ("headroom (bits)", "right"),
            ("products (bits)", "right"),
            ("approximations (bits)", "right"),
            ("past", "right"),
        ):
            table.add_column(column, justify=justify, overflow="fold")
        truncations = self.by_layer(depth, kind=TRUNCATION)
        products = self.by_layer(depth, kind=PRODUCT)
        inner = self.by_layer(depth, planned=True)
        past = collections.Counter()
        for site in self.sites:
            past[_layer(site, depth)] += site.past
        for layer in self.by_layer(depth):
            site = truncations.get(layer)
            cells = ["", "", "", ""]
            if site is not None:
                bound = 2.0**site.bound_bits
                known = site.scale is not None
                peak, limit = (
                    (site.real(site.peak), site.real(bound)) if known else (site.peak, bound)
                )
                unit = "" if known else " (ring)"
                cells = [
                    site.label,
                    f"{peak:.3g}{unit}",
                    f"{limit:.3g}{unit}",
                    f"{site.headroom:.1f}",
                ]
            table.add_row(
                layer,
                *cells,
                *(_bits(sites.get(layer)) for sites in (products, inner)),
                str(past[layer]),
            )
        return table

    def __str__(self) -> str:
        return render(self.table(), width=140)

    def plot(self, path: str, depth: int | None = 4) -> None:
        """Bars of each layer's headroom (bits) at its tightest truncation and at its
        tightest product, saved at ``path``; a bar below zero is past its bound."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        layers = list(self.by_layer(depth))
        names = [name.split("/", 1)[-1] if "/" in name else name for name in layers]
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(names) + 2), 4))
        width = 0.4
        for offset, kind, color in (
            (-width / 2, TRUNCATION, "tab:blue"),
            (width / 2, PRODUCT, "tab:orange"),
        ):
            sites = self.by_layer(depth, kind=kind)
            room = [sites[layer].headroom if layer in sites else float("nan") for layer in layers]
            ax.bar(
                [i + offset for i in range(len(layers))],
                room,
                width,
                label=kind + "s",
                color=[color if not r < 0 else "tab:red" for r in room],
            )
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("headroom to the bound (bits)")
        ax.set_title(self.title, fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
