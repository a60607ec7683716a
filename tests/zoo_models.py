"""A zoo of tiny, random-init Hugging Face Flax models, and the metrics that compare a secure
run of one with its plaintext run.

Every factory returns a :class:`ZooModel` whose ``fn(params, **inputs)`` is a pure function
returning one array: ``last_hidden_state`` for encoders, ``logits`` for language-model heads,
the pooled output for ViT, the CLIP text model and DINOv2. Configs are tiny (hidden 32-64, two
layers, vocabulary 128-256, sequence 12, 32x32 images with 8x8 patches) and everything is
seeded, so each factory is deterministic and each forward pass is fast. No weights are
downloaded: models are built from configs.

    from tests.zoo_models import ZOO, build
    m = build("bert")
    out = jax.jit(m.fn)(m.params, **m.inputs)

Used by ``tests/test_zoo_plaintext.py``, ``tests/test_zoo.py`` and ``benchmarks/zoo.py``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

BATCH = 2
SEQ = 12
PAD = 4  # the second row of every padded batch ends in this many padding tokens
IMAGE = 32
PATCH = 8
SEED = 0


@dataclasses.dataclass(frozen=True)
class ZooModel:
    """One model of the zoo.

    fn: ``fn(params, **inputs) -> array``, pure and jit-able.
    params: the model's parameter pytree (float32).
    inputs: keyword inputs of ``fn`` (``input_ids``, ``attention_mask``, ``pixel_values``).
    lm_head: whether the output is next-token logits (compare argmax as well as cosine).
    slow: whether CI skips its secure test (see ``SLOW``).
    out_shape: the shape ``fn`` returns.
    """

    name: str
    fn: Callable[..., jax.Array]
    params: Any
    inputs: dict
    lm_head: bool
    slow: bool
    out_shape: tuple[int, ...]

    @property
    def valid(self) -> np.ndarray | None:
        """Positions (batch, seq) that are real tokens, for LM heads; None when all are."""
        mask = self.inputs.get("attention_mask")
        if mask is None:
            return None
        return np.asarray(mask).astype(bool)


# -- inputs ----------------------------------------------------------------------------------
def token_inputs(
    vocab: int, *, mask: bool = True, pad_id: int = 0, eos_id: int | None = None, seed: int = SEED
) -> dict:
    """``input_ids`` (BATCH, SEQ) of random tokens in [3, vocab) and, with ``mask``, an
    ``attention_mask`` whose second row ends in PAD padding tokens (right padding, so a causal
    model's real positions never see a pad). With ``eos_id`` each real sequence ends in it."""
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, vocab - 1, size=(BATCH, SEQ)).astype(np.int32)
    attention = np.ones((BATCH, SEQ), np.int32)
    if mask:
        attention[1, SEQ - PAD :] = 0
        ids[1, SEQ - PAD :] = pad_id
    if eos_id is not None:
        lengths = attention.sum(axis=1)
        ids[np.arange(BATCH), lengths - 1] = eos_id
    out = {"input_ids": jnp.asarray(ids)}
    if mask:
        out["attention_mask"] = jnp.asarray(attention)
    return out


def image_inputs(channels: int = 3, seed: int = SEED) -> dict:
    """``pixel_values`` (BATCH, channels, IMAGE, IMAGE), normalised like a processor's."""
    rng = np.random.RandomState(seed)
    pixels = rng.standard_normal((BATCH, channels, IMAGE, IMAGE)).astype(np.float32)
    return {"pixel_values": jnp.asarray(pixels)}


# -- the registry ----------------------------------------------------------------------------
FACTORIES: dict[str, Callable[[], ZooModel]] = {}
# Models CI skips in the secure zoo test and the benchmark without --all; known before building,
# so pytest can mark them at collection. Every model's plaintext forward is alike (1-3 s to
# compile and run on 2 CPU cores), so the choice is by secure cost: a secure run takes minutes
# each, and four models cover every family — an encoder (bert), a padded causal decoder
# (gpt2-padded), rotary + RMSNorm + SiLU + grouped-query attention (llama), a vision
# transformer with a convolution (vit). The plaintext zoo test runs all of them.
SLOW: set[str] = set()


