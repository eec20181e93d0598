"""Files known to the HTTP API by id: uploads (``POST /v1/files``) and generated media.

Downloads go through an id lookup, never through a path taken from a request (reliability.md item 4): a
client can only ever get back a file this store registered. The store forgets the oldest ids beyond its bound
and deletes the uploads it wrote.
"""
from __future__ import annotations

import logging
import mimetypes
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

_EXTRA_TYPES = {".wav": "audio/wav", ".flac": "audio/flac", ".mp4": "video/mp4", ".webm": "video/webm"}


def mime_type(path: str | Path) -> str:
    """MIME type from a file name ('application/octet-stream' when unknown)."""
    suffix = Path(path).suffix.lower()
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0] or "application/octet-stream"


@dataclass(frozen=True)
class StoredFile:
    id: str
    path: Path
    filename: str
    purpose: str  # "upload" or "output"
    bytes: int
    created_at: int

    @property
    def mime_type(self) -> str:
        return mime_type(self.filename)

    def as_openai(self) -> dict:
        """The file object of OpenAI's Files API."""
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose}


class FileStore:
    """A bounded id → file map. Uploads are written under ``upload_dir``; outputs stay where the pipeline put them.

    Args:
        upload_dir: a private folder for uploaded bytes (created if missing).
        max_files: ids remembered; the oldest are forgotten first (and their uploads deleted).
    """

    def __init__(self, upload_dir: str | Path, max_files: int = 256) -> None:
        self.upload_dir = Path(upload_dir)
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        self.max_files = max_files
        self._files: OrderedDict[str, StoredFile] = OrderedDict()
        self._lock = threading.Lock()

    def add_upload(self, data: bytes, filename: str) -> StoredFile:
        """Keep uploaded bytes; only the suffix of ``filename`` is used on disk."""
        file_id = _new_id()
        suffix = "".join(c for c in Path(filename).suffix.lower()[:8] if c.isalnum() or c == ".")
        path = self.upload_dir / f"{file_id}{suffix}"
        path.write_bytes(data)
        return self._add(StoredFile(file_id, path, Path(filename).name or file_id, "upload", len(data), _now()))

    def add_output(self, path: str | Path) -> StoredFile:
        """Register a file the pipeline generated."""
        path = Path(path)
        return self._add(StoredFile(_new_id(), path, path.name, "output", path.stat().st_size, _now()))

    def get(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def _add(self, record: StoredFile) -> StoredFile:
        with self._lock:
            self._files[record.id] = record
            while len(self._files) > self.max_files:
                _, old = self._files.popitem(last=False)
                if old.purpose == "upload":
                    old.path.unlink(missing_ok=True)
        return record


def _new_id() -> str:
    return f"file-{secrets.token_hex(12)}"


def _now() -> int:
    return int(time.time())
