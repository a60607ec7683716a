"""The persistent kernel cache: compiled protocol kernels kept on disk between processes.

One file per kernel, in a per-user directory (``SECJAX_CACHE_DIR``, default
``~/.cache/secjax`` or ``$XDG_CACHE_HOME/secjax``), under a subdirectory named by everything
that changes an executable: the jax and jaxlib versions, the backend and device kind, and a
digest of secjax's own sources (a kernel runs helpers that its key does not name). An entry
holds the serialized executable, its pytree structure, and the exchanges its step records, so
a process with a warm cache neither traces, lowers nor compiles.

Entries are read only from a directory this user owns and nobody else can write, and only
if their checksum and their recorded key match: anything else is skipped with a
:class:`CacheWarning` (and recompiled), never a crash or a wrong result. ``SECJAX_CACHE=0``
turns the cache off for a process; ``Config(cache=False)`` for one secure function.
"""

from __future__ import annotations

import functools
import hashlib
import os
import pathlib
import pickle
import stat
import tempfile
import warnings

import jax
import jaxlib

_MAGIC = b"SECJAX-KERNEL-1\n"
_SUFFIX = ".kernel"


class CacheWarning(UserWarning):
    """A cache entry or directory was unusable and is skipped."""


def cache_enabled() -> bool:
    """Whether the environment allows the on-disk cache (``SECJAX_CACHE=0`` turns it off)."""
    return os.environ.get("SECJAX_CACHE", "1").strip().lower() not in ("0", "false", "off", "no")


def cache_root() -> pathlib.Path:
    """The cache directory: ``SECJAX_CACHE_DIR``, else the user's cache directory."""
    explicit = os.environ.get("SECJAX_CACHE_DIR")
    if explicit:
        return pathlib.Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "secjax"


@functools.cache
def _sources_digest() -> str:
    """A digest of secjax's Python sources: any change to them starts a new cache."""
    package = pathlib.Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        h.update(str(path.relative_to(package)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def environment_tag() -> str:
    """What an executable depends on besides its kernel key."""
    device = jax.devices()[0]
    kind = "".join(c if c.isalnum() else "-" for c in device.device_kind)
    return (
        f"jax{jax.__version__}-jaxlib{jaxlib.__version__}-{device.platform}-{kind}-"
        f"src{_sources_digest()}"
    )


class DiskCache:
    """Kernel entries under ``root/<environment tag>/``, keyed by stable text keys."""

    def __init__(self, root: pathlib.Path):
        self.root = pathlib.Path(root)
        self._directory: pathlib.Path | None = None
        self._usable: bool | None = None

    @property
    def directory(self) -> pathlib.Path:
        if self._directory is None:
            self._directory = self.root / environment_tag()
        return self._directory

    def _ready(self) -> bool:
        """Create the directory (0700) once; refuse one that others could write."""
        if self._usable is None:
            self._usable = self._prepare()
        return self._usable

    def _prepare(self) -> bool:
        try:
            for path in (self.root, self.directory):
                path.mkdir(mode=0o700, parents=True, exist_ok=True)
                info = path.stat()
                if hasattr(os, "getuid") and info.st_uid != os.getuid():
                    raise PermissionError(f"{path} belongs to another user")
                if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                    raise PermissionError(f"{path} is writable by other users")
        except OSError as exc:
            warnings.warn(
                f"secjax's kernel cache is off for this process: {exc}", CacheWarning, stacklevel=3
            )
            return False
        return True

    def entry_path(self, key: str) -> pathlib.Path:
        return self.directory / (hashlib.sha256(key.encode()).hexdigest() + _SUFFIX)

    def load(self, key: str):
        """The entry stored under ``key``, or ``None`` (missing or unusable, with a warning
        for the unusable)."""
        if not self._ready():
            return None
        path = self.entry_path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            return self.discard(path, str(exc))
        if not data.startswith(_MAGIC):
            return self.discard(path, "not a secjax kernel entry")
        digest, body = data[len(_MAGIC) : len(_MAGIC) + 32], data[len(_MAGIC) + 32 :]
        if hashlib.sha256(body).digest() != digest:
            return self.discard(path, "checksum mismatch (truncated or corrupted)")
        try:
            stored_key, entry = pickle.loads(body)
        except Exception as exc:  # noqa: BLE001 - any undecodable entry is skipped
            return self.discard(path, f"undecodable ({type(exc).__name__})")
        if stored_key != key:
            return self.discard(path, "written for another kernel")
        return entry

    def store(self, key: str, entry) -> None:
        """Write ``entry`` under ``key`` atomically (a failure only costs the caching)."""
        if not self._ready():
            return
        body = pickle.dumps((key, entry), protocol=pickle.HIGHEST_PROTOCOL)
        data = _MAGIC + hashlib.sha256(body).digest() + body
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, self.entry_path(key))
        except OSError as exc:
            warnings.warn(
                f"secjax could not write a kernel cache entry: {exc}", CacheWarning, stacklevel=3
            )

    def discard(self, path: pathlib.Path, why: str):
        """Warn that the entry at ``path`` is skipped, and why."""
        warnings.warn(
            f"secjax ignores kernel cache entry {path.name}: {why}; recompiling",
            CacheWarning,
            stacklevel=4,
        )
        return None


def usage(root: pathlib.Path) -> list[tuple[str, int, int]]:
    """``(environment tag, entries, bytes)`` for every cache directory under ``root``."""
    rows = []
    if not root.is_dir():
        return rows
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        files = list(directory.glob("*" + _SUFFIX))
        rows.append((directory.name, len(files), sum(f.stat().st_size for f in files)))
    return rows


def clear(root: pathlib.Path) -> int:
    """Delete every kernel entry under ``root``; returns how many bytes were freed."""
    freed = 0
    if not root.is_dir():
        return freed
    for directory in (p for p in root.iterdir() if p.is_dir()):
        for path in list(directory.glob("*" + _SUFFIX)) + list(directory.glob("*.tmp")):
            freed += path.stat().st_size
            path.unlink()
        try:
            directory.rmdir()
        except OSError:
            pass
    return freed
