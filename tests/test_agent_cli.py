"""``nextgpt agent "..."``: steps printed, limits and planner choices validated with teaching errors."""
from __future__ import annotations

import json

import pytest

from nextgpt.cli import main


@pytest.fixture
def tiny(monkeypatch, tiny_pipe):
    monkeypatch.setattr("nextgpt.commands.agent.load_pipeline", lambda args: tiny_pipe)


def test_agent_command_prints_json_steps(tiny, tmp_path, media_files, capsys):
    code = main(["agent", "describe this picture", "--image", str(media_files["image"]), "--workdir",
                 str(tmp_path / "work"), "--max-steps", "1", "--json"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["kind"] == "notice" and lines[0]["files"][0]["mime_type"] == "image/png"
    assert (tmp_path / "work" / lines[0]["files"][0]["relative_path"]).is_file()
    assert lines[-1]["kind"] in ("answer", "stopped") and code == (3 if lines[-1]["kind"] == "stopped" else 0)


@pytest.mark.parametrize("argv, message", [
    (["--planner", "langchain"], "--planner langchain needs --planner-model"),
    (["--max-steps", "0"], "max_steps"),
    (["--timeout", "-1"], "timeout_s"),
])
def test_bad_options_are_explained(tiny, tmp_path, capsys, argv, message):
    assert main(["agent", "hi", "--workdir", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
