"""One way to write a folder so that a kill at any moment leaves the old folder or the new one, never a mix."""

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def _aside(folder: Path, suffix: str) -> Path:
    return folder.with_name(f".{folder.name}.{suffix}")


def recover_folder(folder: str | os.PathLike) -> None:
    """Finish a replacement that a kill interrupted between its two renames (see `atomic_folder`)."""
    folder = Path(folder)
    old = _aside(folder, "old")
    if old.exists():
        if folder.exists():  # killed after the new folder was in place: the old one is garbage
            shutil.rmtree(old)
        else:  # killed between the renames: the old folder is the last complete one
            os.replace(old, folder)


def _link_copy(source: Path, target: Path) -> None:
    """A copy that costs nothing: hard links to the same files (checkpoints are hundreds of MB)."""
    if source.is_dir():
        shutil.copytree(source, target, copy_function=os.link, symlinks=True)
    else:
        os.link(source, target)


@contextmanager
def atomic_folder(
    folder: str | os.PathLike,
    *,
    keep_other_entries: bool = False,
    is_main_process: bool = True,
    wait_for_everyone: Callable[[], None] = lambda: None,
) -> Iterator[Path]:
    """
    Yield an empty staging folder beside `folder`; when the block completes, the staging folder
    replaces `folder` by two renames (`folder` aside, staging in its place), and the old one is
    deleted. A kill before the swap leaves `folder` as it was; a kill between the renames is undone
    by the next `atomic_folder` or `recover_folder` on the same path. If the block raises, the
    staging folder is removed and `folder` is untouched.

    Args:
        keep_other_entries: carry over the old folder's entries that the new one does not write
            (a run's checkpoints beside its final model), as hard links.
        is_main_process, wait_for_everyone: with several processes writing into the same staging
            folder (`accelerator.save_state`), only the main one renames, between barriers.
    """
    folder = Path(folder)
    staging = _aside(folder, "partial")
    if is_main_process:
        recover_folder(folder)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    wait_for_everyone()
    try:
        yield staging
    except BaseException:
        if is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        raise
    wait_for_everyone()
    if is_main_process:
        if keep_other_entries and folder.is_dir():
            for entry in folder.iterdir():
                if not entry.name.startswith(".") and not (staging / entry.name).exists():
                    _link_copy(entry, staging / entry.name)
        old = _aside(folder, "old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(staging, folder)
        shutil.rmtree(old, ignore_errors=True)
    wait_for_everyone()
