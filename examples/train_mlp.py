"""Secure training: a Flax MLP on scikit-learn's digits, or logistic regression on its
breast-cancer set, trained under MPC beside the same training in plaintext float32.

Two data owners (parties 0 and 1) each hold half of the training rows and their labels;
neither sees the other's, and the computing parties see neither. The initial model and
the hyperparameters are public. The whole training is ONE secure call: a ``lax.scan`` over
epochs, each a scan over mini-batch steps of ``jax.value_and_grad`` and an optax SGD
(momentum) step, so the model stays secret from the first step to the last and is revealed
once, at the end, with each epoch's mean training loss and test accuracy (the test set is
public). Both data sets ship inside the scikit-learn wheel: nothing is downloaded.

    python examples/train_mlp.py                     # digits MLP, aby3, 5 epochs
    python examples/train_mlp.py --model logreg      # breast cancer, logistic regression
    python examples/train_mlp.py --epochs 10 --batch 32 --protocol semi2k

Prints per-epoch loss and test accuracy secure vs plaintext, the time of the secure run
against jax.jit, and bytes and rounds of one training step (from ``cost()``: exact, without
running).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from rich.console import Console
from rich.table import Table

import secjax
from secjax.runtime.cost import format_bytes


class MLP(nn.Module):
    hidden: int
    classes: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.classes)(nn.relu(nn.Dense(self.hidden)(x)))


class Linear(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(x)[..., 0]


@dataclasses.dataclass(frozen=True)
class Task:
    """A model, its loss and accuracy, and the data split into the owners' halves."""

    model: nn.Module
    loss: object  # (logits, labels) -> per-example loss
    correct: object  # (logits, labels) -> per-example 0/1 correctness
    train: tuple  # (x, y) of the training rows, batch-major: (steps, batch, ...)
    test: tuple  # (x, y) of the test rows


def _split(x, y, test_fraction: float, seed: int):
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


def _batches(x, y, batch: int):
    steps = len(x) // batch  # the last partial batch is dropped, as in many loaders
    cut = steps * batch
    return (
        x[:cut].reshape(steps, batch, *x.shape[1:]),
        y[:cut].reshape(steps, batch, *y.shape[1:]),
    )


def digits_task(batch: int, hidden: int, seed: int) -> Task:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)  # pixel counts 0..16 -> [0, 1]
    (xtr, ytr), test = _split(x, data.target.astype(np.int32), 0.2, seed)
    return Task(
        MLP(hidden, 10),
        lambda logits, y: optax.softmax_cross_entropy_with_integer_labels(logits, y),
        lambda logits, y: (jnp.argmax(logits, -1) == y).astype(jnp.float32),
        _batches(xtr, ytr, batch),
        test,
    )


def breast_cancer_task(batch: int, seed: int) -> Task:
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    (xtr, ytr), (xte, yte) = _split(data.data, data.target.astype(np.float32), 0.2, seed)
    # standardised with the training rows' mean and deviation, statistics the owners publish
    mean, std = xtr.mean(0), xtr.std(0)
    xtr, xte = (((v - mean) / std).astype(np.float32) for v in (xtr, xte))
    return Task(
        Linear(),
        optax.sigmoid_binary_cross_entropy,
        lambda logits, y: ((logits > 0) == (y > 0.5)).astype(jnp.float32),
        _batches(xtr, ytr, batch),
        (xte, yte),
    )


def make_training(task: Task, optimizer, epochs: int):
    """``train(params, xa, ya, xb, yb, x_test, y_test)``: the whole training on the owners'
    halves of every batch; returns the final parameters and, per epoch, the mean loss and the
    number of test rows classified correctly (a count: exact in fixed point)."""

    def loss_fn(params, x, y):
        return task.loss(task.model.apply(params, x), y).mean()

    def step(carry, batch):
        params, state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, *batch)
        updates, state = optimizer.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    def train(params, xa, ya, xb, yb, x_test, y_test):
        xs, ys = jnp.concatenate([xa, xb], axis=1), jnp.concatenate([ya, yb], axis=1)

        def epoch(carry, _):
            carry, losses = jax.lax.scan(step, carry, (xs, ys))
            correct = task.correct(task.model.apply(carry[0], x_test), y_test).sum()
            return carry, (losses.mean(), correct)

        (params, _), (losses, corrects) = jax.lax.scan(
            epoch, (params, optimizer.init(params)), None, length=epochs
        )
        return params, losses, corrects

    return train, step, loss_fn


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp", choices=["mlp", "logreg"])
    parser.add_argument("--protocol", default="aby3", choices=["aby3", "semi2k", "plain"])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=64, help="rows per step (even)")
    parser.add_argument("--hidden", type=int, default=32, help="the MLP's hidden width")
    parser.add_argument("--lr", type=float, default=None, help="SGD learning rate")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="use only this many batches per epoch (a quick check)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    console = Console(width=110)
    run_training(args, console)


