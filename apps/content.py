"""OpenAI-style content parts ↔ nextgpt messages and media (the media extension documented in docs/api.md).

Accepted input parts (in ``user``/``system`` messages):

- ``{"type": "text", "text": ...}``
- ``{"type": "image_url", "image_url": {"url": DATA_URL | FILE_ID}}``, likewise ``audio_url`` and ``video_url``
- ``{"type": "input_audio", "input_audio": {"data": BASE64, "format": "wav" | "flac" | "mp3" | "ogg"}}``
- ``{"type": "file", "file": {"file_id": FILE_ID} | {"file_data": DATA_URL, "filename": ...}}``

Remote URLs are never fetched. Every item is counted and size-checked *before* it is decoded, then written to
the request's private folder; its content (format, pixels, duration) is checked later by the model's media
loaders under ``MediaLimits``. Generated media go back as parts of the same shapes.
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from nextgpt.types import Media, MediaOutput, Message

from .errors import RequestError
from .files import FileStore, mime_type
from .limits import ServeLimits

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[^;,]*)*;base64,(?P<data>.*)$", re.S)
_URL_PARTS = {"image_url": "image", "audio_url": "audio", "video_url": "video"}
_AUDIO_FORMATS = {"wav", "flac", "mp3", "ogg"}
_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp", "image/gif": ".gif",
           "image/bmp": ".bmp", "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/flac": ".flac",
           "audio/mpeg": ".mp3", "audio/ogg": ".ogg", "video/mp4": ".mp4", "video/webm": ".webm",
           "video/quicktime": ".mov", "video/x-matroska": ".mkv", "video/x-msvideo": ".avi"}


@dataclass
class ParsedRequest:
    """Messages ready for the pipeline, with the media they reference written under ``folder``."""

    messages: list[Message]
    media_count: int = 0
    modalities: list[str] = field(default_factory=list)


class ContentParser:
    """Turns OpenAI ``messages`` into nextgpt ``Message`` objects, enforcing ``ServeLimits`` on the way.

    Args:
        limits: media count and size caps.
        files: the store that resolves uploaded file ids.
        input_modalities: the model's input modality names (others are refused by name).
    """

    def __init__(self, limits: ServeLimits, files: FileStore, input_modalities: Sequence[str]) -> None:
        self.limits = limits
        self.files = files
        self.input_modalities = list(input_modalities)

    def parse(self, messages: Sequence[Mapping[str, Any]], folder: Path) -> ParsedRequest:
        """Raises RequestError (400/413) naming the message, the part and the limit."""
        if not messages:
            raise RequestError("'messages' is empty; send at least one user message")
        if len(messages) > self.limits.max_messages:
            raise RequestError(f"{len(messages)} messages; the limit is {self.limits.max_messages} (max_messages)")
        result = ParsedRequest([])
        for number, message in enumerate(messages, start=1):
            role = message.get("role")
            if role not in ("system", "user", "assistant", "developer"):
                raise RequestError(f"messages[{number - 1}].role must be system, user or assistant, got {role!r}")
            content = message.get("content")
            texts: list[str] = []
            media: list[Media] = []
            for index, part in enumerate(_parts(content, number)):
                where = f"messages[{number - 1}].content[{index}]"
                kind = part.get("type")
                if kind == "text":
                    texts.append(str(part.get("text", "")))
                    continue
                if role == "assistant":
                    continue  # generated media of earlier turns are not fed back in
                result.media_count += 1
                if result.media_count > self.limits.max_media_items:
                    raise RequestError(f"{where}: more than {self.limits.max_media_items} media items in one request "
                                       "(max_media_items); send fewer")
                media.append(self._media(part, where, folder, result.media_count))
            result.messages.append(Message("system" if role == "developer" else role, "\n".join(texts), media))
            result.modalities.extend(m.modality for m in media)
        return result

    # ---- one media part ------------------------------------------------------------------------------
    def _media(self, part: Mapping[str, Any], where: str, folder: Path, number: int) -> Media:
        kind = part.get("type")
        if kind in _URL_PARTS:
            url = _field(part, kind, "url", where)
            modality = _URL_PARTS[kind]
            data, mime = self._resolve(url, where)
        elif kind == "input_audio":
            body = part.get("input_audio") or {}
            audio_format = str(body.get("format", "wav")).lower()
            if audio_format not in _AUDIO_FORMATS:
                raise RequestError(
                    f"{where}: input_audio.format {audio_format!r} is not one of {sorted(_AUDIO_FORMATS)}")
            modality, mime = "audio", f"audio/{'mpeg' if audio_format == 'mp3' else audio_format}"
            data = self._decode_base64(_field(part, kind, "data", where), where)
        elif kind == "file":
            body = part.get("file") or {}
            source = body.get("file_id") or body.get("file_data")
            if not source:
                raise RequestError(f"{where}: a 'file' part needs file.file_id or file.file_data")
            data, mime = self._resolve(str(source), where)
            modality = mime.split("/")[0]
        else:
            raise RequestError(f"{where}: unknown content part type {kind!r}; use text, image_url, audio_url, "
                               "video_url, input_audio or file")
        if modality not in self.input_modalities:
            raise RequestError(f"{where}: this model takes {self.input_modalities} inputs, not {modality!r}")
        path = folder / f"{modality}-{number}{_SUFFIX.get(mime, '')}"
        path.write_bytes(data)
        return Media(modality, str(path))

    def _resolve(self, url: str, where: str) -> tuple[bytes, str]:
        """Bytes and MIME type of a data URL or an uploaded file id."""
        match = _DATA_URL.match(url)
        if match:
            return self._decode_base64(match.group("data"), where), (match.group("mime") or "").lower()
        record = self.files.get(url)
        if record is not None and record.purpose == "upload":
            self._check_size(record.bytes, where)
            return record.path.read_bytes(), record.mime_type
        if url.startswith("file-"):
            raise RequestError(f"{where}: no uploaded file with id {url[:40]!r}; upload it with POST /v1/files", 404)
        raise RequestError(f"{where}: the url must be a base64 data URL (data:<mime>;base64,...) or the id of a file "
                           "uploaded with POST /v1/files; remote URLs are not fetched")

    def _decode_base64(self, text: str, where: str) -> bytes:
        self._check_size(len(text) * 3 // 4, where)  # refuse before decoding
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(f"{where}: the media data is not valid base64") from None

    def _check_size(self, size: int, where: str) -> None:
        if size > self.limits.max_media_bytes:
            raise RequestError(f"{where}: the media item is about {size / 1e6:.1f} MB; the limit is "
                               f"{self.limits.max_media_bytes / 1e6:.1f} MB (max_media_bytes)", 413)


def _parts(content: Any, number: int) -> list[Mapping[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content or ""}]
    if isinstance(content, list) and all(isinstance(p, Mapping) for p in content):
        return content
    raise RequestError(f"messages[{number - 1}].content must be a string or a list of content parts")


def _field(part: Mapping[str, Any], kind: str, name: str, where: str) -> str:
    body = part.get(kind)
    value = body.get(name) if isinstance(body, Mapping) else None
    if not isinstance(value, str) or not value:
        raise RequestError(f"{where}: {kind}.{name} is missing")
    return value


# ---- output ------------------------------------------------------------------------------------------------
def media_part(item: MediaOutput, files: FileStore, as_file: bool) -> dict[str, Any]:
    """One generated item as a content part: ``{"type": "image_url", "image_url": {"url": ...}, ...}``.

    ``as_file`` gives a download URL (``/v1/files/{id}/content``) instead of a base64 data URL.
    """
    if item.path is None:
        raise RuntimeError(f"generated {item.modality} was not saved to a file")
    record = files.add_output(item.path)
    if as_file:
        url = f"/v1/files/{record.id}/content"
    else:
        url = f"data:{record.mime_type};base64,{base64.b64encode(Path(item.path).read_bytes()).decode('ascii')}"
    kind = f"{item.modality}_url"
    return {"type": kind, kind: {"url": url}, "file_id": record.id, "mime_type": record.mime_type, "seed": item.seed}



__all__ = ["ContentParser", "ParsedRequest", "media_part", "mime_type"]
