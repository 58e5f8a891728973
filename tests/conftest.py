"""Smoke runs that several tests only read are trained once per test session and shared, also across pytest-xdist
workers (a file lock guards each run's folder). A test that changes a run's folder trains its own."""
import json
from pathlib import Path
import pytest

@pytest.fixture(scope="session")
def shared_run(tmp_path_factory):
    """`shared_run(recipe, steps, **parameters)` -> (run folder, the run's log lines): a smoke run trained by the first
    test that asks for it. Read it, never write into it."""
    from filelock import FileLock
    base = tmp_path_factory.getbasetemp()
    base = base.parent if base.name.startswith("popen-gw") else base          # one folder for all xdist workers
    def get(recipe: str, steps: int, **over):
        from vae_course.recipes import load_recipe, run_recipe
        key = "_".join([recipe, str(steps), *(f"{k}-{v}" for k, v in sorted(over.items()))])
        folder, log = base / "shared_runs" / key, base / "shared_runs" / f"{key}.log.json"
        folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(folder) + ".lock"):
            if not log.is_file():                                           # the log is written last: a whole run
                lines = []
                run = run_recipe(load_recipe(recipe, tier="smoke", steps=steps, out_dir=str(folder), **over), log=lines.append)
                log.write_text(json.dumps(dict(run=str(run), lines=[str(l) for l in lines])))
        saved = json.loads(log.read_text())
        return Path(saved["run"]), saved["lines"]
    return get

def pytest_sessionstart(session):
    import torch
    session.config.start_threads = torch.get_num_threads()       # what OMP_NUM_THREADS (or torch's default) gave this process

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    """A test starts with the threads its process was given: `make test` gives each of its two pytest workers one, and a
    fixture that raised it to 2 put 4 threads on 2 cores (those tests ran 10-25x slower)."""
    import torch
    start = item.config.start_threads
    if torch.get_num_threads() > start:
        raise RuntimeError(f"{item.nodeid} starts with {torch.get_num_threads()} torch threads, more than the {start} this "
                           f"process was given: let OMP_NUM_THREADS decide")
