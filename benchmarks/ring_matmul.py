"""Time exact ring matmul: XLA's uint64 dot vs secjax.ring.dot_general vs a float32 matmul.

Run: PYTHONPATH=. python benchmarks/ring_matmul.py   (prints median ms of several runs)
"""

import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from secjax import ring

SHAPES = [
    (128, 128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (1024, 1024, 1024),
    (128, 384, 1536),
]  # the last: a BERT-base FFN on 128 tokens
MATMUL = (((1,), (0,)), ((), ()))


def median_ms(fn, *args, repeats=7):
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main():
    integer = jax.jit(
        lambda x, y: jax.lax.dot_general(x, y, MATMUL, preferred_element_type=x.dtype)
    )
    limbs = jax.jit(lambda x, y: ring.dot_general(x, y, MATMUL))
    floats = jax.jit(jnp.matmul)
    rng = np.random.default_rng(0)
    print(
        f"{'m x k x n':>18} {'uint64 ms':>10} {'ring ms':>9} {'f32 ms':>8} "
        f"{'int/ring':>9} {'ring/f32':>9}"
    )
    with jax.enable_x64(True):
        for m, k, n in SHAPES:
            x = jnp.asarray(rng.integers(0, 2**64, (m, k), dtype=np.uint64))
            y = jnp.asarray(rng.integers(0, 2**64, (k, n), dtype=np.uint64))
            xf, yf = x.astype(jnp.float32), y.astype(jnp.float32)
            t_int = median_ms(integer, x, y, repeats=3)
            t_ring, t_f32 = median_ms(limbs, x, y), median_ms(floats, xf, yf)
            print(
                f"{f'{m}x{k}x{n}':>18} {t_int:10.2f} {t_ring:9.2f} {t_f32:8.2f} "
                f"{t_int / t_ring:8.1f}x {t_ring / t_f32:8.1f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
