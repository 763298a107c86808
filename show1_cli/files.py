"""Atomic output files: written beside the target under a hidden temporary name, then moved into place.

A reader (or a rerun of a killed batch) sees either the finished file or no file at the target; only
the temporary `.<name>.partial-<random>` can be left behind by a process that is killed outright, and
`remove_stale_partials` clears those before the same output is written again. A write the system refuses
(disk full, read-only file system) is a `Show1Error` naming the file and the cause.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from show1_cli.errors import InputError, OutputExistsError, Show1Error

logger = logging.getLogger("show1")

PARTIAL = ".partial-"
# What to do about the write failures a user can fix; anything else gets the generic advice.
_WRITE_FIXES = {
    errno.ENOSPC: "free space on that disk or write elsewhere, then rerun; finished files and saved intermediates are kept",
    errno.EDQUOT: "free space within your disk quota or write elsewhere, then rerun",
    errno.EROFS: "write to a folder on a writable file system",
    errno.EACCES: "write to a folder you may write to",
    errno.EPERM: "write to a folder you may write to",
}


def exists_error(path: Path) -> OutputExistsError:
    return OutputExistsError(f"{path} exists", "pass --overwrite to replace it or choose another -o")


def write_error(path: Path, error: OSError) -> Show1Error:
    """A write the system refused, as one line naming the file and the cause."""
    cause = error.strerror or str(error) or type(error).__name__
    return Show1Error(f"cannot write {path}: {cause}", _WRITE_FIXES.get(error.errno, "check the folder and the disk, then rerun"))


@contextmanager
def atomic_output(path: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s content to (a file, or a folder the caller makes); on success it
    is flushed and moved into place.

    On any failure, Ctrl-C included, the temporary file is removed and the target is untouched; an OSError
    (disk full, read-only file system) becomes the `Show1Error` of `write_error`. Without `overwrite` the
    move is a hard link, which cannot replace a target that appeared in the meantime.
    """
    temp = path.with_name(f".{path.name}{PARTIAL}{secrets.token_hex(4)}")
    try:
        yield temp
        _fsync(temp)
        _move_into_place(temp, path, overwrite)
    except BaseException as error:
        try:
            shutil.rmtree(temp) if temp.is_dir() else temp.unlink()
        except FileNotFoundError:
            pass
        except OSError:  # pragma: no cover - nothing better to do while already failing
            logger.warning("could not remove temporary file %s", temp)
        if isinstance(error, OSError):
            raise write_error(path, error) from error
        raise
    _fsync_dir(path.parent)


def write_json(path: Path, data: dict[str, Any], *, overwrite: bool) -> Path:
    """Write `data` as indented UTF-8 JSON to `path` atomically."""
    with atomic_output(path, overwrite) as temp:
        temp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def read_json(path: Path, what: str, fix: str) -> Any:
    """The JSON value in `path`; an InputError naming `what` and `fix` when it is missing or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{what} {path} does not exist", fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read {what} {path}: {error}", fix) from None


def remove_stale_partials(path: Path) -> None:
    """Remove the temporary files a killed writer of `path` left behind (call only when nothing else writes `path`)."""
    for stale in path.parent.glob(f".{path.name}{PARTIAL}*"):
        logger.info("removing %s, left by an interrupted run", stale)
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    """Flush `path` to disk; a folder's files first, then the folder itself."""
    if path.is_dir():
        for child in path.iterdir():
            _fsync(child)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _move_into_place(temp: Path, path: Path, overwrite: bool) -> None:
    if overwrite and path.is_dir():  # a folder output (PNG frames) is replaced as a whole
        old = path.with_name(f".{path.name}.old-{secrets.token_hex(4)}")
        path.rename(old)
        os.replace(temp, path)
        shutil.rmtree(old)
        return
    if overwrite:
        os.replace(temp, path)
        return
    try:
        os.link(temp, path)
    except FileExistsError:
        raise exists_error(path) from None
    except OSError:
        # The file system has no hard links: check once more, then rename.
        if path.exists() or path.is_symlink():
            raise exists_error(path) from None
        os.replace(temp, path)
        return
    temp.unlink()
