"""Constrained decoding (nextgpt/constrained.py): a planned call's "path", and a file name the answer's text
writes, can only be one of the given files, whatever the model would have written."""
from __future__ import annotations

import pytest
import torch

from nextgpt.config import LLMConfig
from nextgpt.constrained import NameChoices, StringChoices, token_pieces
from nextgpt.generation import SignalGenerator
from nextgpt.llm import load_tokenizer
from nextgpt.options import GenerationOptions

PIECES = ['"', "inputs/", "cat", ".png", '"}', " ", ":", "x", "dog", "", "inputs/cat.png", '"', "}"]


def allowed(text: str, choices=("inputs/cat.png",)) -> set[str] | None:
    mask = StringChoices({"path": tuple(choices)}).allowed(text, PIECES, len(PIECES) + 2)
    return None if mask is None else {PIECES[i] for i in range(len(PIECES)) if mask[i]} | (
        {"<past the vocabulary>"} if mask[len(PIECES):].any() else set())


def test_an_open_value_may_only_continue_a_choice_or_close_it():
    assert allowed('{"name": "describe_image", "arguments": {"path": "') == {"inputs/", "inputs/cat.png"}
    assert allowed('{"path": "inputs/') == {"cat"}
    assert allowed('{"path": "inputs/cat') == {".png"}
    assert allowed('{"path": "inputs/cat.png') == {'"', '"}'}  # the value closes, and the call may close with it
    assert allowed('{"path": "inputs/', ("inputs/cat.png", "inputs/dog.png")) == {"cat", "dog"}
    assert allowed('{"path":') == {" ", '"'}  # only a string may follow the key's colon
    assert allowed('{"path"') - {":", " "} == {'"', "inputs/", "cat", ".png", '"}', "x", "dog", "inputs/cat.png", "}"}


def test_outside_a_constrained_value_nothing_is_held():
    assert allowed('{"path": "inputs/cat.png"}') is None  # closed
    assert allowed('{"to": "') is None  # another key
    assert allowed("Here is a picture of a cat: ") is None
    assert StringChoices({}).allowed('{"path": "', PIECES, len(PIECES)) is None


def test_choices_are_matched_in_their_json_escaped_form():
    pieces = ['a\\"b', "a", '\\"', "b", '"']
    mask = StringChoices({"path": ('a"b',)}).allowed('{"path": "', pieces, len(pieces))
    assert [pieces[i] for i in range(len(pieces)) if mask[i]] == ['a\\"b', "a"]


@pytest.mark.parametrize("bad", [{"path": []}, {"": ["x"]}, {"path": [3]}])
def test_bad_choices_are_refused_with_an_example(bad):
    with pytest.raises(ValueError, match="string_choices maps a JSON key"):
        GenerationOptions(string_choices=bad)
    assert GenerationOptions(string_choices={"path": "inputs/a.png"}).string_choices == {"path": ("inputs/a.png",)}


NAME_PIECES = ["inputs/", "inputs/qm", "inputs/qmt", "qm", "v", "t_7.png", "1.png", " shows", ".", "x",
               " inputs/qmt", "uts/q", "uts/z", "vt_7.png shows", " outputs/image-1.png", "", "docs/a", "/"]
NAMES = ("inputs/qmvt_7.png", "outputs/image-1.png")


def named(text: str, names=NAMES) -> set[str] | None:
    mask = NameChoices(names).allowed(text, NAME_PIECES, len(NAME_PIECES))
    return None if mask is None else {NAME_PIECES[i] for i in range(len(NAME_PIECES)) if mask[i]}


def test_a_name_the_text_starts_in_a_known_folder_is_held_to_the_names_there():
    every = set(NAME_PIECES)
    # at the start of a word, a piece may write a folder only on the way to a name that is there
    assert every - named("I looked at ") == {"inputs/qmt", " inputs/qmt"}
    assert every - named("I looked at inp") == {"uts/z", " inputs/qmt"}  # a folder the piece finishes counts too
    # inside a name: only what continues it
    assert named("I looked at inputs/") == {"qm"}
    assert named("I looked at inputs/qm") == {"v", "vt_7.png shows"}
    assert named('"outputs/image-') == {"1.png"}
    # a whole name may end (a space, a full stop, another name that is there) but not run on
    assert named("I looked at inputs/qmvt_7.png") == {" shows", ".", " outputs/image-1.png"}


