"""Gradio 6 multimodal chat: ``build_demo(pipeline)`` makes the UI, ``launch_demo`` serves it with safe defaults.

Text, images, audio and video go in; the answer streams token by token, decoder progress shows while media are
generated, and generated images, sounds and videos appear inline and in a download list. Generation controls
(seed, diffusion steps, guidance, max new tokens, temperature, force/forbid a modality) sit under the chat;
retry, undo and clear come with the chat box. An "agent" tab runs the LangChain tool-using agent
(``nextgpt.apps.agent``) and shows each tool call, result and file as it happens. Only the public ``NextGPT`` API
is used.
"""
from __future__ import annotations

import os

# Before gradio is imported: no analytics or hub calls from background threads.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import logging  # noqa: E402
import re  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Iterator, Sequence  # noqa: E402

import gradio as gr  # noqa: E402

from nextgpt.events import DecodeProgress, Finished, MediaReady, MediaStarted, TextDelta  # noqa: E402
from nextgpt.options import GenerationOptions  # noqa: E402
from nextgpt.types import Media, MediaOutput, Message  # noqa: E402

from .errors import public_error  # noqa: E402
from .files import mime_type  # noqa: E402
from .limits import ServeLimits  # noqa: E402
from .runner import Runner  # noqa: E402

logger = logging.getLogger(__name__)

EXAMPLE_PROMPTS = [
    ("Draw a red circle.", ["image"]),
    ("Make a short low beep.", ["audio"]),
    ("Show a ball rolling left, with a sound and a picture of it.", ["image", "audio", "video"]),
]


def build_demo(pipeline: Any, *, output_dir: str | Path = "nextgpt-outputs", limits: ServeLimits = ServeLimits(),
               title: str = "NExT-GPT chat", agent: bool = True, agent_planner: Any = None) -> gr.Blocks:
    """The chat UI for ``pipeline`` (a loaded ``NextGPT``).

    Args:
        output_dir: where generated media are written; the only folder the server may serve files from.
        limits: deadline and new-token cap (queue size and upload cap are applied by ``launch_demo``).
        agent: add the "agent" tab (needs the ``agent`` extra; left out with a log line when not installed).
        agent_planner: a LangChain chat model that plans the agent's tool calls (None: NExT-GPT plans).
    """
    output_dir = Path(output_dir).resolve()
    runner = Runner(pipeline, max_concurrency=limits.max_concurrency, max_queue=limits.max_queue,
                    deadline_s=limits.deadline_s)
    inputs = [m.name for m in pipeline.config.input_modalities]
    outputs = [m.name for m in pipeline.config.output_modalities]

    def respond(message: dict, history: list, seed: float, steps: float, guidance: float, max_new_tokens: float,
                temperature: float, force: list[str], forbid: list[str]) -> Iterator[tuple[list, list[str]]]:
        try:
            conversation = [*_history(history, inputs), _user_message(message, inputs)]
            options = GenerationOptions(
                seed=int(seed), num_inference_steps=int(steps) or None, guidance_scale=float(guidance) or None,
                max_new_tokens=min(int(max_new_tokens), limits.max_new_tokens), temperature=float(temperature),
                force=set(force or []), forbid=set(forbid or []), output_dir=output_dir)
            yield from _answer(runner.stream(conversation, options))
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001 - the user sees a short message, the log has the details
            raise gr.Error(public_error(error).message, print_exception=False) from None

    description, examples = _introduction(pipeline, outputs)
    seed = gr.Number(0, precision=0, label="seed", minimum=0)
    steps = gr.Slider(0, 100, value=0, step=1, label="diffusion steps (0: decoder default)")
    guidance = gr.Slider(0, 20, value=0, step=0.5, label="guidance scale (0: decoder default)")
    max_tokens = gr.Slider(1, limits.max_new_tokens, value=min(64, limits.max_new_tokens), step=1,
                           label="max new tokens")
    temperature = gr.Slider(0, 2, value=0, step=0.05, label="temperature (0: greedy)")
    force = gr.CheckboxGroup(outputs, label="force an output modality", elem_id="force")
    forbid = gr.CheckboxGroup(outputs, label="forbid an output modality", elem_id="forbid")
    downloads = gr.File(label="generated files", file_count="multiple", interactive=False, render=False,
                        elem_id="downloads")
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        with gr.Tabs():
            with gr.Tab("chat", id="chat"):
                gr.ChatInterface(
                    respond,
                    multimodal=True,
                    chatbot=gr.Chatbot(label="chat", height=480, allow_file_downloads=True, elem_id="chatbot"),
                    textbox=gr.MultimodalTextbox(placeholder="Type a message; attach images, audio or video",
                                                 file_types=["image", "audio", "video"], file_count="multiple",
                                                 sources=["upload"], elem_id="chat-input"),
                    additional_inputs=[seed, steps, guidance, max_tokens, temperature, force, forbid],
                    additional_inputs_accordion="generation settings",
                    additional_outputs=[downloads],
                    examples=examples,
                    cache_examples=False,
                    title=title,
                    description=description,
                    concurrency_limit=1,
                    api_name="chat",
                    save_history=False,
                    flagging_mode="never",
                )
                downloads.render()
            if agent and _agent_available():
                with gr.Tab("agent", id="agent"):
                    _agent_tab(pipeline, output_dir, limits, agent_planner)
    return demo


