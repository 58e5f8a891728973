"""Run folders written before the module redesign (one `training` and one `recipes` module, the code at commit
BEFORE) still resume with today's library, and the resumed run ends exactly where an uninterrupted run of today's
code ends: checkpoint state is stored under class names, which the redesign kept."""
import os, subprocess, sys, tarfile, io
from pathlib import Path
import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
BEFORE = "a57ed5c"        # the last commit before the redesign (#21)

def _old_library(dest: Path) -> Path:
    "The `vae_course` package as it was at BEFORE, unpacked into `dest` (skip where the clone has no such history)."
    r = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "vae_course"], capture_output=True)
    if r.returncode: pytest.skip(f"commit {BEFORE} is not in this clone's history (a shallow clone?): {r.stderr.decode().strip()[:200]}")
    tarfile.open(fileobj=io.BytesIO(r.stdout)).extractall(dest)
    return dest

SMOKE = "dict(tier='smoke', steps={steps}, out_dir={out!r}, seed=3)"

def tmp_cwd() -> Path: return ROOT / "tests"      # not the repository root: its vae_course/ would shadow the old copy

def _run(code: str, pythonpath: Path | None) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "VAE_COURSE_DATA": str(ROOT / "data")}
    head = "import torch; torch.set_num_threads(1)\n"
    if pythonpath is not None:          # the editable install's import hook would find today's library first
        head += ("import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
                 f"sys.path.insert(0, {str(pythonpath)!r})\n")
    r = subprocess.run([sys.executable, "-c", head + code], env=env, cwd=tmp_cwd(),
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout

def test_a_run_saved_before_the_redesign_resumes_exactly(tmp_path):
    old = _old_library(tmp_path / "old")
    run, straight = tmp_path / "run", tmp_path / "straight"
    where = _run("import vae_course, vae_course.recipes as r; print(vae_course.__file__)\n"
                 f"r.run_recipe(r.load_recipe('default', **{SMOKE.format(steps=4, out=str(run))}), log=lambda *a: None)", old)
    assert str(old) in where, "the first half must run on the old library"
    _run("from vae_course.recipes import load_recipe, run_recipe\n"
         f"run_recipe(load_recipe('default', **{SMOKE.format(steps=8, out=str(run))}, resume={str(run)!r}), log=lambda *a: None)\n"
         f"run_recipe(load_recipe('default', **{SMOKE.format(steps=8, out=str(straight))}), log=lambda *a: None)", None)
    a, b = (torch.load(d / "last.ckpt", weights_only=True) for d in (run, straight))
    assert a["step"] == b["step"] == 8
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"]), "the resumed run must end where the straight run ends"
