"""Small shared helpers."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_output",
    "file_digest",
    "looks_like_local_path",
    "move_into_place",
    "write_markdown_section",
]


@contextmanager
def atomic_output(path: str | os.PathLike, *, folder: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is moved onto `path`, on error it is removed.

    Readers never see a half-written file or folder: this is the one "write to a temporary name, then rename" of the
    package. The temporary name is hidden (`.name.<rnd>.tmp…`) and keeps the suffix, so tools that pick a format from
    it (ffmpeg, PIL) still work; the result gets the mode a plain `open()` / `mkdir()` would have given it.

    Args:
        path: the file (or folder) to write.
        folder: yield an empty temporary folder instead of a file; an existing folder at `path` is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if folder:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, (0o777 if folder else 0o666) & ~umask)
        move_into_place(tmp, path)
    finally:
        if folder:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)


def move_into_place(temporary: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Rename a complete temporary file or folder onto `path` (the last step of `atomic_output`).

    An existing folder at `path` is removed first, as a rename cannot replace a non-empty folder. Call it directly
    only where the temporary name must be known in advance, e.g. by every process of a distributed checkpoint save.
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    os.replace(temporary, path)
    return path


def write_markdown_section(
    path: str | os.PathLike, section: str, heading: str | None = None, default_text: str = "# Benchmarks\n"
) -> None:
    """Replace (or append) one `## ` section of a markdown file, leaving the other sections alone; atomically.

    The section runs from its heading line to the next line that starts with `## ` (or the end of the file). A file
    that does not exist yet starts as `default_text`.

    Args:
        path: the markdown file (e.g. `docs/benchmarks.md`).
        section: the new section, starting with its heading line (`## VAE\n\n| … |\n`).
        heading: the heading line to replace; the first line of `section` by default.
        default_text: the text of a new file, before the section is appended.
    """
    path = Path(path)
    new = section.rstrip("\n").splitlines()
    heading = new[0] if heading is None else heading
    lines = (path.read_text(encoding="utf-8") if path.exists() else default_text).splitlines()
    if heading in lines:
        start = lines.index(heading)
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[start:end] = new + ([""] if end < len(lines) else [])
    else:
        lines += ([""] if lines and lines[-1] else []) + new
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def file_digest(path: str | os.PathLike, chunk_size: int = 1 << 20) -> dict[str, int | str]:
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