TINY_DESCRIPTION = ("Random weights on the built-in `tiny` preset: the text is gibberish and media appear when "
                    "forced; load real weights with `--preset` or `--model`.")


def _introduction(pipeline: Any, outputs: list[str]) -> tuple[str, list[list]]:
    """The description and example rows: from the checkpoint's card (``NextGPT.card``) when it has one, else the
    random-preset defaults (forced outputs, 2 diffusion steps, so the examples finish in seconds)."""
    card = getattr(pipeline, "card", None) or {}
    if card.get("examples"):
        rows = [[{"text": e["text"], "files": []}, 0, 0, 0, 64, 0, [m for m in e.get("force", []) if m in outputs], []]
                for e in card["examples"] if isinstance(e, dict) and isinstance(e.get("text"), str)]
        return str(card.get("description", "")), rows
    rows = [[{"text": text, "files": []}, 0, 2, 0, 24, 0, wanted, []]
            for text, wanted in EXAMPLE_PROMPTS if set(wanted) <= set(outputs)]
    return str(card.get("description", TINY_DESCRIPTION)), rows


def _agent_available() -> bool:
    try:
        import nextgpt.apps.agent  # noqa: F401
    except ImportError as error:
        logger.info("agent tab left out (%s); install the 'agent' extra", error)
        return False
    return True


def _agent_tab(pipeline: Any, output_dir: Path, limits: ServeLimits, planner: Any) -> None:
    """A chat whose answers are agent runs: every tool call, result and file appears as a step.

    Each browser session gets its own working folder under ``output_dir/agent/`` (inside the only served
    folder); the run is bounded by the agent's step limit and the app's deadline.
    """
    from nextgpt.apps.agent import AgentLimits, NextGPTAgent, append_step

    def run_agent(message: dict, history: list, request: gr.Request) -> Iterator[list]:
        workdir = output_dir / "agent" / _session_folder(request)
        try:
            runner = NextGPTAgent(pipeline, workdir, planner=planner,
                                  limits=AgentLimits(timeout_s=limits.deadline_s))
            files = [f if isinstance(f, str) else f.get("path") for f in (message.get("files") or [])]
            shown: list[dict] = []
            for step in runner.iter_steps(message.get("text") or "", attachments=[f for f in files if f]):
                yield append_step(shown, step)
        except gr.Error:
            raise
        except Exception as error:  # noqa: BLE001 - a short message for the user, details in the log
            raise gr.Error(public_error(error).message, print_exception=False) from None

    gr.ChatInterface(
        run_agent,
        multimodal=True,
        chatbot=gr.Chatbot(label="agent", height=480, elem_id="agent-chatbot"),
        textbox=gr.MultimodalTextbox(placeholder="Ask for something that takes several steps; attach files",
                                     file_types=["image", "audio", "video"], file_count="multiple",
                                     sources=["upload"], elem_id="agent-input"),
        description="The agent plans tool calls (describe, generate, convert media) and shows each step.",
        concurrency_limit=1,
        api_name="agent",
        save_history=False,
        flagging_mode="never",
    )


def _session_folder(request: gr.Request | None) -> str:
    session = getattr(request, "session_hash", None) or ""
    return session if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", session) else uuid.uuid4().hex


