"""The ``secjax`` command: what this installation supports, the compiled-kernel cache
(``cache``), and running parties across machines (``keygen``, ``cluster``, ``party``,
``serve``, ``query``, ``launch``)."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table


def _primitives(_args) -> int:
    from secjax.interpreter import RULES
    from secjax.primitives.patterns import OVERRIDES

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
    console.print(f"secjax {secjax.__version__} on jax {jax.__version__} ({jax.default_backend()})")
    for name, cls in PROTOCOLS.items():
        doc = (cls.__doc__ or "").strip().splitlines()[0]
        console.print(f"  protocol [bold]{name}[/bold]: {doc}")
    return 0


def _cache(args) -> int:
    """Show the on-disk kernel cache (its size per jax version and backend) or clear it."""
    from secjax.runtime import disk_cache

    console = Console()
    root = disk_cache.cache_root()
    if args.action == "clear":
        freed = disk_cache.clear(root)
        console.print(f"cleared {root}: {freed / 2**20:.1f} MiB freed")
        return 0
    state = "on" if disk_cache.cache_enabled() else "off (SECJAX_CACHE=0)"
    console.print(f"kernel cache: {root} ({state})")
    rows = disk_cache.usage(root)
    if not rows:
        console.print("  empty")
        return 0
    table = Table()
    table.add_column("jax, backend, device, secjax sources")
    table.add_column("kernels", justify="right")
    table.add_column("size", justify="right")
    for tag, entries, size in rows:
        table.add_row(tag, str(entries), f"{size / 2**20:.1f} MiB")
    console.print(table)
    return 0


# -- running across machines (secjax.network) ---------------------------------------------
def _keygen(args) -> int:
    from secjax.runtime import cluster

    if args.party is not None:
        public_file, public = cluster.create_key_pair(args.out, args.party)
        print(
            f"wrote {args.out}/{args.party}.key_secret (keep it here, mode 0600) and "
            f"{public_file}; public key of {args.party}:"
        )
        print(public.decode("ascii"))
        return 0
    path = cluster.keygen(
        args.out,
        args.parties,
        protocol=args.protocol,
        host=args.host,
        base_port=args.port,
        input_party=args.input_party,
        output_party=args.output_party,
        timeout=args.timeout,
        clients=args.client or (),
    )
    Console().print(
        f"wrote every node's CURVE key pair and {path} (one directory holds "
        "every secret key: for trying things on one machine; across machines "
        "use keygen --party and cluster)"
    )
    return 0


def _assemble(args) -> int:
    from secjax.runtime import cluster

    addresses = {name: address for name, address, _ in args.node}
    keys = {name: cluster.load_public_key(path) for name, _, path in args.node}
    clients = {name: cluster.load_public_key(path) for name, path in args.client or ()}
    path = cluster.assemble_cluster(
        args.out,
        addresses,
        keys,
        clients=clients,
        protocol=args.protocol,
        input_party=args.input_party,
        output_party=args.output_party,
        timeout=args.timeout,
    )
    print(f"wrote {path}")
    return 0


def _serve(args) -> int:
    from secjax import network
    from secjax.runtime.memory import retain_freed_memory

    retain_freed_memory()  # this process serves queries until stopped

    program = network.load_program(args.program)
    cluster = network.load_cluster(args.config)
    call_args, call_kwargs = (
        network.load_inputs(args.inputs, args.id, program.args, program.kwargs, input_party=-1)
        if args.inputs
        else network.inputs_for(args.id, program.args, program.kwargs, input_party=-1)
    )
    served = network.Program(program.fn, call_args, call_kwargs)
    node = f"secjax serve {args.id}"

    def ready(seconds):
        print(f"{node}: ready after {seconds:.1f} s", file=sys.stderr, flush=True)

    def report(record):
        print(record.line(node), file=sys.stderr, flush=True)

    def phase(name, seconds):
        print(f"{node}: {name} in {seconds:.1f} s", file=sys.stderr, flush=True)

    try:
        network.serve(
            served,
            cluster=cluster,
            party=args.id,
            key=args.key,
            timeout=args.timeout,
            queries=args.queries,
            on_ready=ready,
            on_phase=phase,
            on_query=report,
        )
    except network.NetworkError as exc:
        print(f"{node}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


def _query(args) -> int:
    import jax
    import numpy as np

    from secjax import network

    program = network.load_program(args.program)
    call_args, call_kwargs = (
        network.load_inputs(
            args.inputs, args.name, program.args, program.kwargs, input_party=args.name
        )
        if args.inputs
        else (program.args, program.kwargs)
    )
    try:
        with network.Client(
            program, cluster=args.config, name=args.name, key=args.key, timeout=args.timeout
        ) as client:
            output = client(*call_args, **call_kwargs)
    except network.NetworkError as exc:
        print(f"secjax query: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    leaves = jax.tree.leaves(output)
    if args.out:
        np.savez(args.out, *[np.asarray(x) for x in leaves])
    else:
        for leaf in leaves:
            print(np.asarray(leaf))
    return 0


def _wire_line(run) -> str:
    wire = run.wire
    own = run.cost.total.dealer if run.party == "dealer" else run.cost.total.sent[int(run.party)]
    return (
        f"party {run.party}: sent {wire.total('payload')} B payload in "
        f"{wire.total('messages')} messages (+{wire.total('header')} B headers, "
        f"{wire.control} B control); cost report says {own} B; {run.seconds:.1f} s"
    )


def _party(args) -> int:
    import numpy as np

    from secjax import network

    program = network.load_program(args.program)
    cluster = network.load_cluster(args.config)
    if args.inputs:
        call_args, call_kwargs = network.load_inputs(
            args.inputs, args.id, program.args, program.kwargs, input_party=cluster.input_party
        )
    else:  # a demo program: take this party's own leaves from the program itself
        call_args, call_kwargs = network.inputs_for(
            args.id, program.args, program.kwargs, input_party=cluster.input_party
        )
    try:
        run = network.run_party(
            program.fn,
            call_args,
            call_kwargs,
            cluster=cluster,
            party=args.id,
            key=args.key,
            timeout=args.timeout,
        )
    except network.NetworkError as exc:
        print(f"secjax party {args.id}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    if run.output is not None:
        import jax

        leaves = jax.tree.leaves(run.output)
        if args.out:
            np.savez(args.out, *[np.asarray(x) for x in leaves])
        else:
            for leaf in leaves:
                print(np.asarray(leaf))
    print(_wire_line(run), file=sys.stderr)
    return 0


def _launch(args) -> int:
    """Start every party on this machine as a subprocess; print the result and the bytes."""
    import os
    import pathlib
    import socket
    import subprocess
    import tempfile

    import numpy as np

    from secjax import network

    n = args.parties or {"aby3": 3, "semi2k": 2}[args.protocol]
    work = pathlib.Path(args.dir or tempfile.mkdtemp(prefix="secjax-launch-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = args.port or probe.getsockname()[1]
    network.keygen(
        work,
        n,
        protocol=args.protocol,
        base_port=port,
        input_party=1 % n,
        output_party=1 % n,
        timeout=args.timeout,
    )
    cluster = network.load_cluster(work / "cluster.toml")
    names = [str(i) for i in range(n)] + (["dealer"] if cluster.has_dealer else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    procs = {}
    for name in names:
        cmd = [
            sys.executable,
            "-m",
            "secjax.cli",
            "party",
            "--config",
            str(work / "cluster.toml"),
            "--id",
            name,
            "--program",
            args.program,
            "--out",
            str(work / f"out-{name}.npz"),
        ]
        procs[name] = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    failed = False
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=args.timeout * 10 + 600)
            lines = [ln for ln in err.splitlines() if ln.startswith(("party ", "secjax party"))]
            print("\n".join(lines) if lines else err[-2000:])
            failed = failed or proc.returncode != 0
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    result = work / f"out-{cluster.output_party}.npz"
    if not failed and result.exists():
        with np.load(result) as data:
            for key in data.files:
                print(f"output (revealed to party {cluster.output_party}):\n{data[key]}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="secjax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="version, backend and protocols").set_defaults(run=_info)
    commands.add_parser(
        "primitives", help="the primitives secjax can compute securely"
    ).set_defaults(run=_primitives)
    cache = commands.add_parser(
        "cache", help="the on-disk cache of compiled kernels: show its size (default) or clear it"
    )
    cache.add_argument("action", nargs="?", default="info", choices=["info", "clear"])
    cache.set_defaults(run=_cache)
    keys = commands.add_parser(
        "keygen",
        help="a CURVE key pair for one node (--party N, "
        "recommended: run on that node's machine), or every node's "
        "key pair and a cluster.toml on one host (for trying things)",
    )
    keys.add_argument("--out", required=True, help="directory for the keys (and cluster.toml)")
    keys.add_argument(
        "--party",
        help="make one key pair only, for this node: a party "
        "number, 'dealer' or a client's name; prints its public key",
    )
    keys.add_argument("--parties", type=int, default=3)
    keys.add_argument("--client", action="append", help="also a key pair for this client")
    keys.set_defaults(run=_keygen)
    cluster = commands.add_parser(
        "cluster", help="write cluster.toml from every node's address and public key file"
    )
    cluster.add_argument("--out", required=True, help="the cluster.toml to write")
    cluster.add_argument(
        "--node",
        nargs=3,
        action="append",
        required=True,
        metavar=("NAME", "ADDRESS", "PUBLIC_KEY_FILE"),
        help="a party (0, 1, ...) or 'dealer', e.g. 0 tcp://10.0.0.5:5700 0.key",
    )
    cluster.add_argument(
        "--client",
        nargs=2,
        action="append",
        metavar=("NAME", "PUBLIC_KEY_FILE"),
        help="a client allowed to query",
    )
    cluster.set_defaults(run=_assemble)
    for sub in (keys, cluster):
        sub.add_argument("--protocol", default="aby3", choices=["aby3", "semi2k"])
        sub.add_argument(
            "--input-party",
            type=int,
            default=1,
            help="party providing unmarked (secret) arguments (secjax party)",
        )
        sub.add_argument(
            "--output-party", type=int, default=1, help="party learning the output (secjax party)"
        )
        sub.add_argument(
            "--timeout", type=float, default=60.0, help="seconds to wait for any one message"
        )
    keys.add_argument("--host", default="127.0.0.1")
    keys.add_argument("--port", type=int, default=5700, help="first port (one per party)")
    serve = commands.add_parser(
        "serve",
        help="serve a program as one party (or the "
        "dealer): share the private inputs once, answer queries",
    )
    serve.add_argument("--config", required=True, help="cluster.toml")
    serve.add_argument("--id", required=True, help="party number, or 'dealer'")
    serve.add_argument("--program", required=True, help="module:attribute (see party)")
    serve.add_argument("--inputs", help=".npz of this party's private inputs")
    serve.add_argument("--key", help="this party's .key_secret (default: next to the config)")
    serve.add_argument("--queries", type=int, help="stop after this many queries")
    serve.add_argument("--timeout", type=float, help="override the config's timeout")
    serve.set_defaults(run=_serve)
    query = commands.add_parser("query", help="query served parties as an outside client")
    query.add_argument("--config", required=True, help="cluster.toml")
    query.add_argument("--name", required=True, help="this client's name ([clients.NAME])")
    query.add_argument("--program", required=True, help="module:attribute (see party)")
    query.add_argument(
        "--inputs",
        help=".npz of the client's inputs, keyed by argument name "
        "(default: the program's demo values)",
    )
    query.add_argument("--key", help="the client's .key_secret (default: next to the config)")
    query.add_argument("--out", help="write the output to this .npz")
    query.add_argument("--timeout", type=float, help="override the config's timeout")
    query.set_defaults(run=_query)
    party = commands.add_parser("party", help="run one party (or the dealer) of a program")
    party.add_argument("--config", required=True, help="cluster.toml")
    party.add_argument("--id", required=True, help="party number, or 'dealer'")
    party.add_argument(
        "--program",
        required=True,
        help="module:attribute, a secjax.network.Program or a function "
        "returning one (e.g. secjax.demo:mlp)",
    )
    party.add_argument(
        "--inputs",
        help=".npz of this party's inputs, keyed by argument name "
        "(secjax.network.save_inputs); default: the program's demo values",
    )
    party.add_argument("--key", help="this party's .key_secret (default: next to the config)")
    party.add_argument("--out", help="write the output (output party only) to this .npz")
    party.add_argument("--timeout", type=float, help="override the config's timeout")
    party.set_defaults(run=_party)
    launch = commands.add_parser(
        "launch",
        help="try a program: start all parties on "
        "localhost, print the result and the bytes on the wire",
    )
    launch.add_argument("--program", default="secjax.demo:mlp")
    launch.add_argument("--protocol", default="aby3", choices=["aby3", "semi2k"])
    launch.add_argument("--parties", type=int)
    launch.add_argument("--port", type=int, help="first port (default: a free one)")
    launch.add_argument("--dir", help="working directory (default: a fresh temporary one)")
    launch.add_argument("--timeout", type=float, default=60.0)
    launch.set_defaults(run=_launch)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
