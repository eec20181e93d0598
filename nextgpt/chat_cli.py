"""Terminal multi-turn chat: streamed text, attachments by path, saved media paths printed."""
from __future__ import annotations

import shlex
import sys
from typing import Any, TextIO

from .events import Finished, MediaReady, MediaStarted, TextDelta
from .types import Media, Message

HELP = """commands:
  /image PATH  /audio PATH  /video PATH   attach a file to your next message
  /force MODALITY   /forbid MODALITY      for the next message (/force none clears)
  /undo   forget the last exchange      /reset   start over      /quit   leave"""


def run_chat(pipe: Any, options: Any, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Read lines from ``stdin`` until EOF or /quit; stream answers to ``stdout``."""
    history: list[Message] = []
    attached: list[Media] = []
    modalities = [m.name for m in pipe.config.modalities]
    force: set[str] = set(options.force)
    forbid: set[str] = set(options.forbid)
    stdout.write(f"nextgpt chat ({pipe.config.name}). /help for commands.\n")
    while True:
        stdout.write("you> ")
        stdout.flush()
        line = stdin.readline()
        if not line:
            return 0
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            parts = shlex.split(line)
            name, rest = parts[0][1:], parts[1:]
            if name in ("quit", "exit"):
                return 0
            if name == "help":
                stdout.write(HELP + "\n")
            elif name in modalities and rest:
                attached.append(Media(name, rest[0]))
                stdout.write(f"attached {name}: {rest[0]}\n")
            elif name in ("force", "forbid") and rest:
                target = force if name == "force" else forbid
                if rest[0] == "none":
                    target.clear()
                else:
                    target.add(rest[0])
                stdout.write(f"{name}: {sorted(target) or 'none'}\n")
            elif name == "undo":
                history = history[:-2]
                stdout.write("forgot the last exchange\n")
            elif name == "reset":
                history, attached = [], []
                stdout.write("new conversation\n")
            else:
                stdout.write(f"unknown command {line!r}\n{HELP}\n")
            continue
        message = Message("user", line, attached)
        attached = []
        run_options = type(options)(**{**options.__dict__, "force": set(force), "forbid": set(forbid)})
        stdout.write("bot> ")
        try:
            for event in pipe.stream([*history, message], run_options):
                if isinstance(event, TextDelta):
                    stdout.write(event.text)
                elif isinstance(event, MediaStarted):
                    stdout.write(f" [making {event.modality}…]")
                elif isinstance(event, MediaReady):
                    stdout.write(f"\n  {event.media.modality}: {event.media.path}")
                elif isinstance(event, Finished):
                    history += [message, Message("assistant", event.response.raw_text)]
                stdout.flush()
        except (ValueError, KeyError, FileNotFoundError) as error:
            stdout.write(f"\nerror: {error}")
        stdout.write("\n")
