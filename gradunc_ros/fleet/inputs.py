"""The bags a fleet run evaluates: found under the paths given, named, and identified by their content."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

CHUNK = 4 << 20  # bytes read at a time while hashing
HASH_CHARS = 16  # of the hex digest: 64 bits, no collision in any fleet's logs


@dataclass(frozen=True)
class BagInput:
    path: Path
    digest: str  # of the bag's content (every file of a bag folder, by relative name)

    @property
    def name(self) -> str:
        """The output bag's and the rows' name for this bag: readable, and unique by the digest."""
        stem = self.path.stem if self.path.is_file() else self.path.name
        return f"{stem}-{self.digest[:8]}"


def is_bag(path: Path) -> bool:
    """A rosbag2 folder (metadata.yaml beside its storage files) or a bare .mcap file."""
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or (path.is_file() and path.suffix == ".mcap")


def find_bags(paths: Iterable[Path], skip: Path | None = None) -> list[Path]:
    """Each path that is a bag, and every bag under each folder that is not (sorted, each once), but none
    under ``skip`` (the results folder, whose output bags may lie under a folder searched).  A path that
    is neither is kept: its task reports it, as it reports any bag it cannot read."""
    found: list[Path] = []
    skipped = Path(skip).resolve() if skip is not None else None
    for path in paths:
        if is_bag(path) or not path.is_dir():
            found.append(path)
            continue
        inside = [
            p
            for p in sorted(path.rglob("*"))
            if is_bag(p) and not is_bag(p.parent) and (skipped is None or not p.resolve().is_relative_to(skipped))
        ]
        if not inside:
            raise ValueError(f"{path} holds no bag (a folder with metadata.yaml, or an .mcap file)")
        found += inside
    unique: dict[Path, None] = {}
    for path in found:
        unique.setdefault(path.resolve(), None)
    return list(unique)


def _bag_files(path: Path) -> list[Path]:
    """A bag folder's files in name order, or the bare .mcap file itself."""
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def content_digest(path: Path) -> str:
    """BLAKE2b of a bag's bytes: of a bag folder, every file's relative name and content in name order; of
    a bare .mcap file, its content alone (a renamed copy is the same bag)."""
    digest = hashlib.blake2b(digest_size=HASH_CHARS // 2)
    for file in _bag_files(path):
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _identity(path: Path) -> str:
    """What must not change for a kept digest to hold: the path, and each file's name, size and mtime."""
    stats = [(f, f.stat()) for f in _bag_files(path)]
    names = [(str(f.relative_to(path)) if path.is_dir() else "", st.st_size, st.st_mtime_ns) for f, st in stats]
    return json.dumps([str(path), names])


def bag_inputs(
    paths: Iterable[Path],
    skip: Path | None = None,
    kept: dict | None = None,
    used: dict | None = None,
    on_new: Callable[[], None] = lambda: None,
) -> list[BagInput]:
    """The bags under ``paths`` (none under ``skip``) with their digests, taken from ``kept`` (identity ->
    digest) where the bag is unchanged; ``used`` receives the identities of these bags, ``on_new`` is
    called after each bag hashed anew.  A path that cannot be read gets the digest of its name, so that
    it is still reported per bag."""
    kept = {} if kept is None else kept
    used = {} if used is None else used
    inputs = []
    for path in find_bags(paths, skip):
        try:
            identity = _identity(path)
            if identity not in kept:
                kept[identity] = content_digest(path)
                used[identity] = kept[identity]
                on_new()
            digest = used[identity] = kept[identity]
        except OSError:
            digest = hashlib.blake2b(str(path).encode(), digest_size=HASH_CHARS // 2).hexdigest()
        inputs.append(BagInput(path, digest))
    return inputs