def register(name: str, *, slow: bool = False):
    def wrap(factory):
        FACTORIES[name] = factory
        if slow:
            SLOW.add(name)
        return factory

    return wrap


def init_params(shapes, seed: int = SEED):
    """Seeded random parameters of the structure ``shapes`` (a pytree of ShapeDtypeStruct).

    Hugging Face's own initialisers would be compiled op by op on the first build (tens of
    seconds per model on a small CPU); this fills the same pytree in numpy instead, the way
    those initialisers do: weights, embeddings and biases N(0, 0.02), norm scales 1 + N(0, 0.02)
    (Gemma's RMSNorm multiplies by 1 + weight, so its weights near 1 scale by about 2: still a
    valid model) and DINOv2's layer scales ``lambda1`` likewise near 1."""
    rng = np.random.RandomState(seed)

    def fill(path, leaf):
        keys = [str(getattr(k, "key", k)) for k in path]
        name = keys[-1]
        noise = rng.standard_normal(leaf.shape).astype(np.float32) * np.float32(0.02)
        in_norm = any("norm" in k.lower() or k.lower().startswith("ln") for k in keys[-2:])
        if name == "lambda1" or (in_norm and name in ("scale", "weight")):
            noise = noise + np.float32(1.0)
        return jnp.asarray(noise, leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def _make(
    model_cls, config, inputs: dict, output: str, *, name: str, lm_head: bool = False
) -> ZooModel:
    """Instantiate ``model_cls`` from ``config`` with seeded random weights; ``fn`` returns the
    attribute ``output`` of the model's output."""
    extra = {}
    if "input_ids" in inputs:  # vision models initialise on their config's image shape
        extra["input_shape"] = tuple(inputs["input_ids"].shape)
    model = model_cls(config, _do_init=False, **extra)
    shapes = jax.eval_shape(
        functools.partial(model.init_weights, input_shape=model.input_shape),
        jax.random.PRNGKey(SEED),
    )
    params = init_params(shapes)

    def fn(params, **inputs):
        return getattr(model(**inputs, params=params), output)

    fn.__name__ = fn.__qualname__ = name.replace("-", "_")
    out = jax.eval_shape(fn, params, **inputs)
    return ZooModel(name, fn, params, inputs, lm_head, name in SLOW, tuple(out.shape))


@register("bert")
def bert() -> ZooModel:
    from transformers import BertConfig, FlaxBertModel

    config = BertConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return _make(FlaxBertModel, config, token_inputs(128), "last_hidden_state", name="bert")


@register("roberta", slow=True)
def roberta() -> ZooModel:
    from transformers import FlaxRobertaModel, RobertaConfig

    config = RobertaConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=1,
    )
    return _make(
        FlaxRobertaModel, config, token_inputs(128, pad_id=1), "last_hidden_state", name="roberta"
    )


@register("distilbert", slow=True)
def distilbert() -> ZooModel:
    from transformers import DistilBertConfig, FlaxDistilBertModel

    config = DistilBertConfig(
        vocab_size=128, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=64
    )
    return _make(
        FlaxDistilBertModel, config, token_inputs(128), "last_hidden_state", name="distilbert"
    )


