"""The cache directory for generated data (featurised datasets, simulations).

``$BENCHBASE_CACHE`` if set, else ``~/.cache/benchbase``. Never inside the repository.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir(*parts: str) -> Path:
    root = Path(os.environ.get("BENCHBASE_CACHE") or Path.home() / ".cache" / "benchbase")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds, so a
    killed process never leaves a half-written file under the final name."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks: checksums of stored files and content keys of data."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


#: A remembered digest is trusted only for a file that was unchanged for this long before it was
#: hashed. File times come from a coarse clock, so a file rewritten moments after being hashed can
#: keep its size and times; git's index handles the same "racy" case the same way.
RACY_SECONDS = 2.0


def content_digest(path: Path) -> str:
    """`file_sha256` of a data file, remembered in the cache so that planning a grid does not reread
    large raw files every time. A remembered value is used only while the file's size, inode,
    modification and change times are those it was hashed with (the change time moves on every
    write and on every `touch`, so restoring a modification time does not hide an edit)."""
    path = Path(path).resolve()
    memo = cache_dir("digests") / f"{hashlib.sha256(str(path).encode()).hexdigest()[:32]}.json"
    before = os.stat(path)
    stamp = [before.st_size, before.st_ino, before.st_mtime_ns, before.st_ctime_ns]
    try:
        saved = json.loads(memo.read_text())
        if saved["path"] == str(path) and saved["stamp"] == stamp:
            return saved["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent or damaged: hash again
    started_ns = time.time_ns()
    value = file_sha256(path)
    settled = started_ns - max(before.st_mtime_ns, before.st_ctime_ns) > RACY_SECONDS * 1e9
    if settled and [os.stat(path).st_mtime_ns, os.stat(path).st_ctime_ns] == stamp[2:]:
        with atomic_path(memo) as tmp:
            tmp.write_text(json.dumps({"path": str(path), "stamp": stamp, "sha256": value}))
    return value
