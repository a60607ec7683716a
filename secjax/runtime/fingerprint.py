"""Stable text keys for compiled kernels: the same in every process, or ``None``.

A kernel is identified by its step function, the step's static arguments and the input
shapes. In memory, Python's own hashing serves; a key for the on-disk cache must mean the same
thing in another process, so functions are named by module, qualified name *and* a hash of
their code, arrays by a hash of their bytes, and anything whose only description is an object
address (a closure, an object without a value repr) makes the key ``None``: such a kernel is
cached in memory only.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import re
import types

import jax.numpy as jnp
import numpy as np
from jax.extend.core import Primitive

_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class _Unstable(Exception):
    """The object has no description that is the same in another process."""


def fingerprint(obj) -> str | None:
    """A text naming ``obj`` the same way in every process, or ``None`` if there is none."""
    try:
        return _describe(obj)
    except _Unstable:
        return None


def _code_digest(code: types.CodeType) -> str:
    """A digest of a function's bytecode and constants (nested code objects included)."""
    h = hashlib.sha256(code.co_code)
    for const in code.co_consts:
        h.update(
            (_code_digest(const) if isinstance(const, types.CodeType) else repr(const)).encode()
        )
    h.update(repr(code.co_names).encode())
    return h.hexdigest()[:16]


def _describe_function(fn) -> str:
    qualname = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    module = getattr(fn, "__module__", None) or ""
    if qualname is None or "<lambda>" in qualname or "<locals>" in qualname:
        raise _Unstable(fn)
    if getattr(fn, "__closure__", None):
        raise _Unstable(fn)
    code = getattr(fn, "__code__", None)
    digest = _code_digest(code) if code is not None else ""
    return f"fn:{module}.{qualname}:{digest}"


def _describe(obj) -> str:
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return repr(obj)
    if isinstance(obj, (tuple, list)):
        return f"{type(obj).__name__}(" + ",".join(_describe(x) for x in obj) + ")"
    if isinstance(obj, (frozenset, set)):
        return "set(" + ",".join(sorted(_describe(x) for x in obj)) + ")"
    if isinstance(obj, dict):
        return "dict(" + ",".join(
            f"{_describe(k)}:{_describe(v)}"
            for k, v in sorted(obj.items(), key=lambda kv: repr(kv[0]))
        )
    if isinstance(obj, np.dtype) or (isinstance(obj, type) and issubclass(obj, np.generic)):
        return f"dtype:{np.dtype(obj).str}"
    if isinstance(obj, (np.ndarray, np.generic)):
        arr = np.asarray(obj)
        return (
            f"array:{arr.dtype.str}:{arr.shape}:"
            f"{hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16]}"
        )
    if isinstance(obj, enum.Enum):
        return f"enum:{type(obj).__qualname__}.{obj.name}"
    if isinstance(obj, functools.partial):
        return f"partial({_describe(obj.func)},{_describe(obj.args)},{_describe(obj.keywords)})"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = ",".join(
            f"{f.name}={_describe(getattr(obj, f.name))}" for f in dataclasses.fields(obj)
        )
        return f"{type(obj).__module__}.{type(obj).__qualname__}({fields})"
    if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, np.ufunc)):
        return _describe_function(obj)
    if isinstance(obj, jnp.ufunc):
        return f"jnp.ufunc:{obj.__name__}"
    if isinstance(obj, Primitive):
        return f"primitive:{type(obj).__module__}.{obj.name}"
    if callable(obj) and hasattr(obj, "__wrapped__"):  # jax.numpy's jitted functions
        return f"wrapped({_describe(obj.__wrapped__)})"
    text = repr(obj)
    if _ADDRESS.search(text) or text.startswith("<"):
        raise _Unstable(obj)
    return f"{type(obj).__module__}.{type(obj).__qualname__}:{text}"