@register("albert", slow=True)
def albert() -> ZooModel:
    from transformers import AlbertConfig, FlaxAlbertModel

    config = AlbertConfig(
        vocab_size=128,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return _make(FlaxAlbertModel, config, token_inputs(128), "last_hidden_state", name="albert")


@register("electra", slow=True)
def electra() -> ZooModel:
    from transformers import ElectraConfig, FlaxElectraModel

    config = ElectraConfig(
        vocab_size=128,
        embedding_size=16,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return _make(FlaxElectraModel, config, token_inputs(128), "last_hidden_state", name="electra")


@register("roformer", slow=True)
def roformer() -> ZooModel:
    from transformers import FlaxRoFormerModel, RoFormerConfig

    config = RoFormerConfig(
        vocab_size=128,
        embedding_size=32,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return _make(FlaxRoFormerModel, config, token_inputs(128), "last_hidden_state", name="roformer")


def _gpt2_config():
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=128,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_inner=64,
        bos_token_id=1,
        eos_token_id=2,
    )


@register("gpt2", slow=True)
def gpt2() -> ZooModel:
    from transformers import FlaxGPT2LMHeadModel

    return _make(
        FlaxGPT2LMHeadModel,
        _gpt2_config(),
        token_inputs(128, mask=False),
        "logits",
        name="gpt2",
        lm_head=True,
    )


@register("gpt2-padded")
def gpt2_padded() -> ZooModel:
    from transformers import FlaxGPT2LMHeadModel

    return _make(
        FlaxGPT2LMHeadModel,
        _gpt2_config(),
        token_inputs(128, pad_id=2),
        "logits",
        name="gpt2-padded",
        lm_head=True,
    )


@register("gpt-neo", slow=True)
def gpt_neo() -> ZooModel:
    from transformers import FlaxGPTNeoForCausalLM, GPTNeoConfig

    config = GPTNeoConfig(
        vocab_size=128,
        max_position_embeddings=64,
        hidden_size=32,
        num_layers=2,
        attention_types=[[["global", "local"], 1]],
        num_heads=2,
        intermediate_size=64,
        window_size=4,
        bos_token_id=1,
        eos_token_id=2,
    )
    return _make(
        FlaxGPTNeoForCausalLM,
        config,
        token_inputs(128, pad_id=2),
        "logits",
        name="gpt-neo",
        lm_head=True,
    )


@register("gptj", slow=True)
def gptj() -> ZooModel:
    from transformers import FlaxGPTJForCausalLM, GPTJConfig

    config = GPTJConfig(
        vocab_size=128,
        n_positions=64,
        n_embd=32,
        n_layer=2,
        n_head=2,
        n_inner=64,
        rotary_dim=8,
        bos_token_id=1,
        eos_token_id=2,
    )
    return _make(
        FlaxGPTJForCausalLM,
        config,
        token_inputs(128, pad_id=2),
        "logits",
        name="gptj",
        lm_head=True,
    )


@register("opt", slow=True)
def opt() -> ZooModel:
    from transformers import FlaxOPTForCausalLM, OPTConfig

    config = OPTConfig(
        vocab_size=128,
        hidden_size=32,
        num_hidden_layers=2,
        ffn_dim=64,
        num_attention_heads=2,
        word_embed_proj_dim=32,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
    )
    return _make(
        FlaxOPTForCausalLM, config, token_inputs(128, pad_id=1), "logits", name="opt", lm_head=True
    )


@register("bloom", slow=True)
def bloom() -> ZooModel:
    from transformers import BloomConfig, FlaxBloomForCausalLM

    config = BloomConfig(
        vocab_size=128,
        hidden_size=32,
        n_layer=2,
        n_head=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=3,
    )
    return _make(
        FlaxBloomForCausalLM,
        config,
        token_inputs(128, pad_id=3),
        "logits",
        name="bloom",
        lm_head=True,
    )


@register("llama")
def llama() -> ZooModel:
    from transformers import FlaxLlamaForCausalLM, LlamaConfig

    config = LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return _make(
        FlaxLlamaForCausalLM, config, token_inputs(128), "logits", name="llama", lm_head=True
    )


@register("mistral", slow=True)
def mistral() -> ZooModel:
    from transformers import FlaxMistralForCausalLM, MistralConfig

    config = MistralConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        sliding_window=4,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
    )
    return _make(
        FlaxMistralForCausalLM, config, token_inputs(128), "logits", name="mistral", lm_head=True
    )


@register("gemma", slow=True)
def gemma() -> ZooModel:
    from transformers import FlaxGemmaForCausalLM, GemmaConfig

    config = GemmaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=8,
        max_position_embeddings=64,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        hidden_activation="gelu_pytorch_tanh",
    )
    return _make(
        FlaxGemmaForCausalLM, config, token_inputs(128), "logits", name="gemma", lm_head=True
    )


