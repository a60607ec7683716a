"""Serving benchmark: all-MiniLM-L6-v2 at 128 tokens served by long-lived parties on
localhost, queried by an outside client.

    python benchmarks/serving.py [--protocol aby3|semi2k] [--queries 5] [--timeout 300]

Starts every party (and the semi2k dealer) as ``secjax serve`` processes: each loads the
model, shares the owner's weights once, compiles (or loads from the disk cache, set
``SECJAX_CACHE_DIR`` to choose it) its kernels by rehearsing a query alone, waits for the
others and says when it is ready; then a client (this process, ``secjax.network.Client``)
sends ``--queries`` queries one after the other: 128 token ids (secret, the client's), a
public all-ones attention mask (the text fills the 128 positions, so it reveals nothing).
Prints the start to ready per party, each query's latency, the mean and the worst, the bytes and
messages each party sent per query beside its cost report, the cost report's LAN estimate
(5 Gbps, 1 ms per round), the cosine to plaintext ``jax.jit``, and the load average.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "examples")]

import jax  # noqa: E402
import numpy as np  # noqa: E402

TEXT = (
    "Secure multi-party computation lets a model owner and a user run a transformer "
    "together so that neither learns the other's secret: the weights stay with the "
    "owner and the prompt with the user. "
)
TOKENS = 128


def program():
    """The served program: the owner's weights (private to party 0), the client's token ids
    (unmarked: sent secret-shared by the client with each query), a public mask."""
    from embed_minilm import load, make_embed

    import secjax
    from secjax.network import Program

    model, tokenizer = load()
    batch = tokenizer(
        [TEXT * 20], truncation=True, max_length=TOKENS, padding="max_length", return_tensors="np"
    )
    ids = batch["input_ids"].astype(np.int32)
    mask = batch["attention_mask"].astype(np.int32)
    return Program(make_embed(model), (secjax.private(model.params, 0), ids, secjax.public(mask)))


def _free_ports(k):
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def main() -> int:
    from secjax import network
    from secjax.runtime import cluster as rc

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--protocol", default="aby3", choices=["aby3", "semi2k"])
    parser.add_argument("--queries", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    n = {"aby3": 3, "semi2k": 2}[args.protocol]
    work = tempfile.mkdtemp(prefix="secjax-serving-")
    path = rc.keygen(work, n, protocol=args.protocol, clients=("bench",), timeout=args.timeout)
    cluster = rc.load_cluster(path)
    nodes = {
        name: rc.Node(name, f"tcp://127.0.0.1:{port}", node.public_key)
        for (name, node), port in zip(cluster.nodes.items(), _free_ports(len(cluster.nodes)))
    }
    rc.write_cluster(
        path, nodes, clients=cluster.clients, protocol=args.protocol, timeout=args.timeout
    )
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            [
                ROOT,
                os.path.join(ROOT, "benchmarks"),
                os.path.join(ROOT, "examples"),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
    )
    started = time.perf_counter()
    logs = {name: open(os.path.join(work, f"{name}.log"), "w+") for name in nodes}
    procs = {
        name: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "secjax.cli",
                "serve",
                "--config",
                str(path),
                "--id",
                name,
                "--program",
                "serving:program",
                "--queries",
                str(args.queries),
            ],
            env=env,
            stdout=logs[name],
            stderr=subprocess.STDOUT,
        )
        for name in nodes
    }
    try:
        ready = {}
        while len(ready) < len(nodes):
            time.sleep(1)
            for name in nodes:
                text = pathlib.Path(logs[name].name).read_text()
                found = re.search(r"ready after ([\d.]+) s", text)
                if found:
                    ready[name] = float(found.group(1))
                if procs[name].poll() is not None and name not in ready:
                    print(text[-3000:])
                    raise SystemExit(f"server {name} stopped before it was ready")
        all_ready = time.perf_counter() - started
        print(f"servers ready: {ready} (all ready {all_ready:.1f} s after launch)")
        prog = program()
        from embed_minilm import load  # noqa: F401 - the model, for the plaintext reference

        params = jax.tree.map(
            lambda m: m.value, prog.args[0], is_leaf=lambda m: hasattr(m, "owner")
        )
        plain = np.asarray(jax.jit(prog.fn)(params, prog.args[1], prog.args[2].value))
        latencies, outputs = [], []
        with network.Client(prog, cluster=path, name="bench", wait=args.timeout * 4) as client:
            for _ in range(args.queries):
                start = time.perf_counter()
                outputs.append(client(*prog.args))
                latencies.append(time.perf_counter() - start)
        for proc in procs.values():
            proc.wait(timeout=args.timeout)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        for log in logs.values():
            log.close()
    cosines = [
        float(np.dot(o.ravel(), plain.ravel()) / (np.linalg.norm(o) * np.linalg.norm(plain)))
        for o in outputs
    ]
    print(
        f"per-query latency (client, s): {[round(x, 2) for x in latencies]}; mean "
        f"{np.mean(latencies):.2f}, worst {max(latencies):.2f}; cosine to jax.jit "
        f"min {min(cosines):.6f}"
    )
    sent, rounds = 0, 0
    for name in nodes:
        with open(logs[name].name) as log:
            for line in log.read().splitlines():
                if "answered" in line or "FAILED" in line or "ready" in line or " in " in line:
                    print(line)
                found = re.search(r"cost report (\d+) B, (\d+) rounds", line)
                if found:
                    sent, rounds = max(sent, int(found.group(1))), int(found.group(2))
    print(
        f"per query, from the cost report: busiest party {sent} B, {rounds} rounds; LAN "
        f"estimate (5 Gbps, 1 ms per round) {sent * 8 / 5e9 + rounds * 1e-3:.2f} s"
    )
    print(f"load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
