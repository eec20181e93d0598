"""CPU thread limits reach numpy's BLAS pool, not only torch's (nextgpt/threads.py)."""
import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from nextgpt.threads import limit_cpu_threads


def blas_threads() -> list[int]:
    return [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]


@pytest.fixture
def restore_threads():
    torch_threads = torch.get_num_threads()
    pools = {pool["prefix"]: pool["num_threads"] for pool in threadpool_info()}
    yield
    torch.set_num_threads(torch_threads)
    threadpool_limits(limits=pools)


def test_the_limit_holds_for_numpy_blas_and_torch(restore_threads):
    threadpool_limits(limits=2)  # what a 2-core machine starts with: one BLAS thread per core
    torch.set_num_threads(2)
    assert blas_threads(), "numpy links no BLAS that threadpoolctl can see"
    limit_cpu_threads(1)
    assert blas_threads() == [1] * len(blas_threads())
    assert torch.get_num_threads() == 1
    a = np.ones((64, 64))
    assert (a @ a == 64).all()  # products still run, on one thread


@pytest.mark.parametrize("count", [0, -1, 1.5, True, "2"])
def test_a_thread_count_that_is_not_a_positive_integer_is_refused(count, restore_threads):
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        limit_cpu_threads(count)


def test_a_build_worker_runs_its_part_with_the_recipes_threads_in_blas_too(tmp_path, monkeypatch, restore_threads):
    from nextgpt.toyworld import build

    seen = {}
    monkeypatch.setattr(build.ToyWorldBuild, "part", lambda self, name: seen.update(
        name=name, blas=blas_threads(), torch=torch.get_num_threads()))
    threadpool_limits(limits=2)
    build._run_part(str(tmp_path / "toy"), build.Recipe(threads=1, jobs=2), str(tmp_path / "judges"), "llm")
    assert seen == {"name": "llm", "blas": [1] * len(blas_threads()), "torch": 1}


def test_the_cli_refuses_zero_threads(tmp_path, capsys):
    from nextgpt.cli import main

    assert main(["toyworld", "classifiers", "--out", str(tmp_path), "--threads", "0"]) == 2
    assert "threads must be a positive integer, got 0" in capsys.readouterr().err
