"""secjax: run unmodified JAX and Flax programs under secure multi-party computation.

    import secjax

    @secjax.secure_jit                  # aby3, 3 parties, 64-bit ring, 18 fractional bits
    def f(params, x):
        return model.apply(params, x)

    y = f(params, x)                    # same pytree, shapes and dtypes as f(params, x)
    print(f.cost(params, x))            # bytes and rounds per party, without running
"""
from secjax.api import Config, SecureFunction, private, public, secure_jit
from secjax.errors import (EncodingError, RangeError, RangeWarning, SecjaxError,
                           UnsupportedError)
from secjax.runtime.disk_cache import CacheWarning

__version__ = "0.1.0"

__all__ = [
    "CacheWarning", "Config", "EncodingError", "RangeError", "RangeWarning", "SecjaxError",
    "SecureFunction", "UnsupportedError",
    "private", "public", "secure_jit",
]
