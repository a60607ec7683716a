"""Served parties on loopback: long-lived processes answer several queries from an outside
client; a client that vanishes mid-query costs one failed query, not the service.

Every process is bounded (message timeouts, queue timeouts, join with kill), and every test
leaves no process behind.
"""

from __future__ import annotations

import multiprocessing as mp
import re
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from test_network import _cluster

import secjax
from secjax.values import Private

START_LIMIT = 300  # seconds for the servers to become ready before the test fails (no hang)


def _server_main(cluster_path, name, program_name, queries, reports):
    import secjax.demo
    from secjax import network

    program = getattr(secjax.demo, program_name)()
    args, kwargs = network.inputs_for(name, program.args, program.kwargs, input_party=-1)
    try:
        failed = network.serve(
            network.Program(program.fn, args, kwargs),
            cluster=cluster_path,
            party=name,
            queries=queries,
            on_ready=lambda s: reports.put((name, "ready", s)),
            on_phase=lambda phase, s: reports.put((name, "phase", phase)),
            on_query=lambda r: reports.put((name, "query", r)),
        )
        reports.put((name, "exit", failed))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        reports.put((name, "error", f"{type(exc).__name__}: {exc}"))


class _Servers:
    def __init__(self, cluster_path, names, program_name, queries):
        ctx = mp.get_context("spawn")
        self.reports = ctx.Queue()
        self.procs = [
            ctx.Process(
                target=_server_main,
                args=(str(cluster_path), name, program_name, queries, self.reports),
                daemon=True,
            )
            for name in names
        ]
        self.names = names
        self.records = {name: [] for name in names}
        self.phases = {name: [] for name in names}

    def __enter__(self):
        for proc in self.procs:
            proc.start()
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__()  # no server outlives a failed start (pytest would wait for it)
            raise
        return self

    def _wait_ready(self):
        ready = set()
        deadline = time.monotonic() + START_LIMIT
        while ready != set(self.names):
            name, what, value = self.reports.get(timeout=max(1.0, deadline - time.monotonic()))
            if what == "phase":
                self.phases[name].append(value)
                continue
            assert what == "ready", (name, what, value)
            ready.add(name)

    def wait(self, count):
        """Collect ``count`` query records from every server, then their exits."""
        deadline = time.monotonic() + START_LIMIT
        exits = {}
        while len(exits) < len(self.names):
            name, what, value = self.reports.get(timeout=max(1.0, deadline - time.monotonic()))
            if what == "query":
                self.records[name].append(value)
            else:
                exits[name] = (what, value)
        assert all(len(r) == count for r in self.records.values()), self.records
        return exits

    def __exit__(self, *exc):
        for proc in self.procs:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.kill()
                proc.join()


def _emulated(program, protocol, x):
    f = secjax.secure_jit(program.fn, protocol=protocol, seed=0)
    return f(program.args[0], x)


def _queries(program):
    x = np.asarray(program.args[1])
    return [x, -0.5 * x, x + 1.0]


@pytest.mark.parametrize(
    "protocol, names", [("aby3", ["0", "1", "2"]), ("semi2k", ["0", "1", "dealer"])]
)
def test_served_parties_answer_queries_and_survive_a_vanished_client(tmp_path, protocol, names):
    import secjax.demo
    from secjax import network

    path = _cluster(
        tmp_path,
        len([n for n in names if n != "dealer"]),
        protocol,
        timeout=5.0,
        clients=("alice",),
    )
    program = secjax.demo.mlp()
    inputs = _queries(program)
    with _Servers(path, names, "mlp", queries=len(inputs) + 1) as servers:
        with network.Client(program, cluster=path, name="alice", wait=120) as client:
            outputs = [client(program.args[0], x) for x in inputs[:2]]
            # a client that dies half-way: its query reaches party 0 only
            client.session.query(client.values((program.args[0], inputs[2])), wait=0, parties=[0])
            outputs.append(client(program.args[0], inputs[2]))
        exits = servers.wait(len(inputs) + 1)
    for name in names:
        assert exits[name] == ("exit", 1), exits  # one failed query, then serving on
        records = servers.records[name]
        assert [r.ok for r in records] == [True, True, False, True], records
        failed = records[2]
        assert "PeerTimeout" in failed.error or "PeerAborted" in failed.error, failed.error
        for record in (records[0], records[1], records[3]):
            assert record.payload == record.cost > 0  # bytes on the wire = cost report
    for x, out in zip(inputs, outputs):
        params = jax.tree.map(
            lambda m: m.value, program.args[0], is_leaf=lambda m: isinstance(m, Private)
        )
        plain = jax.jit(program.fn)(params, x)
        np.testing.assert_allclose(out, _emulated(program, protocol, x), atol=1e-3)
        np.testing.assert_allclose(out, plain, atol=1e-2)


def test_restarted_servers_load_their_kernels_from_the_disk_cache(tmp_path, monkeypatch):
    """Served parties keep their compiled segments in the disk cache: started again on the
    same cache, every node (the dealer included) loads every kernel its rehearsal meets and
    compiles none, and the answers and bytes are as before."""
    import secjax.demo
    from secjax import network

    monkeypatch.setenv("SECJAX_CACHE_DIR", str(tmp_path / "cache"))
    names = ["0", "1", "dealer"]
    path = _cluster(tmp_path, 2, "semi2k", timeout=60.0, clients=("alice",))
    program = secjax.demo.mlp()
    x = np.asarray(program.args[1])
    answers, kernels, records = [], [], []
    for _ in range(2):
        with _Servers(path, names, "mlp", queries=1) as servers:
            with network.Client(program, cluster=path, name="alice", wait=120) as client:
                answers.append(client(program.args[0], x))
            servers.wait(1)
        kernels.append(
            {
                name: [
                    tuple(map(int, re.findall(r"(\d+) (?:compiled|loaded)", phase)))
                    for phase in phases
                    if phase.startswith("kernels ready")
                ]
                for name, phases in servers.phases.items()
            }
        )
        records.append(servers.records)
    for name in names:
        ((compiled, loaded),) = kernels[0][name]
        assert compiled > 0
        ((compiled_again, loaded_again),) = kernels[1][name]
        assert compiled_again == 0 and loaded_again == compiled + loaded
        first, second = records[0][name][0], records[1][name][0]
        assert first.ok and second.ok
        assert first.payload == second.payload == second.cost > 0
    np.testing.assert_allclose(answers[1], answers[0], atol=1e-3)
    np.testing.assert_allclose(answers[1], _emulated(program, "semi2k", x), atol=1e-3)


_REUSE_PROBE = """
import resource
import numpy as np
from secjax.runtime.memory import retain_freed_memory

if not retain_freed_memory():
    print("unsupported")
    raise SystemExit
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones(2**21) for _ in range(40)]  # 40 blocks of 16 MiB, touched
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


def test_a_serving_process_reuses_the_pages_it_freed():
    """After retain_freed_memory() (what `secjax serve` calls), a second round of the same
    allocations finds its pages already mapped: under a tenth of the first round's page
    faults (a default glibc process faults them all in again, 2026-12-05)."""
    out = subprocess.run(
        [sys.executable, "-c", _REUSE_PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    if out == ["unsupported"]:
        pytest.skip("the C library is not glibc")
    first, *again = [int(n) for n in out]
    assert max(again) < first / 10
