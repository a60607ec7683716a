"""Who takes part and how they prove it: the cluster file and the CURVE key files.

A cluster TOML file lists every computing party (``[parties.0]``, ``[parties.1]``, ...), the
semi2k dealer (``[parties.dealer]``) with an address to listen on and a CURVE public key, and
optionally the outside clients allowed to query served parties (``[clients.NAME]``, a public
key only: clients connect, they do not listen). See ``docs/network.md``.

Key pairs are made one per node, by the node itself (:func:`create_key_pair`, ``secjax keygen
--party N``): the secret key never leaves the machine that made it, and only public keys are
collected into the cluster file (:func:`assemble_cluster`, ``secjax cluster``). A secret key
file is created with mode 0600 in a directory of mode 0700 (never world-readable, not even
for an instant), and :func:`load_secret_key` refuses one that others can read.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import stat
import tomllib

from secjax.runtime.faults import KeyFileError, NetworkError
from secjax.runtime.wire import DEALER

DEFAULT_TIMEOUT = 60.0
_OPTIONS = ("protocol", "ring_bits", "frac_bits", "input_party", "output_party", "timeout")


@dataclasses.dataclass(frozen=True)
class Node:
    name: str  # "0", "1", ..., or "dealer"
    address: str  # a ZeroMQ endpoint, e.g. "tcp://10.0.0.5:5700"
    public_key: bytes  # CURVE public key, Z85 (40 characters)


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Who takes part and how to reach them (a cluster TOML file)."""

    nodes: dict[str, Node]
    protocol: str = "aby3"
    ring_bits: int = 64
    frac_bits: int = 18
    input_party: int = 0
    output_party: int = 0
    timeout: float = DEFAULT_TIMEOUT
    path: pathlib.Path | None = None
    clients: dict[str, bytes] = dataclasses.field(default_factory=dict)

    @property
    def n_parties(self) -> int:
        return sum(1 for name in self.nodes if name != DEALER)

    @property
    def has_dealer(self) -> bool:
        return DEALER in self.nodes

    @property
    def parties(self) -> list[str]:
        return [str(i) for i in range(self.n_parties)]

    def node(self, party) -> Node:
        return self.nodes[str(party)]

    def default_key_path(self, name) -> pathlib.Path:
        base = self.path.parent if self.path is not None else pathlib.Path(".")
        return base / f"{name}.key_secret"

    def options(self) -> dict:
        return {key: getattr(self, key) for key in _OPTIONS}


def _key(text, where: str) -> bytes:
    if not isinstance(text, str) or len(text) != 40:
        raise NetworkError(f"{where}: public_key is not a 40-character Z85 CURVE key")
    return text.encode("ascii")


def load_cluster(path) -> Cluster:
    """Read and validate a cluster TOML file."""
    path = pathlib.Path(path)
    with open(path, "rb") as f:
        data = tomllib.load(f)
    parties = data.get("parties")
    if not isinstance(parties, dict) or not parties:
        raise NetworkError(f"{path}: no [parties.N] tables")
    nodes = {}
    for name, entry in parties.items():
        if not isinstance(entry, dict) or "address" not in entry or "public_key" not in entry:
            raise NetworkError(f"{path}: [parties.{name}] needs address and public_key")
        nodes[name] = Node(
            name, entry["address"], _key(entry["public_key"], f"{path}: [parties.{name}]")
        )
    n = sum(1 for name in nodes if name != DEALER)
    if sorted(k for k in nodes if k != DEALER) != sorted(str(i) for i in range(n)):
        raise NetworkError(f"{path}: parties must be named 0..{n - 1} (and optionally dealer)")
    clients = {}
    for name, entry in (data.get("clients") or {}).items():
        if name.isdigit() or name == DEALER or not name.isidentifier():
            raise NetworkError(
                f"{path}: [clients.{name}]: a client's name must be an "
                "identifier, neither a party number nor 'dealer'"
            )
        if not isinstance(entry, dict):
            raise NetworkError(f"{path}: [clients.{name}] needs a public_key")
        clients[name] = _key(entry.get("public_key"), f"{path}: [clients.{name}]")
    keys = [node.public_key for node in nodes.values()] + list(clients.values())
    if len(set(keys)) != len(keys):
        raise NetworkError(f"{path}: two nodes share a public key")
    options = {k: data[k] for k in _OPTIONS if k in data}
    cluster = Cluster(nodes, path=path, clients=clients, **options)
    if cluster.protocol == "semi2k" and not cluster.has_dealer:
        raise NetworkError(f"{path}: semi2k needs a [parties.dealer] table")
    return cluster


