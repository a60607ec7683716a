"""Windows and tiles: tile, sum/average, max and min pooling and their gradients (Flax's
pooling layers and a small CNN's gradient), against ``jax.jit``."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import assert_close, run_both

X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 5, 6, 3)).astype(np.float32))


def test_tile_and_pooling(protocol):
    def f(x):
        return (
            jnp.tile(x[:1], (1, 2, 1, 1)),
            nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME"),
            nn.avg_pool(x, (3, 3), strides=(1, 1), padding="SAME"),
            -nn.max_pool(-x, (2, 3), strides=(1, 2)),
        )

    assert_close(*run_both(f, X, **protocol), atol=2e-3)


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_max_pool_gradient(padding):
    """select_and_scatter_add: each window's cotangent goes to its first maximum."""
    x = X.at[0, 0, 0, 0].set(X[0, 0, 1, 0])  # a tie: the first maximum takes it

    def pool(v):
        return nn.max_pool(v, (2, 2), strides=(2, 2), padding=padding)

    shape = pool(x).shape
    ct = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape) / 10

    def f(x, ct):
        return jax.vjp(pool, x)[1](ct)[0]

    assert_close(*run_both(f, x, ct, protocol="aby3", seed=2))


@pytest.mark.slow
def test_cnn_gradient():
    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Conv(4, (3, 3))(x))
            x = nn.avg_pool(nn.max_pool(x, (2, 2), strides=(2, 2)), (1, 1))
            return nn.Dense(2)(x.reshape(x.shape[0], -1))

    model = CNN()
    params = model.init(jax.random.key(0), X)

    def loss(p, x):
        return jnp.mean(model.apply(p, x) ** 2)

    assert_close(*run_both(jax.grad(loss), params, X, protocol="semi2k", seed=3), atol=2e-3)


def _hf_vision(name):
    import warnings

    warnings.filterwarnings("ignore", message=".*TensorFlow and JAX classes are deprecated.*")
    from transformers import CLIPVisionConfig, FlaxCLIPVisionModel, FlaxResNetModel, ResNetConfig

    if name == "resnet":  # max pooling (3x3, stride 2, padded) in its embeddings
        model = FlaxResNetModel(
            ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic"),
            seed=0,
        )
        return model, lambda p, x: model(x, params=p, train=False).pooler_output
    model = FlaxCLIPVisionModel(
        CLIPVisionConfig(  # tile in its embeddings
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        seed=0,
    )
    return model, lambda p, x: model(x, params=p).pooler_output


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet", "clip_vision"])
def test_hugging_face_vision_models(name):
    """Tiny random-init Hugging Face Flax vision models outside the zoo: ResNet (max
    pooling) and CLIP's vision tower (tile), under aby3."""
    model, f = _hf_vision(name)
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    assert_close(*run_both(f, model.params, x, protocol="aby3", seed=0), atol=1e-3)
