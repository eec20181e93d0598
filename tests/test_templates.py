"""Conversation templates render exactly the reference formats."""
import pytest

from nextgpt.dialogs.templates import VICUNA_SYSTEM, get_template


def test_vicuna_v0_golden():
    text = get_template("vicuna_v0").render([("user", "hi"), ("assistant", "hello"), ("user", "draw")])
    assert text == "### Human: hi\n### Assistant: hello\n###Human: draw\n### Assistant:"
    with_system = get_template("vicuna_v0").render([("system", VICUNA_SYSTEM), ("user", "hi")])
    assert with_system == f"{VICUNA_SYSTEM}\n### Human: hi\n### Assistant:"


def test_vicuna_v1_golden():
    text = get_template("vicuna_v1").render([("system", "S."), ("user", "hi"), ("assistant", "yo"), ("user", "q")])
    assert text == "S. USER: hi ASSISTANT: yo</s>USER: q ASSISTANT:"


def test_segments_mark_assistant_text_only():
    segments = get_template("vicuna_v0").segments([("user", "a"), ("assistant", "b")], add_generation_prompt=False)
    assert [s.text for s in segments if s.is_assistant] == ["b\n###"]


def test_bad_roles_are_named():
    template = get_template("vicuna_v0")
    with pytest.raises(ValueError, match="unknown role 'bot'"):
        template.render([("bot", "x")])
    with pytest.raises(ValueError, match="only come first"):
        template.render([("user", "x"), ("system", "y")])
    with pytest.raises(KeyError, match="available"):
        get_template("alpaca")
