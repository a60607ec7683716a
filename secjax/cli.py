"""The ``secjax`` command: what this installation supports, the compiled-kernel cache
(``cache``), and running parties across machines (``keygen``, ``party``, ``launch``)."""
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
    console.print(f"secjax {secjax.__version__} on jax {jax.__version__} "
                  f"({jax.default_backend()})")
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
    from secjax.runtime.network import keygen

    path = keygen(args.out, args.parties, protocol=args.protocol, host=args.host,
                  base_port=args.port, input_party=args.input_party,
                  output_party=args.output_party, timeout=args.timeout)
    Console().print(f"wrote CURVE key pairs and {path}")
    return 0


def _wire_line(run) -> str:
    wire = run.wire
    own = (run.cost.total.dealer if run.party == "dealer"
           else run.cost.total.sent[int(run.party)])
    return (f"party {run.party}: sent {wire.total('payload')} B payload in "
            f"{wire.total('messages')} messages (+{wire.total('header')} B headers, "
            f"{wire.handshake} B hellos); cost report says {own} B; {run.seconds:.1f} s")


def _party(args) -> int:
    import numpy as np

    from secjax import network

    program = network.load_program(args.program)
    cluster = network.load_cluster(args.config)
    if args.inputs:
        call_args, call_kwargs = network.load_inputs(args.inputs, args.id, program.args,
                                                     program.kwargs,
                                                     input_party=cluster.input_party)
    else:  # a demo program: take this party's own leaves from the program itself
        call_args, call_kwargs = network.inputs_for(args.id, program.args, program.kwargs,
                                                    input_party=cluster.input_party)
    try:
        run = network.run_party(program.fn, call_args, call_kwargs, cluster=cluster,
                                party=args.id, key=args.key, timeout=args.timeout)
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
    network.keygen(work, n, protocol=args.protocol, base_port=port, input_party=1 % n,
                   output_party=1 % n, timeout=args.timeout)
    cluster = network.load_cluster(work / "cluster.toml")
    names = [str(i) for i in range(n)] + (["dealer"] if cluster.has_dealer else [])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH")]))
    procs = {}
    for name in names:
        cmd = [sys.executable, "-m", "secjax.cli", "party", "--config",
               str(work / "cluster.toml"), "--id", name, "--program", args.program,
               "--out", str(work / f"out-{name}.npz")]
        procs[name] = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
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
    commands.add_parser("primitives", help="the primitives secjax can compute securely"
                        ).set_defaults(run=_primitives)
    cache = commands.add_parser("cache", help="the on-disk cache of compiled kernels: show "
                                "its size (default) or clear it")
    cache.add_argument("action", nargs="?", default="info", choices=["info", "clear"])
    cache.set_defaults(run=_cache)
    keys = commands.add_parser("keygen", help="CURVE key pairs and a cluster.toml for N "
                               "parties on one host (edit addresses for real machines)")
    keys.add_argument("--out", required=True, help="directory for the keys and cluster.toml")
    keys.add_argument("--parties", type=int, default=3)
    keys.add_argument("--protocol", default="aby3", choices=["aby3", "semi2k"])
    keys.add_argument("--host", default="127.0.0.1")
    keys.add_argument("--port", type=int, default=5700, help="first port (one per party)")
    keys.add_argument("--input-party", type=int, default=1,
                      help="party providing unmarked (secret) arguments")
    keys.add_argument("--output-party", type=int, default=1, help="party learning the output")
    keys.add_argument("--timeout", type=float, default=60.0,
                      help="seconds to wait for any one message")
    keys.set_defaults(run=_keygen)
    party = commands.add_parser("party", help="run one party (or the dealer) of a program")
    party.add_argument("--config", required=True, help="cluster.toml")
    party.add_argument("--id", required=True, help="party number, or 'dealer'")
    party.add_argument("--program", required=True,
                       help="module:attribute, a secjax.network.Program or a function "
                            "returning one (e.g. secjax.demo:mlp)")
    party.add_argument("--inputs", help=".npz of this party's inputs, keyed by argument name "
                       "(secjax.network.save_inputs); default: the program's demo values")
    party.add_argument("--key", help="this party's .key_secret (default: next to the config)")
    party.add_argument("--out", help="write the output (output party only) to this .npz")
    party.add_argument("--timeout", type=float, help="override the config's timeout")
    party.set_defaults(run=_party)
    launch = commands.add_parser("launch", help="try a program: start all parties on "
                                 "localhost, print the result and the bytes on the wire")
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