@register("xglm", slow=True)
def xglm() -> ZooModel:
    from transformers import FlaxXGLMForCausalLM, XGLMConfig

    config = XGLMConfig(
        vocab_size=128,
        d_model=32,
        ffn_dim=64,
        num_layers=2,
        attention_heads=2,
        max_position_embeddings=64,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    return _make(
        FlaxXGLMForCausalLM,
        config,
        token_inputs(128, pad_id=1),
        "logits",
        name="xglm",
        lm_head=True,
    )


@register("vit")
def vit() -> ZooModel:
    from transformers import FlaxViTModel, ViTConfig

    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=IMAGE,
        patch_size=PATCH,
    )
    return _make(FlaxViTModel, config, image_inputs(), "pooler_output", name="vit")


@register("clip-text", slow=True)
def clip_text() -> ZooModel:
    from transformers import CLIPTextConfig, FlaxCLIPTextModel

    # eos_token_id=2 is CLIP's legacy config: the pooled output is taken at argmax(input_ids),
    # so every real sequence ends in the largest id.
    config = CLIPTextConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=SEQ,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    inputs = token_inputs(128, pad_id=1, eos_id=127)
    return _make(FlaxCLIPTextModel, config, inputs, "pooler_output", name="clip-text")


@register("dinov2", slow=True)
def dinov2() -> ZooModel:
    from transformers import Dinov2Config, FlaxDinov2Model

    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=IMAGE,
        patch_size=PATCH,
    )
    return _make(FlaxDinov2Model, config, image_inputs(), "pooler_output", name="dinov2")


ZOO = list(FACTORIES)


@functools.lru_cache(maxsize=None)
def build(name: str) -> ZooModel:
    """The zoo model ``name``, built once per process."""
    return FACTORIES[name]()


# -- jaxpr inspection ------------------------------------------------------------------------
def primitives_of(closed) -> set[str]:
    """Names of every primitive in a (closed) jaxpr, sub-jaxprs included."""
    from jax.extend.core import jaxprs_in_params

    jaxpr = getattr(closed, "jaxpr", closed)
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for sub in jaxprs_in_params(eqn.params):
            names |= primitives_of(sub)
    return names


def model_primitives(model: ZooModel) -> set[str]:
    return primitives_of(jax.make_jaxpr(functools.partial(model.fn, **model.inputs))(model.params))


# -- metrics ---------------------------------------------------------------------------------
def row_cosines(secure, plain) -> np.ndarray:
    """Cosine similarity of each row (last axis = features, the rest flattened)."""
    s = np.asarray(secure, np.float64)
    p = np.asarray(plain, np.float64)
    assert s.shape == p.shape, (s.shape, p.shape)
    s = s.reshape(-1, s.shape[-1])
    p = p.reshape(-1, p.shape[-1])
    dot = np.sum(s * p, axis=-1)
    norms = np.linalg.norm(s, axis=-1) * np.linalg.norm(p, axis=-1)
    # two zero rows agree perfectly; a zero row against a non-zero one not at all
    return np.where(
        norms > 0,
        dot / np.where(norms > 0, norms, 1.0),
        np.where(np.linalg.norm(s - p, axis=-1) == 0, 1.0, 0.0),
    )


def min_row_cosine(secure, plain) -> float:
    """The worst row's cosine similarity: the zoo's accuracy criterion (>= 0.999)."""
    return float(np.min(row_cosines(secure, plain)))


def argmax_agreement(secure_logits, plain_logits, valid=None) -> float:
    """Fraction of positions (over ``valid`` ones, e.g. not padding) whose next-token argmax
    agrees between the two runs."""
    s = np.argmax(np.asarray(secure_logits), axis=-1)
    p = np.argmax(np.asarray(plain_logits), axis=-1)
    agree = s == p
    if valid is not None:
        agree = agree[np.broadcast_to(np.asarray(valid, bool), agree.shape)]
    return float(np.mean(agree))


COSINE_THRESHOLD = 0.999
ARGMAX_THRESHOLD = 0.95