def write_cluster(
    path, nodes: dict[str, Node], *, clients: dict[str, bytes] | None = None, **options
) -> pathlib.Path:
    """Write a cluster TOML file (``options``: protocol, ring_bits, timeout, ...)."""
    lines = [
        "# secjax cluster: every node's address and CURVE public key (public data).",
        "# Each *.key_secret stays on the machine of the node that made it.",
    ]
    for key, value in options.items():
        lines.append(f'{key} = "{value}"' if isinstance(value, str) else f"{key} = {value!r}")
    for name, node in nodes.items():
        lines += [
            "",
            f"[parties.{name}]",
            f'address = "{node.address}"',
            f'public_key = "{node.public_key.decode("ascii")}"',
        ]
    for name, key in (clients or {}).items():
        lines += ["", f"[clients.{name}]", f'public_key = "{key.decode("ascii")}"']
    path = pathlib.Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


# -- key files -------------------------------------------------------------------------------
def _private_dir(path: pathlib.Path) -> None:
    """Make ``path`` a directory of mode 0700 (created so, or narrowed if it exists)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o700)


def _certificate(public: bytes, secret: bytes | None) -> str:
    """The ZeroMQ certificate text (as ``zmq.auth.load_certificate`` reads it)."""
    lines = [
        "#   secjax CURVE certificate",
        "metadata",
        "curve",
        f'    public-key = "{public.decode("ascii")}"',
    ]
    if secret is not None:
        lines.append(f'    secret-key = "{secret.decode("ascii")}"')
    return "\n".join(lines) + "\n"


def create_key_pair(directory, name: str) -> tuple[pathlib.Path, bytes]:
    """A fresh CURVE key pair for node ``name``: ``<name>.key_secret`` (mode 0600 from its
    creation, in a directory of mode 0700; an existing one is never overwritten) and
    ``<name>.key`` (the public key). Returns the public file and the public key."""
    import zmq

    directory = pathlib.Path(directory)
    _private_dir(directory)
    public, secret = zmq.curve_keypair()
    secret_path = directory / f"{name}.key_secret"
    try:
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{secret_path} exists; remove it first to make a new key") from None
    with os.fdopen(fd, "w") as f:
        f.write(_certificate(public, secret))
    public_path = directory / f"{name}.key"
    public_path.write_text(_certificate(public, None))
    return public_path, public


def load_public_key(path) -> bytes:
    """The Z85 public key of a ``*.key`` (or ``*.key_secret``) file."""
    import zmq.auth

    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise KeyFileError(f"cannot read a public key from {path}: {exc}") from None
    return public


def load_secret_key(path) -> tuple[bytes, bytes]:
    """``(public, secret)`` Z85 keys from a ``*.key_secret`` file, which must be readable by
    its owner only (mode 0600 or narrower)."""
    import zmq.auth

    path = pathlib.Path(path)
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError as exc:
        raise KeyFileError(f"cannot read the secret key {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise KeyFileError(
            f"{path} is readable by others (mode {mode:04o}): a secret key "
            f"must be mode 0600; run chmod 600 {path} if no one else could "
            "have read it, else make a new key"
        )
    try:
        public, secret = zmq.auth.load_certificate(path)
    except ValueError as exc:
        raise KeyFileError(f"{path}: {exc}") from None
    if secret is None:
        raise KeyFileError(f"{path} holds no secret key")
    return public, secret


def assemble_cluster(
    path,
    addresses: dict[str, str],
    public_keys: dict[str, bytes],
    *,
    clients: dict[str, bytes] | None = None,
    **options,
) -> pathlib.Path:
    """Write ``path`` from every node's address and public key (each node made its own key
    pair with :func:`create_key_pair` and handed out only the public key), and check it."""
    missing = sorted(set(addresses) ^ set(public_keys))
    if missing:
        raise NetworkError(
            f"an address and a public key are needed for every node; unmatched: {missing}"
        )
    order = sorted((n for n in addresses if n != DEALER), key=int)
    order += [DEALER] if DEALER in addresses else []
    nodes = {name: Node(name, addresses[name], public_keys[name]) for name in order}
    write_cluster(path, nodes, clients=clients, **options)
    load_cluster(path)
    return pathlib.Path(path)


def keygen(
    out_dir,
    n_parties: int,
    *,
    protocol: str = "aby3",
    host: str = "127.0.0.1",
    base_port: int = 5700,
    dealer: bool | None = None,
    clients=(),
    **options,
) -> pathlib.Path:
    """Every node's key pair and a ``cluster.toml`` in one directory, for trying things on
    one machine (``secjax launch``, tests): whoever holds that directory can act as any
    node. Across machines each node makes its own key (``secjax keygen --party N``)."""
    out = pathlib.Path(out_dir)
    dealer = protocol == "semi2k" if dealer is None else dealer
    names = [str(i) for i in range(n_parties)] + ([DEALER] if dealer else [])
    addresses, keys = {}, {}
    for i, name in enumerate(names):
        _, keys[name] = create_key_pair(out, name)
        addresses[name] = f"tcp://{host}:{base_port + i}"
    client_keys = {name: create_key_pair(out, name)[1] for name in clients}
    return assemble_cluster(
        out / "cluster.toml", addresses, keys, clients=client_keys, protocol=protocol, **options
    )
