"""Remembered content digests: data keys without rereading large files, never a stale hash."""

from __future__ import annotations

import os

import pytest

from benchbase.compute import cache
from benchbase.compute.cache import content_digest, file_sha256


@pytest.fixture
def counted(monkeypatch, tmp_path):
    """`file_sha256` calls made by `content_digest`, with a private cache folder."""
    monkeypatch.setenv("BENCHBASE_CACHE", str(tmp_path / "cache"))
    calls: list[str] = []

    def counting(path):
        calls.append(str(path))
        return file_sha256(path)

    monkeypatch.setattr(cache, "file_sha256", counting)
    return calls


def settled_file(path, data: bytes):
    """A file whose times lie well in the past, as data on disk usually is."""
    path.write_bytes(data)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    return path


def test_a_file_changed_moments_ago_is_not_remembered(counted, tmp_path):
    data = settled_file(tmp_path / "data.csv", b"a,b\n1,2\n")
    # The change time is "now" right after utime, so the first hash is not remembered yet...
    first = content_digest(data)
    assert first == file_sha256(data) and len(counted) == 1
    content_digest(data)
    assert len(counted) == 2, "a file changed within RACY_SECONDS must be hashed again"


def test_remembered_digest_is_used_and_an_edit_is_seen(counted, tmp_path, monkeypatch):
    data = settled_file(tmp_path / "data.csv", b"a,b\n1,2\n")
    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)  # as if the file had settled long ago
    first = content_digest(data)
    assert content_digest(data) == first and len(counted) == 1  # remembered: not read again
    # The same size, and the modification time put back: the change time still moves.
    data.write_bytes(b"a,b\n1,3\n")
    os.utime(data, (1_000_000_000, 1_000_000_000))
    second = content_digest(data)
    assert second == file_sha256(data) and second != first and len(counted) == 2


def test_a_damaged_memo_is_rehashed(counted, tmp_path, monkeypatch):
    data = settled_file(tmp_path / "data.csv", b"x\n")
    monkeypatch.setattr(cache, "RACY_SECONDS", -1.0)
    content_digest(data)
    for memo in (tmp_path / "cache" / "digests").iterdir():
        memo.write_text("{not json")
    assert content_digest(data) == file_sha256(data) and len(counted) == 2