def run_training(args, console):
    """Train both ways and print the comparison; returns the per-epoch results."""
    if args.batch % 2:
        raise SystemExit("--batch must be even: each owner holds half of every batch")
    task = (
        digits_task(args.batch, args.hidden, args.seed)
        if args.model == "mlp"
        else breast_cancer_task(args.batch, args.seed)
    )
    lr = args.lr if args.lr is not None else (0.1 if args.model == "mlp" else 0.05)
    optimizer = optax.sgd(lr, momentum=0.9)
    train, step, _ = make_training(task, optimizer, args.epochs)
    xs, ys = task.train
    if args.steps is not None:
        xs, ys = xs[: args.steps], ys[: args.steps]
    half = args.batch // 2
    owners = [xs[:, :half], ys[:, :half], xs[:, half:], ys[:, half:]]
    x_test, y_test = task.test
    params = task.model.init(jax.random.key(args.seed), x_test[:1])

    n_test = len(y_test)
    start = time.perf_counter()
    plain = jax.block_until_ready(jax.jit(train)(params, *owners, x_test, y_test))
    plain_seconds = time.perf_counter() - start

    secure_train = secjax.secure_jit(train, protocol=args.protocol, seed=args.seed)
    a, b = (0, 1) if args.protocol != "plain" else (0, 0)
    inputs = [
        secjax.private(owners[0], a),
        secjax.private(owners[1], a),
        secjax.private(owners[2], b),
        secjax.private(owners[3], b),
    ]
    n_steps = args.epochs * len(xs)
    console.print(
        f"training {args.model} under {args.protocol}: {args.epochs} epochs of "
        f"{len(xs)} steps, batch {args.batch} (parties 0 and 1 hold half each)"
    )
    start = time.perf_counter()
    secure = secure_train(
        secjax.public(params), *inputs, secjax.public(x_test), secjax.public(y_test)
    )
    secure_seconds = time.perf_counter() - start

    table = Table(title=f"{args.model}: secure ({args.protocol}) vs plaintext float32")
    for column in ("epoch", "loss secure", "loss plain", "test acc secure", "test acc plain"):
        table.add_column(column, justify="right")
    for e in range(args.epochs):
        table.add_row(
            str(e + 1),
            f"{secure[1][e]:.4f}",
            f"{plain[1][e]:.4f}",
            f"{100 * secure[2][e] / n_test:.2f}%",
            f"{100 * plain[2][e] / n_test:.2f}%",
        )
    console.print(table)

    step_cost = secjax.secure_jit(step, protocol=args.protocol).cost(
        (params, optimizer.init(params)),
        (
            jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype),
            jax.ShapeDtypeStruct(ys.shape[1:], ys.dtype),
        ),
    )
    sent = max(step_cost.bytes_per_party)
    stats = secure_train.last_stats
    console.print(
        f"secure: {secure_seconds:.1f} s for {n_steps} steps "
        f"({secure_seconds / n_steps:.2f} s a step including the first call's "
        f"kernels: {stats.compile:.1f} s); plaintext jax.jit: {plain_seconds:.2f} s"
    )
    console.print(
        f"one step sends {format_bytes(sent)} from the busiest party in "
        f"{step_cost.rounds} rounds (model and optimizer state secret)"
    )
    console.print(
        f"final test accuracy: secure {100 * secure[2][-1] / n_test:.2f}%, "
        f"plaintext {100 * plain[2][-1] / n_test:.2f}% ({n_test} test rows)"
    )
    return secure, plain, step_cost


if __name__ == "__main__":
    main()