def launch_demo(demo: gr.Blocks, *, output_dir: str | Path, limits: ServeLimits = ServeLimits(),
                host: str = "127.0.0.1", port: int | None = None, share: bool = False,
                auth: tuple[str, str] | None = None, block: bool = True) -> str:
    """Serve ``demo`` with the safe defaults: loopback, no share, only ``output_dir`` served, upload cap, bounded
    queue with one generation at a time. Returns the local URL (with ``block=False`` the server keeps running
    until ``demo.close()``).

    Raises:
        ValueError: sharing or a non-loopback host without ``auth``.
    """
    from .exposure import check_exposure

    check_exposure(host, share=share, authenticated=auth is not None, how_to_authenticate="--auth USER:PASSWORD")
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    demo.queue(max_size=limits.max_queue, default_concurrency_limit=1)
    demo.launch(server_name=host, server_port=port, share=share, auth=auth, allowed_paths=[str(output_dir)],
                max_file_size=limits.max_media_bytes, prevent_thread_lock=not block, show_error=False, quiet=True,
                enable_monitoring=False, ssr_mode=False, pwa=False, mcp_server=False, inbrowser=False)
    return demo.local_url


# ---- conversions -------------------------------------------------------------------------------------------
def _modality_of(path: str, inputs: Sequence[str]) -> str:
    modality = mime_type(path).split("/")[0]
    if modality not in inputs:
        raise gr.Error(f"{Path(path).name}: unsupported file type; attach {', '.join(inputs)} files",
                       print_exception=False)
    return modality


def _user_message(message: dict | str, inputs: Sequence[str]) -> Message:
    if isinstance(message, str):
        return Message("user", message)
    files = [f if isinstance(f, str) else f.get("path") for f in message.get("files") or []]
    media = [Media(_modality_of(path, inputs), path) for path in files if path]
    return Message("user", message.get("text") or "", media)


def _history(history: list, inputs: Sequence[str]) -> list[Message]:
    """Gradio's messages-format history → Messages (user files are attached again; assistant media are not)."""
    messages: list[Message] = []
    for item in history or []:
        role = item.get("role") if isinstance(item, dict) else None
        if role not in ("user", "assistant"):
            continue
        texts, media = [], []
        content = item.get("content")
        for part in content if isinstance(content, list) else [content]:
            path = _file_path(part)
            if path is None:
                text = part.get("text", "") if isinstance(part, dict) else str(part or "")
                texts.append(text)
            elif role == "user":
                media.append(Media(_modality_of(path, inputs), path))
        if messages and messages[-1].role == role:  # Gradio splits a turn with files into several messages
            messages[-1].text = "\n".join(t for t in (messages[-1].text, *texts) if t)
            messages[-1].media.extend(media)
        else:
            messages.append(Message(role, "\n".join(t for t in texts if t), media))
    return messages


def _file_path(part: Any) -> str | None:
    if isinstance(part, dict):
        if part.get("type") == "file" or "file" in part:
            file = part.get("file") or {}
            return file.get("path") if isinstance(file, dict) else None
        return part.get("path")
    if isinstance(part, (tuple, list)) and part:
        return str(part[0])
    return getattr(part, "path", None) if not isinstance(part, str) else None


def _answer(events: Iterator[Any]) -> Iterator[tuple[list, list[str]]]:
    """Events → successive chat contents (text, a progress line, then the media) and the download list."""
    text, status = "", ""
    media: list[MediaOutput] = []
    for event in events:
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, MediaStarted):
            status = f"⏳ generating {event.modality}…"
        elif isinstance(event, DecodeProgress):
            status = f"⏳ generating {event.modality}: step {event.step}/{event.total}"
        elif isinstance(event, MediaReady):
            media.append(event.media)
            status = ""
        elif isinstance(event, Finished):
            text, media, status = event.response.text, list(event.response.media), ""
        yield _contents(text, status, media), [str(m.path) for m in media if m.path]


def _contents(text: str, status: str, media: list[MediaOutput]) -> list:
    """The answer as chat messages: the text (and progress line), then one message per generated file, which
    the chatbot renders by MIME type (image, audio player, video player)."""
    body = "\n\n".join(part for part in (text.strip() or "…", status) if part)
    files = [{"role": "assistant", "content": {"path": str(m.path), "mime_type": mime_type(m.path)}}
             for m in media if m.path]
    return [body, *files]
