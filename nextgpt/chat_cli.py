"""Terminal multi-turn chat: streamed text, attachments by path, decoder progress, saved media paths printed.

The same controls as the Gradio app where they make sense in a terminal: attach files, force/forbid an output
modality, seed, diffusion steps, guidance, temperature, max new tokens, retry, undo, reset. Ctrl+C while an
answer streams stops that answer (closing the stream cancels the generation); Ctrl+C at the prompt leaves.
"""
from __future__ import annotations

import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, TextIO

from .events import DecodeProgress, Finished, MediaReady, MediaStarted, TextDelta
from .types import Media, Message

HELP = """commands:
  /image PATH  /audio PATH  /video PATH   attach a file to your next message (any input modality works)
  /force MODALITY   /forbid MODALITY      for the following messages (/force none clears)
  /seed N  /steps N  /guidance X  /temperature X  /max-tokens N    generation settings (/steps 0: default)
  /settings   show them      /retry   answer the last message again
  /undo   forget the last exchange      /reset   start over      /quit   leave
Ctrl+C stops an answer while it streams."""

_NUMERIC = {"seed": ("seed", int), "steps": ("num_inference_steps", int), "guidance": ("guidance_scale", float),
            "temperature": ("temperature", float), "max-tokens": ("max_new_tokens", int)}


@dataclasses.dataclass
class ChatSession:
    """The state of one terminal chat: history, pending attachments and the current options."""

    pipe: Any
    options: Any
    out: TextIO
    history: list[Message] = dataclasses.field(default_factory=list)
    attached: list[Media] = dataclasses.field(default_factory=list)

    @property
    def inputs(self) -> list[str]:
        return [m.name for m in self.pipe.config.input_modalities]

    # ---- commands ------------------------------------------------------------------------------------
    def command(self, line: str) -> bool:
        """Run a /command; returns False when the chat should end."""
        try:
            parts = shlex.split(line)
        except ValueError as error:
            self.say(f"cannot read that command: {error}")
            return True
        name, args = parts[0][1:], parts[1:]
        if name in ("quit", "exit"):
            return False
        handler: Callable[[list[str]], None] | None = {
            "help": lambda _: self.say(HELP), "undo": self.undo, "reset": self.reset, "retry": self.retry,
            "force": self.force_or_forbid("force"), "forbid": self.force_or_forbid("forbid"),
            "settings": lambda _: self.say(self.describe_options()),
        }.get(name)
        if handler is not None:
            handler(args)
        elif name in self.inputs and args:
            self.attach(name, " ".join(args))
        elif name in _NUMERIC and len(args) == 1:
            self.set_number(name, args[0])
        else:
            self.say(f"unknown command {line!r}\n{HELP}")
        return True

    def attach(self, modality: str, path: str) -> None:
        file = Path(path).expanduser()
        if not file.is_file():
            self.say(f"no such file: {file}")
            return
        self.attached.append(Media(modality, str(file)))
        self.say(f"attached {modality}: {file}")

    def force_or_forbid(self, which: str) -> Callable[[list[str]], None]:
        def apply(args: list[str]) -> None:
            current = set(getattr(self.options, which))
            if args == ["none"]:
                current.clear()
            elif args:
                current |= set(args)
            try:
                self.replace_options(**{which: current})
            except ValueError as error:
                self.say(f"error: {error}")
                return
            self.say(f"{which}: {sorted(current) or 'none'}")
        return apply

    def set_number(self, name: str, text: str) -> None:
        field, kind = _NUMERIC[name]
        try:
            value = kind(text)
            if field == "num_inference_steps" and value == 0:
                value = None
            self.replace_options(**{field: value})
        except ValueError as error:
            self.say(f"error: /{name} {text}: {error}")
            return
        self.say(self.describe_options())

    def replace_options(self, **changes: Any) -> None:
        """New options (validated by GenerationOptions); raises ValueError and keeps the old ones."""
        options = dataclasses.replace(self.options, **changes)
        options.check_modalities([m.name for m in self.pipe.config.output_modalities])
        self.options = options

    def describe_options(self) -> str:
        o = self.options
        return (f"seed={o.seed} steps={o.num_inference_steps or 'default'} guidance={o.guidance_scale or 'default'} "
                f"temperature={o.temperature} max-tokens={o.max_new_tokens} force={sorted(o.force) or 'none'} "
                f"forbid={sorted(o.forbid) or 'none'}")

    def undo(self, _: list[str] | None = None) -> None:
        self.history = self.history[:-2]
        self.say("forgot the last exchange")

    def reset(self, _: list[str] | None = None) -> None:
        self.history, self.attached = [], []
        self.say("new conversation")

    def retry(self, _: list[str] | None = None) -> None:
        if len(self.history) < 2:
            self.say("nothing to retry")
            return
        message = self.history[-2]
        self.history = self.history[:-2]
        self.answer(message)

    # ---- answering -----------------------------------------------------------------------------------
    def answer(self, message: Message) -> None:
        """Stream one answer; on success the exchange joins the history."""
        self.out.write("bot> ")
        stream = self.pipe.stream([*self.history, message], self.options)
        try:
            for event in stream:
                self.show(event)
                if isinstance(event, Finished):
                    self.history += [message, Message("assistant", event.response.raw_text)]
        except KeyboardInterrupt:
            self.out.write("\n[stopped]")
        except (MemoryError, ValueError, KeyError, FileNotFoundError, RuntimeError) as error:
            self.out.write(f"\nerror: {_user_message(error)}")
        finally:
            stream.close()  # stops the generation if it is still running
        self.out.write("\n")
        self.out.flush()

    def show(self, event: Any) -> None:
        if isinstance(event, TextDelta):
            self.out.write(event.text)
        elif isinstance(event, MediaStarted):
            self.out.write(f" [making {event.modality}…]")
        elif isinstance(event, DecodeProgress) and event.step == event.total:
            self.out.write(f" [{event.modality}: {event.total} steps]")
        elif isinstance(event, MediaReady):
            where = event.media.path if event.media.path else "(not saved: set --output-dir)"
            self.out.write(f"\n  {event.media.modality}: {where}")
        self.out.flush()

    def say(self, text: str) -> None:
        self.out.write(text + "\n")


def _user_message(error: BaseException) -> str:
    """What the user can act on; errors that are not about the input or memory are re-raised."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":  # torch's is a RuntimeError
        return "out of memory; try fewer media, fewer diffusion steps or fewer max tokens"
    if isinstance(error, KeyError) and error.args:
        return str(error.args[0])
    if isinstance(error, (ValueError, KeyError, FileNotFoundError)):
        return str(error)
    raise error


def run_chat(pipe: Any, options: Any, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Read lines from ``stdin`` until EOF, /quit or Ctrl+C at the prompt; stream answers to ``stdout``."""
    session = ChatSession(pipe, options, stdout)
    session.say(f"nextgpt chat ({pipe.config.name}). /help for commands.")
    while True:
        stdout.write("you> ")
        stdout.flush()
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            return 0
        if not line:
            return 0
        line = line.strip()
        if not line:
            continue
        if line.startswith("/"):
            if not session.command(line):
                return 0
            continue
        message = Message("user", line, session.attached)
        session.attached = []
        session.answer(message)
