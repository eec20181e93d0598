"""The app's agent tab: a scripted planner's tool steps and generated file show up in the chat, served from
the session's working folder inside the output folder."""
from __future__ import annotations

import httpx
import pytest
from langchain_core.messages import AIMessage
from test_agent_run import call, planner

from nextgpt.apps.gradio_app import build_demo, launch_demo
from nextgpt.apps.limits import ServeLimits
from nextgpt.apps.testing import FakePipeline, free_port

pytestmark = pytest.mark.timeout(300)


def test_agent_tab_shows_each_step_and_serves_the_files(tiny_pipe, tmp_path):
    from gradio_client import Client

    script = planner(call("generate_image", {"description": "a red circle", "seed": 3, "steps": 1}, 1),
                     AIMessage("Here is your red circle."))
    output_dir = tmp_path / "outputs"
    limits = ServeLimits(max_queue=2, deadline_s=120)
    demo = build_demo(tiny_pipe, output_dir=output_dir, limits=limits, agent_planner=script)
    url = launch_demo(demo, output_dir=output_dir, limits=limits, port=free_port(), block=False).rstrip("/")
    try:
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        messages = client.predict({"text": "draw a red circle", "files": []}, api_name="/agent")
        titles = [((m.get("metadata") or {}).get("title") or "") for m in messages]
        assert any("generate_image" in t and "🛠" in t for t in titles)
        assert any(t.startswith("✓ generate_image") for t in titles)
        assert any("red circle" in str(m.get("content")) and not m.get("metadata") for m in messages)
        files = [m["content"] for m in messages if isinstance(m.get("content"), dict)]
        paths = [f.get("path") or (f.get("file") or {}).get("path") for f in files]
        assert paths and all(str(output_dir.resolve() / "agent") in p for p in paths)
        response = httpx.get(f"{url}/gradio_api/file={paths[0]}", timeout=30)
        assert response.status_code == 200 and response.content[:4] == b"\x89PNG"
    finally:
        demo.close()


def test_agent_tab_can_be_left_out(tmp_path):
    with_agent = build_demo(FakePipeline(), output_dir=tmp_path)
    without = build_demo(FakePipeline(), output_dir=tmp_path, agent=False)
    names = lambda demo: {fn.api_name for fn in demo.fns.values()}  # noqa: E731
    assert "agent" in names(with_agent) and "agent" not in names(without)
