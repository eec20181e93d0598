"""``nextgpt data validate|stats``: output, exit codes, and actions registered from other modules."""
import json

import pytest

from nextgpt import cli
from nextgpt.commands import data as data_commands


def main(argv):
    """``nextgpt.cli.main`` with only the ``data`` command registered (build_parser consumes the registrations,
    so each call registers it again on a private list)."""
    cli._import_command_modules()
    builders = []
    original = cli.PARSER_BUILDERS
    cli.PARSER_BUILDERS = builders
    try:
        cli.command("data", "dataset tools")(data_commands._data)
        return cli.main(argv)
    finally:
        cli.PARSER_BUILDERS = original


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "1.jpg").write_bytes(b"x")
    good = tmp_path / "good.json"
    good.write_text(json.dumps([{"caption": "a dog", "id": "1", "image_name": "1.jpg"}], indent=2))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"caption": "a cat", "id": "2", "image_name": "2.jpg"}\n'
                   '{"id": "3", "image_name": "1.jpg"}\n'
                   '{"caption": "  ", "id": "4", "image_name": "1.jpg"}\n')
    return good, bad


def test_validate_ok_exits_0(dataset, capsys):
    good, _ = dataset
    assert main(["data", "validate", str(good)]) == 0
    assert "ok: 1 file(s), no problems" in capsys.readouterr().out


def test_validate_lists_every_problem_and_exits_1(dataset, capsys, tmp_path):
    good, bad = dataset
    code = main(["data", "validate", str(good), str(bad), "--root", str(tmp_path), "--task", "generation"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out == [
        f"{bad}:1:image_name: missing media file {tmp_path / '2.jpg'}",
        f"{bad}:2:caption: missing field",
        f"{bad}:3:caption: empty caption of the image output",
        "3 problem(s) in 2 file(s)",
    ]


def test_validate_no_file_check_and_format_override(dataset, capsys):
    _, bad = dataset
    assert main(["data", "validate", str(bad), "--no-file-check", "--format", "pairs"]) == 1
    assert "missing media file" not in capsys.readouterr().out
    with pytest.raises(SystemExit):  # argparse rejects an unknown format: exit 2 with the choices
        main(["data", "validate", str(bad), "--format", "csv"])


def test_stats_counts_and_problems(dataset, capsys):
    good, bad = dataset
    assert main(["data", "stats", str(good), str(bad), "--task", "generation"]) == 0
    out = capsys.readouterr().out
    assert "dialogues: 3" in out and "formats: pairs=3" in out and "output items: image=3" in out
    assert "output caption words: n=3 min=0 mean=1.3 max=2" in out
    assert "problems: 3" in out and f"{bad}:2:caption: missing field" in out


def test_other_modules_can_register_data_actions(capsys, monkeypatch):
    monkeypatch.setattr(data_commands, "DATA_ACTIONS", dict(data_commands.DATA_ACTIONS))

    @data_commands.data_action("echo", "print the files")
    def _echo(parser):
        data_commands.add_data_options(parser)
        return lambda args: print(" ".join(args.files)) or 0

    assert main(["data", "echo", "a.json", "b.json"]) == 0
    assert capsys.readouterr().out.strip() == "a.json b.json"
    with pytest.raises(ValueError, match="registered twice"):
        data_commands.data_action("echo", "again")(_echo)


def test_validate_with_a_preset_checks_tokenisation(dataset, capsys):
    good, _ = dataset
    assert main(["data", "validate", str(good), "--preset", "tiny", "--max-length", "4"]) == 1
    out = capsys.readouterr().out
    assert f"{good}:2:turns: " in out and "> max_length=4" in out
    assert main(["data", "validate", str(good), "--preset", "tiny", "--max-length", "512"]) == 0
    assert main(["data", "validate", str(good), "--max-length", "512"]) == 2  # needs a tokenizer
    assert "--max-length needs --preset or --model" in capsys.readouterr().err


def test_convert_writes_our_schema_or_nothing(dataset, capsys, tmp_path):
    from nextgpt.dialogs.loaders import load_dialogues

    good, bad = dataset
    out = tmp_path / "out" / "dialogues.jsonl"
    assert main(["data", "convert", str(good), "--task", "generation", "--out", str(out)]) == 0
    (dialogue,) = load_dialogues([out])
    assert dialogue.turns[1].outputs[0].path == str(tmp_path / "1.jpg") and dialogue.source == f"{out}:1"
    assert main(["data", "convert", str(bad), "--out", str(tmp_path / "no.jsonl")]) == 1
    assert "nothing written" in capsys.readouterr().out and not (tmp_path / "no.jsonl").exists()
