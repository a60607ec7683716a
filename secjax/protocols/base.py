"""What every protocol provides: operations on secret-shared ring arrays.

A protocol knows rings and shares, not JAX primitives. Its operations take and return *share
arrays*: ring arrays whose leading ``share_axes`` axes index the parties' shares (in emulation
all parties are present; the layout is the protocol's own). Each operation runs as a step on
the runtime (:class:`secjax.runtime.emulation.Emulator`), which compiles it once per shape and
accounts for its communication.

Bilinear maps (``mul``, ``dot_general``, ``conv``) are one operation, :meth:`bilinear`, which
takes the map itself as a hashable callable on plain ring arrays: Beaver triples and replicated
cross terms work for any bilinear map, so one code path serves all three.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from secjax.protocols import common
from secjax.ring import Ring, shift_amount


@dataclasses.dataclass(frozen=True)
class Bilinear:
    """A hashable bilinear map on ring arrays: ``fn(x, y, **params)``."""

    fn: Callable
    params: tuple = ()

    def __call__(self, x, y):
        return self.fn(x, y, **dict(self.params))


# The elementwise product (with broadcasting): the bilinear map of ``mul``.
MULTIPLY = Bilinear(jnp.multiply)


@dataclasses.dataclass(frozen=True)
class Local:
    """A hashable linear map applied to every share alike: ``fn(*xs, **params)``.

    ``on_shares``: ``fn`` takes the whole share arrays (leading share axes included, which it
    leaves alone: it addresses the logical axes from the end or by their count) and works on
    numpy and JAX arrays alike (:func:`array_namespace`), so the emulator may run it on the
    host without compiling anything (reshapes, transposes, broadcasts, sums over axes)."""

    fn: Callable
    params: tuple = ()
    on_shares: bool = False

    @classmethod
    def of(cls, fn: Callable, *, on_shares: bool = False, **params) -> "Local":
        """``fn`` with its keyword parameters (hashable values), in a canonical order."""
        return cls(fn, tuple(sorted(params.items())), on_shares)

    def __call__(self, *xs):
        return self.fn(*xs, **dict(self.params))


@dataclasses.dataclass(frozen=True)
class Steps:
    """A protocol's own operations, each a step ``step(comm, *arrays, **static)`` run on the
    runtime (module-level functions, so compiled kernels are cached by identity). Each
    protocol lists its steps by name: a missing one fails when its module is imported."""

    share: Callable  # (comm, x, *, owner) -> shares of x, held by party owner
    reveal: Callable  # (comm, shares, *, to) -> the value (at ``to``, or at every party)
    from_public: Callable  # (comm, x) -> the trivial sharing of a public x
    bilinear: Callable  # (comm, a, b, *, op) -> shares of op(a, b)
    # (comm, a, *, bits, offset) -> shares of a / 2^bits, for 0 <= a + offset < 2^(k-1)
    trunc: Callable
    msb: Callable  # (comm, a) -> 0/1 shares of [a < 0]
    # (comm, a, *, width=ring bits, out_bits=ring bits) -> 0/1 shares of [a == 0 mod
    # 2^width], in the ring of ``out_bits`` bits
    eqz: Callable
    # A truncated product is two steps, so that the truncation's kernel (most of the
    # compiling) depends on the product's shape alone. A protocol may hand the product to its
    # truncation before re-sharing it: ``product`` then returns an intermediate layout
    # (``Protocol.product_shape``) that only ``trunc_product`` takes.
    product: Callable | None = None  # (comm, a, b, *, op) -> op(a, b), intermediate
    trunc_product: Callable | None = None  # (comm, t, *, bits, offset), as trunc
    # A product with an operand one party holds in the clear, in the intermediate layout,
    # and the step that turns that layout into shares (protocols without them share the
    # operand and take the secret product).
    private_product: Callable | None = None  # (comm, x, b, *, op, owner, private_first)
    reshare: Callable | None = None  # (comm, t) -> shares of t

    def __post_init__(self):
        if (self.product is None) != (self.trunc_product is None):
            raise TypeError("a fused product needs both a product and a trunc_product step")
        if self.product is None:  # no fusion: the product's shares, then its truncation
            object.__setattr__(self, "product", self.bilinear)
            object.__setattr__(self, "trunc_product", self.trunc)
        if (self.private_product is None) != (self.reshare is None):
            raise TypeError("a private product needs both a private_product and a reshare step")


def array_namespace(x):
    """numpy for host arrays, ``jax.numpy`` for everything else (device arrays, tracers)."""
    return np if isinstance(x, np.ndarray) else jnp


def _vmap_shares(fn, axes: int, in_axes):
    for _ in range(axes):
        fn = jax.vmap(fn, in_axes=in_axes)
    return fn


def _scale_up_step(comm, x, *, bits):
    return x << shift_amount(bits, x)


def _stack(*xs):
    return jnp.stack(xs)


def _index(x, *, i):
    return x[i]


_ADD = Local(jnp.add)
_SUBTRACT = Local(jnp.subtract)
_NEGATE = Local(jnp.negative)
_STACK = Local(_stack)


def _broadcast(x, shape):
    """``x`` broadcast to ``shape``: a host array as a numpy view (compiling nothing)."""
    if isinstance(x, np.ndarray) or not isinstance(x, jax.Array):
        return np.broadcast_to(x, shape)
    return jnp.broadcast_to(x, shape)


def _ring_constant(ring: Ring, value: int) -> np.ndarray:
    """The integer ``value`` as a ring element (two's complement)."""
    return np.asarray(value % (1 << ring.bits), dtype=ring.dtype)


def _to_width(x, *, bits):
    """``x`` as ``bits``-bit ring elements: reduced modulo ``2^bits`` (narrower) or lifted
    as unsigned integers (wider)."""
    return x.astype(f"uint{bits}")


def _in_ring(ring: Ring, value) -> np.ndarray:
    """Ring values (or values of a narrower ring, as signed integers) as ring elements."""
    value = np.asarray(value)
    if value.dtype == ring.dtype:
        return value
    signed = value.view(f"int{value.dtype.itemsize * 8}")
    return signed.astype(ring.signed_dtype).view(ring.dtype)


def _is_multiply(op: Bilinear) -> bool:
    """Whether ``op`` multiplies element by element (with broadcasting)."""
    return op.fn is jnp.multiply and not op.params


def _shares_step(comm, *shares, fn):
    return fn(*shares)


def _local_step(comm, *shares, fn, axes, shared):
    in_axes = tuple(0 if s else None for s in shared)
    return _vmap_shares(fn, axes, in_axes)(*shares)


def _bilinear_public_step(comm, shares, public, *, op, axes, public_first):
    if public_first:
        return _vmap_shares(lambda s: op(public, s), axes, 0)(shares)
    return _vmap_shares(lambda s: op(s, public), axes, 0)(shares)


class Protocol:
    """Secret-sharing protocol over ``ring`` for ``n_parties``, running on ``runtime``."""

    name: str
    share_axes: int = 1

    def __init__(self, ring: Ring, n_parties: int, runtime):
        self.ring = ring
        self.n_parties = n_parties
        self.runtime = runtime
        # Where values can be seen (the emulator), the range guard every truncation's input
        # and every product goes past (secjax.protocols.ranges.RangeMonitor).
        self.monitor = None
        # Where truncations are correct on the whole ring: everywhere (True), nowhere
        # (False), or in the model scopes named (see :meth:`trunc`).
        self.safe_truncation: bool | tuple[str, ...] = False
        # Whether large lookups compute their one-hot products in a 32-bit ring (read by the
        # gather rule, secjax.primitives.lookup).
        self.narrow_lookups = True

    # -- protocol-specific steps ----------------------------------------------------------
    steps: Steps

    def _run(self, name: str, *arrays, elementwise: tuple[int, ...] | None = None, **static):
        """Run the step ``name`` of :attr:`steps` on the runtime (``elementwise``: the logical
        shape of a step that treats every element alike, see :meth:`Runtime.run`)."""
        return self.runtime.run(
            getattr(self.steps, name), *arrays, elementwise=elementwise, **static
        )

    def share_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the share array of a secret of logical ``shape``."""
        return (self.n_parties, *shape)

    def product_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of the ``product`` step's output for a product of logical ``shape``."""
        return self.share_shape(shape)

    def share(self, x: jax.Array, owner: int) -> jax.Array:
        """Secret-share the ring array ``x`` held by party ``owner``."""
        if not 0 <= owner < self.n_parties:
            raise ValueError(f"owner {owner} is not one of the {self.n_parties} parties")
        return self._run("share", x, owner=owner, elementwise=tuple(x.shape))

    def reveal(self, shares: jax.Array, to: int | None = None) -> jax.Array:
        """Open ``shares``: to every party (``to=None``) or to party ``to`` only."""
        return self._run("reveal", shares, to=to, elementwise=self.logical_shape(shares))

    def from_public(self, x: jax.Array) -> jax.Array:
        """The trivial sharing of a public ring array (no communication)."""
        return self._run("from_public", x, elementwise=tuple(x.shape))

    def bilinear(
        self,
        op: Bilinear,
        a: jax.Array,
        b: jax.Array,
        *,
        trunc_bits: int = 0,
        scale: int | None = None,
        planned: bool = False,
        nonnegative: bool = False,
        width: int | None = None,
    ) -> jax.Array:
        """Shares of ``op(a, b)`` for secret ``a`` and ``b``, divided by ``2^trunc_bits`` when
        that is positive: the steps ``product`` and ``trunc_product``, which a protocol may
        fuse (aby3 skips the product's re-sharing), or the product and the safe truncation
        where that is chosen (:meth:`trunc`). ``scale``: the product's fractional bits;
        ``planned``: the caller chose the scales to fit a bound it knows (an approximation's
        internals): both for the range guard's report. ``nonnegative``: the product cannot
        be negative (a square), so its truncation is correct up to 2^(k-1), at no cost.
        ``width``: compute the product in the narrower ring ``Z_2^width`` (see
        :meth:`_narrow_product`; untruncated only)."""
        if width is not None and width < self.ring.bits:
            return self._narrow_product(
                op,
                width,
                (a, b),
                lambda x, y: self.bilinear(op, x, y),
                values=lambda: (self.value_of(a), self.value_of(b)),
                scale=scale,
                trunc_bits=trunc_bits,
            )
        elementwise = self._common_shape(a, b) if _is_multiply(op) else None
        fused = bool(trunc_bits) and (nonnegative or not self._safe_here())
        if trunc_bits:
            self._check_trunc_bits(trunc_bits)
        out = self._run("product" if fused else "bilinear", a, b, op=op, elementwise=elementwise)
        if self._watching():
            self.monitor.product(
                op,
                self.value_of(a),
                self.value_of(b),
                self.value_of(out, product=fused),
                truncated=bool(trunc_bits),
                safe=bool(trunc_bits) and not fused,
                nonnegative=nonnegative,
                scale=scale,
                planned=planned,
            )
        return self._truncated_product(out, trunc_bits, fused=fused, nonnegative=nonnegative)

    def bilinear_private(
        self,
        op: Bilinear,
        x: jax.Array,
        owner: int,
        b: jax.Array,
        *,
        private_first: bool = True,
        trunc_bits: int = 0,
        scale: int | None = None,
        width: int | None = None,
    ) -> jax.Array:
        """Shares of ``op(x, b)`` (``op(b, x)`` unless ``private_first``) for a ring array
        ``x`` that party ``owner`` holds in the clear and uses in this product only, divided
        by ``2^trunc_bits`` when that is positive. Protocols with a ``private_product`` step
        exploit the owner's knowledge of ``x`` (aby3: three local products instead of six);
        the others share ``x`` first. ``width``: as in :meth:`bilinear`."""
        if width is not None and width < self.ring.bits:
            return self._narrow_product(
                op,
                width,
                (x, b),
                lambda xn, bn: self.bilinear_private(
                    op, xn, owner, bn, private_first=private_first
                ),
                values=lambda: (x, self.value_of(b))[:: 1 if private_first else -1],
                scale=scale,
                trunc_bits=trunc_bits,
            )
        if not self._private_products():
            shared = self.share(x, owner)
            a, b = (shared, b) if private_first else (b, shared)
            return self.bilinear(op, a, b, trunc_bits=trunc_bits, scale=scale)
        if trunc_bits:
            self._check_trunc_bits(trunc_bits)
        product = self._run(
            "private_product", x, b, op=op, owner=owner, private_first=private_first
        )
        fused = bool(trunc_bits) and not self._safe_here()
        if self._watching():
            other = self.value_of(b)
            left, right = (x, other) if private_first else (other, x)
            self.monitor.product(
                op,
                left,
                right,
                self.value_of(product, product=True),
                truncated=bool(trunc_bits),
                safe=bool(trunc_bits) and not fused,
                scale=scale,
            )
        if not fused:
            shape = tuple(product.shape[len(self.product_shape(())) :])
            product = self._run("reshare", product, elementwise=shape)
        return self._truncated_product(product, trunc_bits, fused=fused)

    def _narrow_product(self, op, width, operands, product, *, values, scale, trunc_bits):
        """``product`` of ``operands`` (shares, or a party's clear array) reduced modulo
        ``2^width``, widened back to the ring (:meth:`widen`). The caller promises that the
        product's value lies within ``+-2^(width-1)``; the range guard checks it. A 32-bit
        product is one fast integer GEMM where the 64-bit one takes five float GEMMs (see
        :mod:`secjax.ring`), and its messages are half as long; widening costs one batch of
        sign tests per output element."""
        if trunc_bits:
            raise ValueError("a product in a narrower ring cannot be truncated")
        to_width = Local.of(_to_width, bits=width, on_shares=True)
        narrowed = [self.local(to_width, operand) for operand in operands]
        monitor, self.monitor = self.monitor, None  # narrow values mean nothing to the guard
        try:
            out = self.widen(product(*narrowed))
        finally:
            self.monitor = monitor
        if self._watching():
            left, right = (_in_ring(self.ring, v) for v in values())
            self.monitor.product(
                op, left, right, self.value_of(out), truncated=False, width=width, scale=scale
            )
        return out

    def widen(self, a: jax.Array) -> jax.Array:
        """Shares in the ring of the signed value ``v`` (``|v| < 2^(w-1)``) that ``a`` holds
        as shares in the narrower ring ``Z_2^w`` (``w``: its dtype's bits). Exact.

        The bias ``u = v + 2^(w-1)`` lies in ``[0, 2^w)``. Lifted to the ring, the shares'
        ``n`` additive components (one per party, aby3's replicated sharing included) sum to
        ``U = u + c 2^w`` with ``0 <= c < n``, and ``c`` counts the ``j`` in ``1..n-1`` with
        ``U >= j 2^w``: one batch of ``n - 1`` sign tests per element."""
        w = np.dtype(a.dtype).itemsize * 8
        half = 1 << (w - 1)
        biased = self.add_public(a, np.asarray(half, a.dtype))
        lifted = self.local(Local.of(_to_width, bits=self.ring.bits, on_shares=True), biased)
        if self.n_parties > 1:
            thresholds = [
                self.add_public(lifted, _ring_constant(self.ring, -(j << w)))
                for j in range(1, self.n_parties)
            ]
            below = self.msb(self.stack(*thresholds))  # [U < j 2^w]
            kept = functools.reduce(
                self.add, [self.index(below, j) for j in range(self.n_parties - 1)]
            )
            # U - c 2^w = U - (n - 1) 2^w + 2^w * #{j : U < j 2^w}
            lifted = self.add(lifted, self.scale_up(kept, w))
            half += (self.n_parties - 1) << w
        return self.add_public(lifted, _ring_constant(self.ring, -half))

    def _truncated_product(
        self, product, trunc_bits: int, *, fused: bool, nonnegative: bool = False
    ):
        """A product's shares divided by 2^trunc_bits: ``fused``, in the product layout and
        by the probabilistic truncation, else by the safe one."""
        if fused:
            lead = len(self.product_shape(()))
            return self._run(
                "trunc_product",
                product,
                bits=trunc_bits,
                offset=common.offset_for(self.ring, nonnegative),
                elementwise=tuple(product.shape[lead:]),
            )
        return self._trunc_safe(product, trunc_bits) if trunc_bits else product

    def _private_products(self) -> bool:
        """Whether :meth:`bilinear_private` runs this protocol's own private product."""
        return self.steps.private_product is not None

    def trunc(
        self,
        a: jax.Array,
        bits: int,
        *,
        scale: int | None = None,
        planned: bool = False,
        nonnegative: bool = False,
    ) -> jax.Array:
        """Shares of ``a / 2^bits`` (sign-preserving), within the protocol's stated error:
        floor or floor + 1 for ``|a| < 2^(k-2)``. Where the safe truncation is chosen
        (:attr:`safe_truncation`: everywhere, or the model scopes whose name stack contains
        one of the paths given), it is correct on the whole ring, at the price of a sign
        test (:meth:`_trunc_safe`). ``nonnegative``: ``a`` cannot be negative, so the
        probabilistic truncation is correct up to 2^(k-1), and safe, at no extra cost.
        ``scale``, ``planned``: for the range guard, as in :meth:`bilinear`."""
        self._check_trunc_bits(bits)
        safe = self._safe_here() and not nonnegative
        if self._watching():
            self.monitor.truncation(
                self.value_of(a), safe=safe, nonnegative=nonnegative, scale=scale, planned=planned
            )
        if safe:
            return self._trunc_safe(a, bits)
        return self._run(
            "trunc",
            a,
            bits=bits,
            offset=common.offset_for(self.ring, nonnegative),
            elementwise=self.logical_shape(a),
        )

    def _trunc_safe(self, a: jax.Array, bits: int) -> jax.Array:
        """``a / 2^bits`` for any ring element ``a``: with ``m = [a < 0]`` (one msb),
        ``u = a + m 2^(k-1) - 2^(k-2)`` lies in ``[-2^(k-2), 2^(k-2))``, where the
        probabilistic truncation is correct, and ``a / 2^d = u / 2^d + 2^(k-2-d) - m
        2^(k-1-d)``. The same rounding as :meth:`trunc` (floor or floor + 1); the cost is
        one msb more."""
        k, shape = self.ring.bits, self.logical_shape(a)
        negative = self._run("msb", a, elementwise=shape)
        lifted = self.add_public(
            self.add(a, self.scale_up(negative, k - 1)), _ring_constant(self.ring, -(1 << (k - 2)))
        )
        t = self._run(
            "trunc",
            lifted,
            bits=bits,
            offset=common.offset_for(self.ring, False),
            elementwise=shape,
        )
        return self.sub(
            self.add_public(t, _ring_constant(self.ring, 1 << (k - 2 - bits))),
            self.scale_up(negative, k - 1 - bits),
        )

    def _safe_here(self) -> bool:
        """Whether truncations of the equation being evaluated are the safe ones."""
        choice = self.safe_truncation
        if isinstance(choice, bool):
            return choice
        scope = f"/{self.runtime.cost.current_label()[1].strip('/')}/"
        return any(f"/{path.strip('/')}/" in scope for path in choice)

    # -- what the range guard sees (emulation only) ------------------------------------------
    def _watching(self) -> bool:
        return self.monitor is not None

    def value_of(self, shares, *, product: bool = False) -> np.ndarray:
        """The ring value that ``shares`` hold (``product``: in :meth:`product_shape`'s
        layout), reconstructed on the host without any message: only an emulator, which
        holds every party's shares, can call this meaningfully."""
        shares = np.asarray(shares)
        return shares.sum(axis=0, dtype=shares.dtype)

    def _check_trunc_bits(self, bits: int) -> None:
        if not 0 < bits <= self.ring.bits - 2:
            raise ValueError(f"cannot truncate {bits} bits in a {self.ring.bits}-bit ring")

    def msb(self, a: jax.Array) -> jax.Array:
        """Arithmetic shares (0 or 1) of the sign bit of ``a``: 1 where ``a < 0``."""
        if self._watching() and self.monitor.mode == "record":
            self.monitor.comparison(self.value_of(a))
        return self._run("msb", a, elementwise=self.logical_shape(a))

    def eqz(self, a: jax.Array, width: int | None = None, bits: int | None = None) -> jax.Array:
        """Arithmetic shares (0 or 1) of ``a == 0``.

        ``width`` (a power of two): the caller's promise that ``|a| < 2^width``, so that
        only the low ``width`` bits need testing (fewer bytes and rounds: the AND tree
        starts at ``width`` bits instead of the ring's). A value past it reads as zero when
        it is a multiple of ``2^width``, under every protocol and emulation mode alike.
        ``bits``: the result as shares in the narrower ring ``Z_2^bits`` (a one-hot bound
        for a narrow product, :meth:`bilinear`'s ``width``)."""
        static = {}
        if width is not None and width < self.ring.bits:
            if width < 1 or width & (width - 1):
                raise ValueError(f"eqz width must be a power of two, got {width}")
            static["width"] = width
        if bits is not None and bits < self.ring.bits:
            static["out_bits"] = bits  # not "bits": the emulator passes those at run time
        return self._run("eqz", a, elementwise=self.logical_shape(a), **static)

    # -- shared by every linear secret sharing ---------------------------------------------
    def local(
        self,
        fn: Local,
        *operands: jax.Array,
        shared: tuple[bool, ...] | None = None,
        over: tuple[int, ...] | None = None,
    ):
        """Apply the linear map ``fn`` to every share (public operands passed as they are).
        ``over``: a trailing logical shape whose elements ``fn`` treats alike (it acts on the
        axes before it only: sums, stacks, weighted sums of stacked rows), so the runtime
        may run it on blocks of those elements (see :meth:`Runtime.run`)."""
        shared = tuple(shared or (True,) * len(operands))
        if fn.on_shares and all(shared):
            return self.runtime.run(_shares_step, *operands, fn=fn, on_host=True)
        whole = tuple(i for i, s in enumerate(shared) if not s)
        return self.runtime.run(
            _local_step,
            *operands,
            fn=fn,
            axes=self.share_axes,
            shared=shared,
            elementwise=over,
            whole=whole,
        )

    def add(self, a, b):
        return self.local(_ADD, a, b, over=self._common_shape(a, b))

    def scale_up(self, a, bits: int):
        """``a * 2^bits``: re-scaling to ``bits`` more fractional bits is exact and local."""
        return self.runtime.run(_scale_up_step, a, bits=bits, elementwise=self.logical_shape(a))

    def _common_shape(self, *shares) -> tuple[int, ...] | None:
        """The shape that ``shares``' logical shapes (of one rank) broadcast to, or ``None``."""
        shapes = [self.logical_shape(x) for x in shares]
        if len({len(shape) for shape in shapes}) != 1:
            return None
        try:
            return tuple(np.broadcast_shapes(*shapes))
        except ValueError:
            return None

    def stack(self, *shares):
        """Secrets of one shape stacked on a new leading logical axis (local)."""
        shapes = {self.logical_shape(x) for x in shares}
        return self.local(_STACK, *shares, over=shapes.pop() if len(shapes) == 1 else None)

    def index(self, shares, i: int):
        """Row ``i`` of the leading logical axis (local)."""
        return self.local(Local.of(_index, i=i), shares, over=self.logical_shape(shares)[1:])

    def sub(self, a, b):
        return self.local(_SUBTRACT, a, b, over=self._common_shape(a, b))

    def neg(self, a):
        return self.local(_NEGATE, a, over=self.logical_shape(a))

    def add_public(self, a, p):
        """``a + p`` for a public ring array ``p`` broadcastable to ``a``'s logical shape."""
        return self.add(a, self.from_public(_broadcast(p, self.logical_shape(a))))

    def bilinear_public(self, op: Bilinear, a, p, *, public_first: bool = False):
        """``op(a, p)`` (or ``op(p, a)``) for public ``p``: local, no communication."""
        shape = self.logical_shape(a)
        elementwise = shape if _is_multiply(op) and tuple(p.shape) in ((), shape) else None
        out = self.runtime.run(
            _bilinear_public_step,
            a,
            p,
            op=op,
            axes=self.share_axes,
            public_first=public_first,
            elementwise=elementwise,
        )
        if self._watching():
            left, right = (p, self.value_of(a)) if public_first else (self.value_of(a), p)
            self.monitor.product(op, left, right, self.value_of(out), truncated=False)
        return out

    def select(self, bit, a, b):
        """``bit ? a : b`` for a secret 0/1 ``bit`` and secret ``a``, ``b`` of one shape."""
        return self.add(b, self.bilinear(MULTIPLY, bit, self.sub(a, b)))

    def logical_shape(self, shares) -> tuple[int, ...]:
        return tuple(shares.shape[self.share_axes :])
