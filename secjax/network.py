"""Running a secure function across machines: one OS process per party.

    result = secjax.network.run_party(model.apply, args, cluster="cluster.toml", party=1)

Every party (and, for semi2k, the dealer) calls :func:`run_party` with the same function and
the same argument *structure*. Each party passes the values it owns and a
``jax.ShapeDtypeStruct`` placeholder for every value it does not own (:func:`inputs_for` makes
them), so that all parties trace the same jaxpr:

- ``secjax.private(x, party=i)``: party i's input (the model owner's weights, say); party i
  computes on it in the clear until it meets another party's data, then secret-shares it.
- an unmarked leaf: an input of the cluster's ``input_party`` (the client's prompt, say),
  secret-shared at once.
- ``secjax.public(x)``: known to every party; every party passes the same value.

The outputs are revealed to the cluster's ``output_party`` only; every other party gets
``None``. The parties check at start-up that they run the same program (a digest of the
jaxpr, the configuration and the public inputs). See :mod:`secjax.runtime.network` for the
transport, framing, randomness, dealer and fault handling, and ``docs/network.md`` for the
command line (``secjax keygen / party / launch``).
"""
from __future__ import annotations

import dataclasses
import importlib
import time
from typing import Any, Callable

import jax
import numpy as np

from secjax.api import Config, SecureFunction, _argument_name, _is_marker
from secjax.runtime.cost import CostReport
from secjax.runtime.network import (
    DEALER,
    Cluster,
    NetworkError,
    NetworkRuntime,
    WireStats,
    keygen,
    load_cluster,
    program_digest,
)
from secjax.values import Private, Public

__all__ = ["DEALER", "NetworkError", "PartyRun", "Program", "inputs_for", "keygen",
           "load_cluster", "load_inputs", "load_program", "run_party", "save_inputs"]


@dataclasses.dataclass(frozen=True)
class Program:
    """A function and its arguments as every party sees them: the structure, who owns which
    leaf (``private`` / unmarked / ``public``) and the shapes. Leaves may be concrete (a demo
    that can make every party's inputs) or ``jax.ShapeDtypeStruct``."""

    fn: Callable
    args: tuple
    kwargs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PartyRun:
    """What one party process got: the output (``None`` except at the output party), the
    cost report of the run, what went on the wire, and the wall time."""

    party: str
    output: Any
    cost: CostReport
    wire: WireStats
    seconds: float
    connect_seconds: float


def _owner(leaf, input_party: int):
    """The party owning ``leaf``, or None for a public one."""
    if isinstance(leaf, Public):
        return None
    if isinstance(leaf, Private):
        return leaf.owner
    return input_party


def _placeholder(x):
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype if hasattr(x, "dtype")
                                else np.asarray(x).dtype)


def _map_leaves(fn, args, kwargs):
    """Apply ``fn(name, leaf)`` to every leaf (markers are leaves) of ``(args, kwargs)``."""
    with_paths, tree = jax.tree_util.tree_flatten_with_path((tuple(args), dict(kwargs or {})),
                                                            is_leaf=_is_marker)
    leaves = [fn(_argument_name(path), leaf) for path, leaf in with_paths]
    return jax.tree.unflatten(tree, leaves)


def _rewrap(leaf, raw):
    if isinstance(leaf, Public):
        return Public(raw)
    if isinstance(leaf, Private):
        return Private(raw, leaf.owner)
    return raw


def inputs_for(party, args, kwargs=None, *, input_party: int = 0):
    """``(args, kwargs)`` as party ``party`` passes them: its own leaves and public ones as
    they are, every other leaf replaced by a ``jax.ShapeDtypeStruct``. ``party="dealer"``
    owns nothing."""
    def keep(_, leaf):
        owner = _owner(leaf, input_party)
        raw = leaf.value if _is_marker(leaf) else leaf
        if owner is None or str(owner) == str(party):
            return leaf
        return _rewrap(leaf, _placeholder(raw))
    return _map_leaves(keep, args, kwargs)


def save_inputs(path, party, args, kwargs=None, *, input_party: int = 0) -> list[str]:
    """Write the leaves party ``party`` owns to an ``.npz`` file, keyed by argument name
    (``args[0]['params']['Dense_0']['kernel']``). Returns the names."""
    arrays = {}

    def take(name, leaf):
        if str(_owner(leaf, input_party)) == str(party):
            arrays[name] = np.asarray(leaf.value if _is_marker(leaf) else leaf)
        return leaf
    _map_leaves(take, args, kwargs)
    np.savez(path, **arrays)
    return sorted(arrays)


