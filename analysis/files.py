"""Writing results so that an interrupted write never leaves a half-written file or folder.

    with replacing(Path("runs/x")) as tmp:
        tmp.mkdir()
        ...                                   # write everything into tmp
    # runs/x now holds the new folder; an older runs/x was replaced only once the new one was complete

Every writer of the toolkit (run folders, their extra tables, checkpoints, reports) goes through
`replacing`, so the rule lives here once. A write is staged in `.NAME.tmp-PID`; an older folder
waits in `.NAME.old-PID` for the instant between two renames. What a killed process left there is
recognised by its PID no longer running: the next write to the same place (or `recover`) removes its
temporary folder and puts a previous folder left aside back under its own name.

A job that takes long before it writes holds its output for the whole time (`claimed`), so that a
second writer of the same place is refused at once, not after its own work; and `check_creatable`
makes and renames a folder where the output will go, so that a place that cannot take it is found
before any work too.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from analysis.errors import AnalysisError, OptionError


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    """Whether a process `pid` runs on this machine (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(lock: Path) -> int | None:
    """The PID recorded in a claim, None if it cannot be read."""
    try:
        return int(lock.read_text())
    except (OSError, ValueError):
        return None


def recover(final: str | Path) -> None:
    """Clean up after writers of `final` that died: remove their `.tmp-PID` and `.lock-PID` siblings
    and their claim, and rename a `.old-PID` sibling back to `final` where `final` is missing (else
    remove it)."""
    final = Path(final)
    if not final.parent.is_dir():
        return
    lock = final.parent / f".{final.name}.lock"
    holder = _holder(lock) if lock.is_file() else None
    if holder is not None and holder != os.getpid() and not _alive(holder):
        lock.unlink(missing_ok=True)
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(tmp|old|lock)-(\d+)")
    for sibling in sorted(final.parent.iterdir()):
        match = pattern.fullmatch(sibling.name)
        if match is None or int(match.group(2)) == os.getpid() or _alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not final.exists():
            sibling.rename(final)
        else:
            _remove(sibling)


def check_creatable(path: str | Path, what: str = "--out") -> Path:
    """OptionError, before any work, if `path` cannot be created as a folder (or, if it is one,
    written into): a file stands in its way, or its nearest existing parent (itself, if it exists)
    cannot be written."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OptionError(f"{what} {path} is a file, not a folder.")
    failure = f"{what} {path} cannot be {'written' if path.is_dir() else 'created'}"
    parent = path.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise OptionError(f"{failure}: {parent} is a file.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OptionError(f"{failure}: {parent} is not writable.")
    try:  # what a write does there: make a folder, rename it (os.access says yes to root on /proc, say)
        probe = Path(tempfile.mkdtemp(prefix=f".{path.name}.probe-", dir=parent))
        probe.rename(probe.with_name(f"{probe.name}-renamed"))
        probe.with_name(f"{probe.name}-renamed").rmdir()
    except OSError as e:
        raise OptionError(f"{failure}: a folder cannot be made and renamed in {parent} "
                          f"({e.strerror or type(e).__name__}).") from None
    return path


def check_replaceable(
    out: str | Path, kind: str, ours: Callable[[Path], bool], *, overwrite: bool = True, what: str = "--out",
    exists: type[AnalysisError] = OptionError,
) -> Path:
    """Refuse, before any work, an `out` that cannot be made (check_creatable), that exists without
    `overwrite` (an `exists` error), or that is anything but `kind` written by the toolkit (`ours(out)`;
    a link never is): the one rule by which nothing the toolkit did not write is ever replaced."""
    out = check_creatable(out, what)
    if not (out.exists() or out.is_symlink()):
        return out
    if not overwrite:
        raise exists(f"{out} already exists; choose another {what} or pass --overwrite.")
    if out.is_symlink() or not ours(out):
        raise OptionError(f"{out} is not {kind} that se-analysis wrote, so it is never replaced; choose another {what}.")
    return out


def _take(lock: Path, mine: Path, what: str, final: Path) -> bool:
    """Make `lock` hold this process's PID (True), or find it held by this process already (False);
    OptionError if a running process holds it, whose claim a dead one's is taken over from."""
    mine.write_text(str(os.getpid()))
    try:
        while True:
            try:
                os.link(mine, lock)
                return True
            except FileExistsError:
                holder = _holder(lock)
                if holder == os.getpid():
                    return False
                if holder is not None and _alive(holder):
                    raise OptionError(f"{what} {final} is being written by another se-analysis (process {holder}); "
                                      f"wait for it to end or choose another {what}.") from None
                lock.unlink(missing_ok=True)  # left by a process that died
    finally:
        mine.unlink(missing_ok=True)


@contextmanager
def claimed(final: str | Path, what: str = "--out") -> Iterator[None]:
    """Hold `final` for this process until the block ends: OptionError at once if another running
    process holds it. The claim is the file `.NAME.lock` beside `final`, holding the PID, made
    atomically (a link of a file already written); one left by a process that died is taken over.
    Nested claims of one process on the same place hold it once. Parent folders made for the claim
    are removed again if nothing was written into them."""
    final = Path(final)
    made = [p for p in (final.parent, *final.parent.parents) if not p.exists()]
    final.parent.mkdir(parents=True, exist_ok=True)
    lock, mine = final.parent / f".{final.name}.lock", final.parent / f".{final.name}.lock-{os.getpid()}"
    try:
        if not _take(lock, mine, what, final):
            yield  # nested: the outer claim releases it
            return
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
    finally:
        for folder in made:  # innermost first; stops at the first that holds something
            try:
                folder.rmdir()
            except OSError:
                break


@contextmanager
def replacing(final: Path) -> Iterator[Path]:
    """A temporary sibling of `final` to write a file or a folder into. When the block ends without
    an error it takes `final`'s place (an older folder is moved aside, then removed); otherwise it is
    removed and `final` is left as it was. Callers check that an existing `final` is theirs to replace."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    recover(final)
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


def manifest(folder: Path) -> dict[str, dict[str, int | str]]:
    """{relative path: {"size", "sha256"}} of every file under `folder`, in sorted order."""
    return {
        str(p.relative_to(folder)): {"size": p.stat().st_size, "sha256": sha256(p)}
        for p in sorted(folder.rglob("*")) if p.is_file()
    }
