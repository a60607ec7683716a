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
jaxpr, the configuration and the public inputs).

To answer many queries, parties stay up instead (:func:`serve`, ``secjax serve``): the
owner's ``private`` leaves are shared once, kernels compiled once, and an outside
:class:`Client` (``secjax query``), which runs no party, sends the unmarked leaves of each
query secret-shared and alone learns the answer (:mod:`secjax.serving`).

The protocols are secure against **semi-honest** parties (that follow the protocol and try to
learn more from what they see); the authenticated, encrypted channels keep outsiders out,
but a party that deviates can change the output undetected. See
:mod:`secjax.runtime.transport` for the links, :mod:`secjax.runtime.party` for the party
runtime, and ``docs/network.md`` for the command line (``secjax keygen / cluster / party /
serve / query / launch``).
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import time
from typing import Any, Callable

import jax
import numpy as np

from secjax import serving
from secjax.api import Config, SecureFunction
from secjax.runtime.cluster import Cluster, keygen, load_cluster, load_secret_key
from secjax.runtime.cost import CostReport
from secjax.runtime.faults import NetworkError, Stopped
from secjax.runtime.party import NetworkRuntime, program_digest
from secjax.runtime.transport import WireStats
from secjax.runtime.wire import DEALER, KIND_DONE
from secjax.values import Private, Public, argument_name, dtype_of, is_marker

__all__ = [
    "DEALER",
    "Client",
    "NetworkError",
    "PartyRun",
    "Program",
    "inputs_for",
    "keygen",
    "load_cluster",
    "load_inputs",
    "load_program",
    "run_party",
    "save_inputs",
    "serve",
]


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
    return jax.ShapeDtypeStruct(np.shape(x), dtype_of(x))


def _map_leaves(fn, args, kwargs):
    """Apply ``fn(name, leaf)`` to every leaf (markers are leaves) of ``(args, kwargs)``."""
    with_paths, tree = jax.tree_util.tree_flatten_with_path(
        (tuple(args), dict(kwargs or {})), is_leaf=is_marker
    )
    leaves = [fn(argument_name(path), leaf) for path, leaf in with_paths]
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
        raw = leaf.value if is_marker(leaf) else leaf
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
            arrays[name] = np.asarray(leaf.value if is_marker(leaf) else leaf)
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
        raw = leaf.value if is_marker(leaf) else leaf
        owner = _owner(leaf, input_party)
        if owner is None:
            return leaf
        if str(owner) != str(party):
            return _rewrap(leaf, _placeholder(raw))
        if name not in arrays:
            raise NetworkError(f"{path} has no array {name!r}, party {party}'s input")
        value = arrays[name]
        if value.shape != np.shape(raw) or value.dtype != np.dtype(_placeholder(raw).dtype):
            raise NetworkError(
                f"{path}: {name} is {value.dtype}{list(value.shape)}, the "
                f"program expects {_placeholder(raw).dtype}"
                f"{list(np.shape(raw))}"
            )
        used.add(name)
        return _rewrap(leaf, value)

    out = _map_leaves(fill, args, kwargs)
    extra = sorted(set(arrays) - used)
    if extra:
        raise NetworkError(
            f"{path} holds arrays the program does not take from party {party}: {extra}"
        )
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
    return Config(
        protocol=cluster.protocol,
        parties=cluster.n_parties,
        ring_bits=cluster.ring_bits,
        frac_bits=cluster.frac_bits,
        input_party=cluster.input_party,
        output_party=cluster.output_party,
        **options,
    )


def run_party(
    fn: Callable,
    args,
    kwargs=None,
    *,
    cluster,
    party,
    key=None,
    timeout: float | None = None,
    **options,
) -> PartyRun:
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
    traced, leaves, _ = function.trace(tuple(args), kwargs)
    digest = program_digest("secjax-network-1", config, traced, leaves)
    largest = function.cost(*args, **kwargs).largest
    with jax.enable_x64(True):
        runtime = NetworkRuntime(
            cluster,
            party,
            config.ring,
            digest=digest,
            secret_key_file=key,
            timeout=timeout,
            max_message=largest,
        )
    connected = time.perf_counter()
    try:
        output = function.run_on(runtime, args, kwargs)
        if party == DEALER:  # the dealer hears every party's end, or its abort
            runtime.transport.wait_done(cluster.parties, what="the parties' end")
        elif cluster.has_dealer:
            runtime.transport.notify(DEALER, KIND_DONE)
    except BaseException:
        runtime.close(failed=True)
        raise
    runtime.close()
    return PartyRun(
        party,
        output,
        runtime.cost.report(title=f"party {party}"),
        runtime.transport.stats,
        time.perf_counter() - start,
        connected - start,
    )


