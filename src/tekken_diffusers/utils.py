"""Small shared helpers."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_output", "file_fingerprint", "looks_like_local_path"]


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path beside `path`; on success it is renamed onto `path`, on error it is removed.

    Readers never see a half-written file. The temporary name keeps the suffix, so tools that pick a format from it
    (ffmpeg, PIL) still work, and the file gets the mode a plain `open()` would have given it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def file_fingerprint(path: str | os.PathLike, chunk_size: int = 1 << 20) -> dict[str, int | str]:
    """`{"size": bytes, "sha256": hex digest}` of a file's content: what a resumed job compares to know whether an
    input changed since it was processed (a modification time is not enough: `cp -p` keeps it)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def looks_like_local_path(name: str | os.PathLike) -> bool:
    """Whether `name`, which does not exist, was meant as a local path rather than a Hub repo id (`name` or
    `owner/name`): absolute, relative to `.`/`..`/`~`, more than one `/`, a backslash, or a first component that is an
    existing local folder (`checkpoints/vae` when `checkpoints/` exists). Such a name fails at once instead of after
    a round of Hub requests."""
    text = os.fspath(name)
    if os.path.isabs(text) or text.startswith((".", "~")) or "\\" in text or text.count("/") > 1:
        return True
    first = text.split("/", 1)[0]
    return "/" in text and os.path.isdir(first)
