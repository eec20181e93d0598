"""The agent's working folder: every path a tool reads or writes is resolved here and must stay inside it.

Paths from the model are hostile (reliability.md item 17): absolute paths, ``..`` components, URLs and symlinks
that lead outside the folder are refused with a ``WorkspaceError`` whose message says what is allowed, so the
agent can hand it back to the model as a tool error.
"""
from __future__ import annotations

import logging
import mimetypes
import re
import shutil
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from nextgpt.decoders.media_io import claim_path

from .specs import missing_file

logger = logging.getLogger(__name__)

_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # http:, file:, c: (drive letters) ...
_MIME_BY_SUFFIX = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
                   ".gif": "image/gif", ".bmp": "image/bmp", ".wav": "audio/wav", ".flac": "audio/flac",
                   ".mp3": "audio/mpeg", ".mp4": "video/mp4", ".webm": "video/webm"}


class WorkspaceError(ValueError):
    """A path that is not a file inside the working folder (shown to the model as a tool error)."""


@dataclass(frozen=True)
class MediaFile:
    """A file inside the workspace, as tools report it."""

    path: Path  # absolute, resolved
    relative: str  # what the model sees and passes back, e.g. "outputs/image-3.png"
    mime_type: str
    modality: str | None = None
    seed: int | None = None

    def as_artifact(self) -> dict:
        return {"path": str(self.path), "relative_path": self.relative, "mime_type": self.mime_type,
                "modality": self.modality, "seed": self.seed}


def mime_type(path: str | Path) -> str:
    """The MIME type of a media file by its suffix (``application/octet-stream`` when unknown)."""
    suffix = Path(path).suffix.lower()
    return _MIME_BY_SUFFIX.get(suffix) or mimetypes.guess_type(str(path))[0] or "application/octet-stream"


class Workspace:
    """A folder that jails tool file access.

    Args:
        root: the working folder (created if missing). Inputs live under ``inputs/``, generated media under
            ``outputs/``.
    """

    INPUTS = "inputs"
    OUTPUTS = "outputs"

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        (self.root / self.OUTPUTS).mkdir(parents=True, exist_ok=True)
        (self.root / self.INPUTS).mkdir(parents=True, exist_ok=True)

    @property
    def outputs(self) -> Path:
        return self.root / self.OUTPUTS

    def resolve(self, path: str, *, must_exist: bool = True) -> Path:
        """Resolve a model-supplied relative path to an absolute path inside the workspace.

        Raises:
            WorkspaceError: for URLs, absolute paths, ``..`` components, a path that leaves the folder through a
                symlink, or (``must_exist``) a missing file.
        """
        text = str(path).strip()
        if not text:
            raise WorkspaceError("the path is empty; give a file path relative to the working folder")
        if "\x00" in text:
            raise WorkspaceError("the path contains a NUL character")
        if _URL_RE.match(text):
            raise WorkspaceError(f"{text!r} looks like a URL or a drive path; only files inside the working folder "
                                 "can be used (the agent has no network access)")
        for flavour in (PurePosixPath(text), PureWindowsPath(text)):
            if flavour.is_absolute() or text.startswith(("/", "\\", "~")):
                raise WorkspaceError(f"{text!r} is an absolute path; give a path relative to the working folder, "
                                     f"e.g. {self.example()!r}")
            if ".." in flavour.parts:
                raise WorkspaceError(f"{text!r} contains '..'; paths must stay inside the working folder")
        candidate = self.root / text
        resolved = candidate.resolve()  # follows symlinks: a link pointing outside is caught below
        if not resolved.is_relative_to(self.root):
            raise WorkspaceError(f"{text!r} leads outside the working folder (through a symlink); refused")
        if must_exist and not resolved.is_file():
            raise WorkspaceError(missing_file(text, self.listing()))
        return resolved

    def relative(self, path: Path) -> str:
        return path.resolve().relative_to(self.root).as_posix()

    def describe_file(self, path: Path, modality: str | None = None, seed: int | None = None) -> MediaFile:
        path = path.resolve()
        return MediaFile(path, self.relative(path), mime_type(path), modality, seed)

    def import_file(self, source: str | Path) -> MediaFile:
        """Copy a user-supplied file (trusted: from the CLI or the app, never from the model) into ``inputs/``
        under its own name (``cat.png``), or ``cat-2.png``, ``cat-3.png``, ... when that name is taken: a short
        name the planner can copy into its calls, and no file is ever overwritten.

        Raises:
            FileNotFoundError: the file does not exist.
        """
        source = Path(source).expanduser()
        if not source.is_file():
            raise FileNotFoundError(f"attachment {str(source)!r} is not a file")
        target = claim_path(self.root / self.INPUTS, Path(source.name).stem, Path(source.name).suffix,
                            bare_first=True)
        with open(source, "rb") as reader, open(target, "wb") as writer:
            shutil.copyfileobj(reader, writer)
        logger.debug("imported %s as %s", source, target)
        return self.describe_file(target, modality=mime_type(target).split("/")[0])

    def files(self) -> list[str]:
        """Relative paths of every file in the workspace (symlinks left out), sorted."""
        return sorted(self.relative(p) for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())

    def listing(self, limit: int = 20) -> list[str]:
        """Relative paths of files in the workspace (at most ``limit``), to help the model pick a valid one."""
        files = self.files()
        return files[:limit] + ([f"... {len(files) - limit} more"] if len(files) > limit else [])

    def example(self) -> str:
        return f"{self.OUTPUTS}/image-1.png"
