"""Files written whole or not at all: what a crash, a full disk or a second writer at the same
moment leaves under a file's name is either nothing, the old file or the complete new one."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def fsync_folder(folder: Path) -> None:
    """Make a rename or a new file's name durable: the folder entry is data of its own."""
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """`write(temporary path)` writes a whole file beside `path`, which is then fsynced and
    renamed into place, the folder fsynced. The temporary name is the writer's own (it ends in
    ".partial"), so two processes building the same file never write into one another's."""
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f"{path.name}.", suffix=".partial",
                                     delete=False) as placeholder:
        partial = Path(placeholder.name)
    try:
        write(partial)
        with partial.open("rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)