def test_text_that_is_not_starting_a_name_in_a_known_folder_is_left_free():
    every = set(NAME_PIECES)
    for text in ("Here is a cat", "I looked at inputs/qmvt_7.png shows a", "see myinputs/", "see myinputs/q"):
        assert every - named(text) == {" inputs/qmt"}, text  # only a piece that itself starts a wrong name
    assert named("no folder here", ("cat.png",)) is None  # a name without a folder cannot be recognised
    assert named("anything", ()) is None


@pytest.mark.parametrize("bad", [[""], [3], ["inputs/a.png", None]])
def test_bad_name_choices_are_refused_with_an_example(bad):
    with pytest.raises(ValueError, match="name_choices lists the file names"):
        GenerationOptions(name_choices=bad)
    assert GenerationOptions(name_choices="inputs/a.png").name_choices == ("inputs/a.png",)


class Scripted(torch.nn.Module):
    """A tiny LLM that wants to write ``script`` token by token (a large bias on the next scripted token)."""

    def __init__(self, llm, script: list[int]) -> None:
        super().__init__()
        self.llm, self.script, self.step = llm, script, 0
        self.generation_config = llm.generation_config

    def get_input_embeddings(self):
        return self.llm.get_input_embeddings()

    def forward(self, **kwargs):
        out = self.llm(**kwargs)
        if self.step < len(self.script):
            out.logits[:, -1, self.script[self.step]] += 1e4
        self.step += 1
        return out


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(0)
    tokenizer = load_tokenizer(LLMConfig(tokenizer="builtin:tiny-llama"))
    config = AutoConfig.for_model("llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                  num_attention_heads=2, vocab_size=len(tokenizer), max_position_embeddings=256)
    return AutoModelForCausalLM.from_config(config).eval(), tokenizer


def run(tiny, wanted: str, options: GenerationOptions) -> str:
    llm, tokenizer = tiny
    script = tokenizer(wanted, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    generator = SignalGenerator(Scripted(llm, script), tokenizer, {}, never_generate=[], stop_strings=("###",))
    batch = tokenizer(["### Assistant:"], return_tensors="pt")
    embeds = llm.get_input_embeddings()(batch["input_ids"])
    [row] = generator.generate(embeds, batch["attention_mask"], [options])
    return row.text


def test_a_misspelt_path_is_decoded_as_the_file_that_exists(tiny):
    call = '<tool_call>{"name": "describe_image", "arguments": {"path": "inputs/qmt_7.png"}}</tool_call>'
    free = run(tiny, call, GenerationOptions(max_new_tokens=200))
    assert '"path": "inputs/qmt_7.png"' in free  # what the model wants, left alone
    for choices in (("inputs/qmvt_7.png",), ("inputs/qmvt_7.png", "outputs/image-1.png")):
        held = run(tiny, call, GenerationOptions(max_new_tokens=200, string_choices={"path": choices}))
        path = held.split('"path": "', 1)[1].split('"', 1)[0]
        assert path in choices, held
        assert held.startswith('<tool_call>{"name": "describe_image", "arguments": {"path": "')


def test_a_misspelt_name_in_the_answer_text_is_decoded_as_the_file_that_exists(tiny):
    answer = "I looked at inputs/qmt_7.png: it shows a blue square. See outputs/image-9.png too."
    free = run(tiny, answer, GenerationOptions(max_new_tokens=200))
    assert "inputs/qmt_7.png" in free and "outputs/image-9.png" in free  # what the model wants, left alone
    names = ("inputs/qmvt_7.png", "outputs/image-1.png")
    held = run(tiny, answer, GenerationOptions(max_new_tokens=200, name_choices=names))
    assert held.startswith("I looked at inputs/qmvt_7.png"), held
    assert "outputs/image-1.png" in held and "qmt_7" not in held and "image-9" not in held, held
    # the same names in a call's JSON value: both holds agree
    call = '{"path": "inputs/qmt_7.png"}'
    both = run(tiny, call, GenerationOptions(max_new_tokens=200, name_choices=names,
                                             string_choices={"path": names}))
    assert both.startswith('{"path": "inputs/qmvt_7.png"'), both


def test_token_pieces_keep_the_leading_space_of_a_word(tiny):
    _, tokenizer = tiny
    pieces = token_pieces(tokenizer)
    assert len(pieces) == len(tokenizer) and token_pieces(tokenizer) is pieces  # cached
    word = tokenizer(" png", add_special_tokens=False)["input_ids"]
    assert "".join(pieces[t] for t in word) == " png"
    assert not any("\u2581" in p for p in pieces[:300])
