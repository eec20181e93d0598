"""Limits of the user surfaces (app and HTTP API), checked before any model work (reliability.md items 3, 5, 7, 8).

Media *content* limits (pixels, durations, formats) are the model's ``MediaLimits`` and are enforced by the
media loaders; these limits bound what a request may carry and how much work the server accepts at once.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for and how much work is accepted at once.

    Attributes:
        max_body_bytes: largest HTTP request body (JSON with data URLs, or an upload); larger → 413.
        max_media_items: media parts in one request, all messages together; more → 400.
        max_media_bytes: largest single media item after base64 decoding; larger → 413.
        max_messages: messages in one conversation; more → 400.
        max_new_tokens: ceiling on max_tokens (also bounded by the model's context); more → 400.
        max_stop_sequences: stop strings in one request; more → 400.
        max_concurrency: generations running at once (the pipeline runs one at a time, so 1).
        max_queue: requests allowed to wait for a slot; the next one gets 429 at once.
        deadline_s: wall-clock budget of one request, waiting included; over it the generation is cancelled.
        max_stored_files: generated/uploaded files remembered by id for download (oldest forgotten first).
    """

    max_body_bytes: int = 32 * 1024 * 1024
    max_media_items: int = 8
    max_media_bytes: int = 16 * 1024 * 1024
    max_messages: int = 64
    max_new_tokens: int = 512
    max_stop_sequences: int = 4
    max_concurrency: int = 1
    max_queue: int = 8
    deadline_s: float = 300.0
    max_stored_files: int = 256

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if value <= 0:
                raise ValueError(f"ServeLimits.{name} must be > 0, got {value!r}")
