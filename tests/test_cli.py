"""The `vae-course` command: recipes, overrides, resume, clear errors, and the same entry under torchrun."""
import json, os, subprocess, sys
from pathlib import Path
import pytest, yaml
from vae_course.cli import main, load_recipe, run_recipe, parse_data

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
SMALL = dict(name="small", model=dict(kind="vae", preset="tiny", channels=[8, 16]),
             objective=dict(kind="vae", beta=dict(name="linear", warmup_steps=4)),
             data=dict(source="openmoji", size=32), train=dict(tensorboard=False, batch_size=8, accum_steps=1))

@pytest.fixture
def recipe(tmp_path):
    p = tmp_path / "small.yaml"; p.write_text(yaml.safe_dump(SMALL)); return p

def _metrics(out):
    runs = list(Path(out).glob("small_*"))
    assert len(runs) == 1, runs
    return runs[0], json.loads((runs[0] / "metrics.json").read_text())

def test_train_and_resume_from_the_command_line(tmp_path, recipe):
    args = ["train", "--recipe", str(recipe), "--tier", "cpu", "--device", "cpu", "--out", str(tmp_path), "--no-progress"]
    assert main(args + ["--steps", "2", "--seed", "3"]) == 0
    run, m = _metrics(tmp_path)
    assert m["finished"] and m["step"] == 2 and m["config"]["seed"] == 3 and m["config"]["tier"] == "cpu"
    assert {"best.ckpt", "last.ckpt", "model.safetensors"} <= {p.name for p in run.iterdir()}
    assert main(args + ["--steps", "3", "--seed", "3", "--resume", str(run / "last.ckpt")]) == 0
    run2, m = _metrics(tmp_path)
    assert run2 == run and m["step"] == 3

def test_overrides_reach_the_config(tmp_path, recipe):
    tr = run_recipe(recipe, tier="low", steps=1, device="cpu", out=str(tmp_path), amp="none", lr=5e-4, progress=False)
    assert (tr.cfg.batch_size, tr.cfg.accum_steps, tr.cfg.amp, tr.cfg.lr) == (8, 1, "none", 5e-4)  # recipe beats tier
    assert tr.cfg.grad_checkpointing is True and tr.raw_model.cfg.grad_checkpointing      # the low tier's checkpointing

@pytest.mark.parametrize("args,msg", [
    (["--tier", "gpu"], "choose one of: auto, high, mid, low, cpu"),
    (["--recipe", "nope"], "choose one of: default"),
    (["--data", "imagenet"], "neither a source"),
])
def test_clear_errors(tmp_path, args, msg):
    with pytest.raises(ValueError, match=msg):
        main(["train", "--steps", "1", "--device", "cpu", "--out", str(tmp_path), *args])

def test_recipe_sections_are_checked(tmp_path):
    with pytest.raises(ValueError, match="valid sections are"): load_recipe({"trian": {}})
    with pytest.raises(TypeError, match="valid fields are"):
        run_recipe({**SMALL, "train": {"epoch": 3}}, tier="cpu", steps=1, device="cpu", out=str(tmp_path))
    with pytest.raises(FileNotFoundError): load_recipe(tmp_path / "missing.yaml")
    assert parse_data("celeba:/data/celeba") == dict(source="celeba", path="/data/celeba")

def test_same_entry_under_torchrun(tmp_path, recipe):
    "`torchrun -m vae_course.cli train ...` with 2 gloo processes: one run folder, written by rank 0 only."
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vae_course.cli",
           "train", "--recipe", str(recipe), "--tier", "cpu", "--device", "cpu", "--steps", "2", "--out", str(tmp_path), "--no-progress"]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("world size 2") == 1                 # only rank 0 prints
    run, m = _metrics(tmp_path)
    assert m["step"] == 2 and m["finished"]
