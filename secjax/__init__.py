"""secjax: run unmodified JAX and Flax programs under secure multi-party computation.

import secjax

@secjax.secure_jit                  # aby3, 3 parties, 64-bit ring, 18 fractional bits
def f(params, x):
    return model.apply(params, x)

y = f(params, x)                    # same pytree, shapes and dtypes as f(params, x)
print(f.cost(params, x))            # bytes and rounds per party, without running

weights = secjax.share(params)      # shared once: handles, free to pass to later calls
y = f(weights, x)
"""

from secjax.api import (
    Config,
    SecureFunction,
    private,
    public,
    reveal,
    secure_jit,
    share,
)
from secjax.errors import (
    EncodingError,
    RangeError,
    RangeWarning,
    SecjaxError,
    UnsupportedError,
)
from secjax.handles import Domain, Handle
from secjax.runtime.disk_cache import CacheWarning

__version__ = "0.1.0"

__all__ = [
    "CacheWarning",
    "Config",
    "Domain",
    "EncodingError",
    "Handle",
    "RangeError",
    "RangeWarning",
    "SecjaxError",
    "SecureFunction",
    "UnsupportedError",
    "private",
    "public",
    "reveal",
    "secure_jit",
    "share",
]