def _cluster(cluster) -> Cluster:
    return cluster if isinstance(cluster, Cluster) else load_cluster(cluster)


def serve(
    program: Program,
    *,
    cluster,
    party,
    key=None,
    timeout: float | None = None,
    queries: int | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[float], None] | None = None,
    on_phase: Callable[[str, float], None] | None = None,
    on_query: Callable[[serving.QueryRecord], None] | None = None,
    **options,
) -> int:
    """Serve ``program`` as node ``party`` (an int, or ``"dealer"``) of ``cluster``: connect,
    share the ``private`` leaves once, compile (or load from the disk cache) every kernel by
    a rehearsal of one query, call ``on_ready(seconds
    since start)`` (``on_phase(name, seconds)`` after each start-up phase), then answer
    clients' queries until ``stop`` is set or ``queries`` were
    answered or failed (each reported to ``on_query``). ``program``'s leaves: this node's
    own ``private`` values, placeholders for the others' and for the clients' (unmarked)
    ones (:func:`inputs_for` with ``party``). Returns the number of failed queries."""
    start = last = time.perf_counter()

    def phase(name):
        nonlocal last
        now = time.perf_counter()
        if on_phase is not None:
            on_phase(name, now - last)
        last = now

    cluster = _cluster(cluster)
    party = str(party)
    served = serving.Served.of(
        program.fn, program.args, program.kwargs, serving.serving_config(cluster, **options)
    )
    phase("traced")
    runtime = serving.connect_server(served, cluster, party, key=key, timeout=timeout)
    phase("costed and connected")
    server = serving.Server(served, runtime)
    failed = answered = 0
    try:
        server.share_state()
        phase("state shared")
        phase(server.warm_up())
        server.wait_for_peers()
        phase("every node ready")
        if on_ready is not None:
            on_ready(time.perf_counter() - start)
        while queries is None or answered < queries:
            try:
                record = server.answer_next(stop)
            except Stopped:
                break
            answered += 1
            failed += not record.ok
            if on_query is not None:
                on_query(record)
    except BaseException:
        runtime.close(failed=True)
        raise
    runtime.close()
    return failed


class Client:
    """An outside client of served parties: it secret-shares its inputs (the program's
    unmarked leaves) to the computing parties, and alone reconstructs the output.

        client = secjax.network.Client(program, cluster="cluster.toml", name="alice")
        out = client(*args)     # args in the program's structure; only unmarked leaves used

    ``key``: the client's ``*.key_secret`` (default: next to the cluster file, named after
    the client). ``wait``: seconds to wait for an answer (default: 10 x the timeout)."""

    def __init__(
        self,
        program: Program,
        *,
        cluster,
        name: str,
        key=None,
        timeout: float | None = None,
        wait: float | None = None,
        **options,
    ):
        cluster = _cluster(cluster)
        self.served = serving.Served.of(
            program.fn, program.args, program.kwargs, serving.serving_config(cluster, **options)
        )
        keys = load_secret_key(key or cluster.default_key_path(name))
        self.session = serving.ClientSession(self.served, cluster, name, keys, timeout=timeout)
        self.wait = 10 * self.session.links.timeout if wait is None else float(wait)

    def values(self, args, kwargs=None) -> list:
        """The client's leaves of ``(args, kwargs)`` (the program's structure)."""
        _, leaves, _ = self.served.function.trace(tuple(args), dict(kwargs or {}))
        return [leaves[i] for i in self.served.client]

    def __call__(self, *args, **kwargs):
        return self.session.query(self.values(args, kwargs), wait=self.wait)

    def close(self) -> None:
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
