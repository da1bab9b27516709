"""Writing results so that an interrupted write never leaves a half-written file or folder.

    with replacing(Path("runs/x")) as tmp:
        tmp.mkdir()
        ...                                   # write everything into tmp
    # runs/x now holds the new folder; an older runs/x was replaced only once the new one was complete

Every writer of the toolkit (run folders, their extra tables, checkpoints, reports) goes through
`replacing`, so the rule lives here once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def replacing(final: Path) -> Iterator[Path]:
    """A temporary sibling of `final` to write a file or a folder into. When the block ends without
    an error it takes `final`'s place (an older folder is moved aside, then removed); otherwise it is
    removed and `final` is left as it was."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir() and final.exists():
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            final.rename(old)
            tmp.rename(final)
            _remove(old)
        else:
            os.replace(tmp, final)
    except BaseException:
        _remove(tmp)
        raise


def sha256(path: str | Path) -> str:
    """Hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
