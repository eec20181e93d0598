"""The agent's working-folder jail (reliability.md item 17): hostile paths are refused with teaching errors."""
from __future__ import annotations

import os

import pytest

from nextgpt.apps.agent.workspace import Workspace, WorkspaceError, mime_type


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path / "work")
    (ws.root / "inputs" / "cat.png").write_bytes(b"png")
    return ws


@pytest.mark.parametrize("path, reason", [
    ("../secret.txt", "'..'"),
    ("inputs/../../secret.txt", "'..'"),
    ("..\\secret.txt", "'..'"),
    ("/etc/passwd", "absolute"),
    ("\\\\server\\share\\x.png", "absolute"),
    ("~/x.png", "absolute"),
    ("http://example.com/cat.png", "URL"),
    ("file:///etc/passwd", "URL"),
    ("C:\\Windows\\win.ini", "URL or a drive"),
    ("", "empty"),
    ("inputs/cat.png\x00.txt", "NUL"),
])
def test_hostile_paths_are_refused(workspace, path, reason):
    with pytest.raises(WorkspaceError, match=reason):
        workspace.resolve(path)


def test_symlink_out_of_the_folder_is_refused(workspace, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, workspace.root / "inputs" / "link.png")
    os.symlink(tmp_path, workspace.root / "up")
    with pytest.raises(WorkspaceError, match="outside the working folder"):
        workspace.resolve("inputs/link.png")
    with pytest.raises(WorkspaceError, match="outside the working folder"):
        workspace.resolve("up/secret.txt")


def test_missing_file_error_lists_the_files(workspace):
    with pytest.raises(WorkspaceError, match=r"no file 'inputs/dog.png'.*inputs/cat.png"):
        workspace.resolve("inputs/dog.png")


def test_valid_paths_resolve_inside(workspace):
    assert workspace.resolve("inputs/cat.png") == workspace.root / "inputs" / "cat.png"
    assert workspace.resolve("./inputs/cat.png") == workspace.root / "inputs" / "cat.png"
    assert workspace.resolve("outputs/new.png", must_exist=False).parent == workspace.outputs


def test_import_copies_user_files_into_inputs(workspace, tmp_path):
    source = tmp_path / "song.wav"
    source.write_bytes(b"RIFF")
    file = workspace.import_file(source)
    assert file.path.parent == workspace.root / "inputs" and file.path.read_bytes() == b"RIFF"
    assert file.relative.startswith("inputs/") and file.mime_type == "audio/wav" and file.modality == "audio"
    assert workspace.resolve(file.relative) == file.path
    assert file.relative == "inputs/song.wav"  # the user's own name: short, for the planner to copy
    source.write_bytes(b"RIFF2")  # the same name again never overwrites the first copy
    assert [workspace.import_file(source).relative for _ in range(2)] == ["inputs/song-2.wav", "inputs/song-3.wav"]
    assert file.path.read_bytes() == b"RIFF" and (workspace.root / "inputs" / "song-3.wav").read_bytes() == b"RIFF2"
    with pytest.raises(FileNotFoundError, match="not a file"):
        workspace.import_file(tmp_path / "missing.png")


@pytest.mark.parametrize("name, expected", [("a.png", "image/png"), ("a.JPG", "image/jpeg"), ("a.wav", "audio/wav"),
                                            ("a.mp4", "video/mp4"), ("a.unknownext", "application/octet-stream")])
def test_mime_types(name, expected):
    assert mime_type(name) == expected
