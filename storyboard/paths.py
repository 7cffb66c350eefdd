"""Where storyboard may write: inside the storyboard's folder tree, never through a link out.

A storyboard may come from someone else (a pull request), so nothing it says may make the
tool write outside the folder it lives in. Every file written at a place a storyboard (or
its folder's contents) decides goes through :func:`safe_output_path` first: the final cut
(``output.path``, checked at ``validate``, when the plan names the cut, and again right
before the stitcher writes), the lock beside the storyboard, and any future writer (review
pages, exports). Paths the user types on the command line (``-o/--output``) are the user's
own choice and are not confined; they still go through :func:`check_container`.

The storyboard's folder is where the storyboard file really is
(:func:`storyboard.loader.storyboard_path`): however its path was typed (``..``, a linked
folder on the way, any working folder), and when the file itself is a link (then it is the
link's target's folder). The rule, the same as for inputs:

* the path, taken relative to the storyboard's folder and normalised, stays inside it
  (no ``..`` escape, no absolute path elsewhere);
* no symbolic link on the way (an existing parent folder, or the file itself, even a
  dangling link) leads outside the folder's real location — links that stay inside are fine;
* it is not an existing folder, contains no NUL, and (for the cut) names a video container.

Writers keep writing through a temporary sibling and ``os.replace`` (see
:func:`storyboard.hashing.atomic_write`), which replaces a link at the final name instead of
writing through it; the check here is what keeps parent folders honest.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path
from typing import Literal

from storyboard.errors import StoryboardError
from storyboard.project import DEFAULT_STORE, find_project

__all__ = [
    "DEFAULT_STORE",
    "VIDEO_CONTAINERS",
    "UnsafePath",
    "check_container",
    "preview_path",
    "safe_output_path",
    "store_root",
]


def store_root(storyboard_path: Path) -> Path:
    """Where the store of a storyboard lives (validate reads media facts there, the cache
    keeps clips there): its project's store (:func:`storyboard.project.find_project`),
    ``$STORYBOARD_CACHE`` when set, else ``.storyboard/`` at the project root.

    Raises:
        ProjectConfigError: the project's ``storyboard.toml`` cannot be used.
    """
    return find_project(storyboard_path).store


# What the final cut may be called: the stitcher writes an MP4 stream, which both open.
VIDEO_CONTAINERS: tuple[str, ...] = (".mp4", ".mov")

Reason = Literal["nul", "outside", "link", "folder", "suffix"]


class UnsafePath(StoryboardError):
    """A path storyboard was asked to write is outside the storyboard's tree, or is no
    file of the right kind (exit 2: nothing was written).

    Attributes:
        path: the path as given (relative to ``root`` unless absolute).
        root: the storyboard's folder.
        reason: ``nul``, ``outside``, ``link`` (a symbolic link leads out), ``folder``
            (an existing folder has that name) or ``suffix`` (not an accepted file type).
        link: for ``link``, the link on the way that leads out.
        message: what is wrong, naming the path (also ``str(error)``).
    """

    exit_code = 2

    def __init__(
        self,
        path: str,
        root: Path,
        reason: Reason,
        message: str,
        *,
        hint: str | None = None,
        link: Path | None = None,
    ) -> None:
        super().__init__(message)
        self.path = path
        self.root = root
        self.reason: Reason = reason
        self.message = message
        self.link = link
        self._hint = hint

    def hint(self) -> str | None:
        return self._hint


def safe_output_path(
    root: Path,
    path: str | Path,
    *,
    suffixes: Collection[str] | None = None,
    what: str = "file",
    folder: bool = False,
) -> Path:
    """``path`` (relative to ``root``, the storyboard's folder) as an absolute path that is
    safe to write: inside ``root``'s tree, not through a link out, not a folder.

    Args:
        root: the storyboard's folder.
        path: where the storyboard says to write (relative, or absolute inside ``root``).
        suffixes: the accepted file name endings (lower case, e.g. :data:`VIDEO_CONTAINERS`);
            ``None`` accepts any name.
        what: what is written, for messages ("cut", "lock", "review page").
        folder: ``path`` is a folder the tool writes into (the store): it may exist.

    Returns:
        The normalised absolute path under ``root``'s real location (links inside the tree
        are kept as written).

    Raises:
        UnsafePath: the path escapes ``root``, a link on the way leads out of it, it names
            an existing folder, or its suffix is not one of ``suffixes``.
    """
    shown = str(path)
    # The folder's real location, like the loader's (storyboard.loader.storyboard_path):
    # a `..` after a linked folder in ``root`` goes where the system goes, not where the
    # letters suggest.
    root = Path(os.path.realpath(Path(root).absolute()))
    if "\0" in shown:
        raise UnsafePath(shown, root, "nul", f"the {what} path {shown!r} contains a NUL character")
    target = Path(os.path.normpath(root / path))
    if not target.is_relative_to(root):
        raise UnsafePath(
            shown,
            root,
            "outside",
            f"the {what} path {shown!r} is outside the storyboard's folder",
            hint="write it inside the storyboard's folder tree, e.g. renders/"
            + _suggested_name(shown, suffixes),
        )
    real_root = Path(os.path.realpath(root))
    if not Path(os.path.realpath(target)).is_relative_to(real_root):
        link = _link_out(root, target, real_root)
        through = f" through the link {link.relative_to(root).as_posix()!r}" if link else ""
        raise UnsafePath(
            shown,
            root,
            "link",
            f"the {what} path {shown!r} leads outside the storyboard's folder{through}",
            hint="remove the link or point it inside the folder tree",
            link=link,
        )
    if target.is_dir() and not folder:
        raise UnsafePath(shown, root, "folder", f"the {what} path {shown!r} is a folder")
    if suffixes is not None:
        check_container(target, suffixes, shown=shown, root=root, what=what)
    return target


def check_container(
    path: Path,
    suffixes: Collection[str] = VIDEO_CONTAINERS,
    *,
    shown: str | None = None,
    root: Path | None = None,
    what: str = "cut",
) -> None:
    """Raise :class:`UnsafePath` (reason ``suffix``) unless ``path`` ends in one of ``suffixes``.

    ``x.preview.mp4`` ends in ``.mp4``; ``.mp4`` alone (a hidden file with no stem) does not.
    """
    if path.suffix.lower() in suffixes:
        return
    shown = str(path) if shown is None else shown
    names = " or ".join(suffixes)
    first = next(iter(suffixes), "")
    stem = path.stem if path.suffix else path.name
    raise UnsafePath(
        shown,
        root if root is not None else path.parent,
        "suffix",
        f"the {what} path {shown!r} does not name a {names} file",
        hint=f"end it in {first}, e.g. {(stem.lstrip('.') or 'cut') + first}",
    )


def preview_path(path: Path) -> Path:
    """The preview (animatic) cut of the cut at ``path``: ``.preview`` before the suffix,
    so an animatic never overwrites a paid cut."""
    return path.with_name(f"{path.stem}.preview{path.suffix or '.mp4'}")


def _link_out(root: Path, target: Path, real_root: Path) -> Path | None:
    """The first symbolic link between ``root`` and ``target`` whose target is outside."""
    current = root
    for part in target.relative_to(root).parts:
        current = current / part
        if current.is_symlink() and not Path(os.path.realpath(current)).is_relative_to(real_root):
            return current
        if not current.exists() and not current.is_symlink():
            return None
    return None


def _suggested_name(shown: str, suffixes: Collection[str] | None) -> str:
    """The file name of ``shown`` with an accepted ending (for hints)."""
    name = Path(shown).name
    if name in ("", ".", ".."):
        name = "cut.mp4"
    if suffixes and Path(name).suffix.lower() not in suffixes:
        name = f"{Path(name).stem or 'cut'}{sorted(suffixes)[-1]}"
    return name