def load_inputs(path, party, args, kwargs=None, *, input_party: int = 0):
    """``(args, kwargs)`` for party ``party``: the structure of ``args``/``kwargs`` with its
    own leaves read from the ``.npz`` at ``path`` (shapes and dtypes checked), the others
    placeholders."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    used = set()

    def fill(name, leaf):
        raw = leaf.value if _is_marker(leaf) else leaf
        owner = _owner(leaf, input_party)
        if owner is None:
            return leaf
        if str(owner) != str(party):
            return _rewrap(leaf, _placeholder(raw))
        if name not in arrays:
            raise NetworkError(f"{path} has no array {name!r}, party {party}'s input")
        value = arrays[name]
        if value.shape != np.shape(raw) or value.dtype != np.dtype(_placeholder(raw).dtype):
            raise NetworkError(f"{path}: {name} is {value.dtype}{list(value.shape)}, the "
                               f"program expects {_placeholder(raw).dtype}"
                               f"{list(np.shape(raw))}")
        used.add(name)
        return _rewrap(leaf, value)
    out = _map_leaves(fill, args, kwargs)
    extra = sorted(set(arrays) - used)
    if extra:
        raise NetworkError(f"{path} holds arrays the program does not take from party "
                           f"{party}: {extra}")
    return out


def load_program(spec: str) -> Program:
    """``module:attribute``: a :class:`Program`, or a callable returning one."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"--program must be module:attribute, got {spec!r}")
    obj = getattr(importlib.import_module(module), attr)
    program = obj if isinstance(obj, Program) else obj()
    if not isinstance(program, Program):
        raise TypeError(f"{spec} is not a secjax.network.Program (nor returns one)")
    return program


def _config(cluster: Cluster, **options) -> Config:
    return Config(protocol=cluster.protocol, parties=cluster.n_parties,
                  ring_bits=cluster.ring_bits, frac_bits=cluster.frac_bits,
                  input_party=cluster.input_party, output_party=cluster.output_party,
                  **options)


def run_party(fn: Callable, args, kwargs=None, *, cluster, party, key=None,
              timeout: float | None = None, **options) -> PartyRun:
    """Run ``fn`` securely as party ``party`` (an int, or ``"dealer"``) of ``cluster`` (a
    :class:`Cluster` or the path of its TOML file); blocks until every party is done.

    ``args``/``kwargs``: this party's own values, placeholders for the others' (see
    :func:`inputs_for`). ``key``: the party's ``*.key_secret`` file (default: next to the
    cluster file, named after the party). ``timeout``: seconds to wait for any one message
    (default: the cluster's, 60). ``options``: further :class:`secjax.Config` fields
    (``overrides``, ``policy``). Raises :class:`NetworkError` subclasses on faults.
    """
    start = time.perf_counter()
    if not isinstance(cluster, Cluster):
        cluster = load_cluster(cluster)
    party = str(party)
    if party != DEALER and party not in cluster.nodes:
        raise NetworkError(f"party {party} is not in the cluster")
    config = _config(cluster, **options)
    function = SecureFunction(fn, config)
    kwargs = dict(kwargs or {})
    traced, leaves, _ = function._trace(tuple(args), kwargs)
    public = [leaf.value for leaf in leaves if isinstance(leaf, Public)]
    digest = program_digest(
        "secjax-network-1", config.protocol, config.parties, config.ring_bits,
        config.frac_bits, config.input_party, config.output_party, config.overrides,
        repr(config.policy), str(traced.jaxpr), str(traced.out_tree), traced.kinds,
        [(tuple(v.aval.shape), str(v.aval.dtype)) for v in traced.jaxpr.jaxpr.invars],
        *traced.jaxpr.consts, *[np.asarray(p) for p in public])
    with jax.enable_x64(True):
        runtime = NetworkRuntime(cluster, party, config.ring, digest=digest,
                                 secret_key_file=key, timeout=timeout)
    connected = time.perf_counter()
    try:
        output = function._execute(tuple(args), kwargs, abstract=False, runtime=runtime)
    except BaseException:
        runtime.close(failed=True)
        raise
    runtime.close()
    return PartyRun(party, output, runtime.cost.report(title=f"party {party}"),
                    runtime.transport.stats, time.perf_counter() - start,
                    connected - start)
