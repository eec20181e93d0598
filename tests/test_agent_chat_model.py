"""``NextGPTChatModel`` as a LangChain chat model: LCEL, batch, stream, media blocks, bind_tools."""
from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.messages import AIMessageChunk, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.tools import tool

from nextgpt.apps.agent import NextGPTChatModel
from nextgpt.events import Finished, TextDelta
from nextgpt.options import GenerationOptions
from nextgpt.types import Response


@pytest.fixture(scope="module")
def model(tiny_pipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("chat-model")
    return NextGPTChatModel(pipeline=tiny_pipe, options=GenerationOptions(max_new_tokens=8, output_dir=out))


@tool
def generate_audio(description: str) -> str:
    """Make a sound."""
    return "ok"


def test_lcel_chain_batch_and_stream(model):
    prompt = ChatPromptTemplate.from_messages([("system", "be brief"), ("human", "{question}")])
    chain = prompt | model | StrOutputParser()
    answer = chain.invoke({"question": "what is a cat?"})
    assert isinstance(answer, str) and answer
    batch = chain.batch([{"question": "what is a cat?"}, {"question": "and a dog?"}])
    assert batch[0] == answer and len(batch) == 2  # greedy + seed 0: the same question gives the same answer
    chunks = list(chain.stream({"question": "what is a cat?"}))
    assert len(chunks) > 1 and "".join(chunks) == answer


def test_forced_image_comes_back_as_a_content_block(model):
    message = model.bind(force=["image"], num_inference_steps=1).invoke([HumanMessage("draw a red circle")])
    blocks = [b for b in message.content_blocks if b["type"] == "image"]
    assert len(blocks) == 1 and blocks[0]["mime_type"] == "image/png"
    path = Path(blocks[0]["extras"]["path"])
    assert path.is_file() and blocks[0]["url"] == path.as_uri()
    assert message.response_metadata["media"][0]["path"] == str(path)
    assert message.usage_metadata["output_tokens"] > 0


def test_streamed_media_arrives_as_a_block(model):
    chunks = list(model.bind(force=["audio"], num_inference_steps=1).stream("a beep"))
    total = sum(chunks[1:], chunks[0])
    assert isinstance(total, AIMessageChunk)
    assert [b["mime_type"] for b in total.content_blocks if b["type"] == "audio"] == ["audio/wav"]


def test_image_input_as_content_block(model, media_files):
    message = model.invoke([HumanMessage([{"type": "text", "text": "what is this?"},
                                          {"type": "image", "path": str(media_files["image"])}])])
    assert message.usage_metadata["input_tokens"] > 0


def test_unknown_call_arguments_are_refused(model):
    with pytest.raises(ValueError, match="unknown NextGPTChatModel arguments \\['colour'\\]"):
        model.invoke("hi", colour="red")


class ScriptedPipe:
    """A stand-in pipeline whose 'generated' text is fixed, to test tool-call parsing end to end."""

    def __init__(self, config, text: str) -> None:
        self.config, self.text, self.prompts = config, text, []

    def chat(self, messages, options):
        self.prompts.append(messages)
        return Response(text=self.text, raw_text=self.text)

    def stream(self, messages, options):
        self.prompts.append(messages)
        for index in range(0, len(self.text), 5):
            yield TextDelta(self.text[index:index + 5])
        yield Finished(Response(text=self.text, raw_text=self.text))


def test_bind_tools_puts_specs_in_the_prompt_and_parses_calls(tiny_pipe):
    text = 'I will make it. <tool_call>{"name": "generate_audio", "arguments": {"description": "rain"}}</tool_call>'
    pipe = ScriptedPipe(tiny_pipe.config, text)
    bound = NextGPTChatModel(pipeline=pipe).bind_tools([generate_audio])
    message = bound.invoke("make rain sounds")
    assert message.text == "I will make it."
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [("generate_audio", {"description": "rain"})]
    system = pipe.prompts[-1][0]
    assert system.role == "system" and "- generate_audio(description: string): Make a sound." in system.text
    chunks = list(bound.stream("make rain sounds"))
    assert all("<tool_call" not in str(c.content) for c in chunks)  # the call text is never streamed as text
    total = sum(chunks[1:], chunks[0])
    assert total.text == "I will make it."
    assert [(c["name"], c["args"]) for c in total.tool_calls] == [("generate_audio", {"description": "rain"})]
