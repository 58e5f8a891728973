"""The `vae-course` command: train, resume, batch, clear errors, and the same entry under torchrun."""
import json, os, subprocess, sys
from pathlib import Path
import pytest, yaml
from vae_course.cli import main, train_params, _parser

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
SMOKE = ["--recipe", "default", "--tier", "smoke", "--size", "32", "-p", "channels", "[8, 16]", "-p", "latent_ch", "1"]

def _metrics(run: Path) -> dict: return json.loads((run / "metrics.json").read_text())

def _exit_with(argv, capsys):
    with pytest.raises(SystemExit) as e: main(argv)
    return e.value.code, capsys.readouterr().err

def test_train_then_resume_with_the_saved_parameters(tmp_path):
    run = tmp_path / "run"
    assert main(["train", *SMOKE, "--steps", "2", "--seed", "3", "--out", str(run)]) == 0
    m = _metrics(run)
    assert m["step"] == 2 and m["params"]["seed"] == 3 and m["params"]["image_size"] == 32
    assert {"best.ckpt", "last.ckpt", "model.safetensors", "params.yaml", "recon.png"} <= {p.name for p in run.iterdir()}
    assert main(["train", "--resume", str(run), "--steps", "4"]) == 0      # no --recipe: the run's params.yaml
    m = _metrics(run)
    assert m["step"] == 4 and m["params"]["seed"] == 3 and m["params"]["image_size"] == 32
    assert len(list(tmp_path.iterdir())) == 1                                # the same folder, nothing new

def test_options_become_parameters(tmp_path):
    a = _parser().parse_args(["train", "--recipe", "celeba64", "--tier", "low", "--steps", "5", "--minutes", "2",
                              "--data", f"folder:{tmp_path}", "--batch-size", "4", "--lr", "3e-4", "--amp", "none",
                              "-p", "kl_weight", "0.5", "-p", "channels", "[8, 16, 32, 32]"])
    p = train_params(a)
    assert (p["name"], p["tier"], p["steps"], p["time_budget_min"]) == ("celeba64", "low", 5, 2.0)
    assert (p["data_source"], p["data_path"], p["batch_size"], p["lr"], p["amp"]) == ("folder", str(tmp_path), 4, 3e-4, "none")
    assert (p["kl_weight"], p["channels"], p["perceptual"]) == (0.5, [8, 16, 32, 32], 0.1)   # the rest: the recipe's

@pytest.mark.parametrize("args,msg", [
    (["--tier", "gpu"], "bad value 'gpu' for parameter 'tier'"),
    (["--recipe", "nope"], "unknown recipe 'nope'"),
    (["--data", "imagenet"], "neither a source"),
    (["-p", "lerning_rate", "1e-3"], "'lerning_rate' (did you mean 'lr'?)"),
    (["--resume", "/no/such/run"], "no params.yaml"),
    (["--recipe", "default", "--resume", "/no/such/run"], "no checkpoint at"),
    (["--recipe", "default", "--amp", "fp16", "--tier", "cpu"], "needs a CUDA GPU"),
])
def test_bad_input_stops_before_anything_runs(tmp_path, capsys, args, msg):
    code, err = _exit_with(["train", "--out", str(tmp_path / "run"), *args], capsys)
    assert code == 2 and msg in err, err
    assert not (tmp_path / "run").exists()

def test_batch_continues_a_killed_run_and_skips_complete_ones(tmp_path, capsys):
    "A run killed half-way (a checkpoint, no status.json) is resumed by the batch, not started over."
    from vae_course.recipes import load_recipe, run_recipe
    out = tmp_path / "batch"
    run_recipe(load_recipe("default", tier="smoke", steps=3, out_dir=str(out / "default_smoke")), log=lambda *a: None)
    argv = ["batch", str(ROOT / "nbs" / "train_vae.ipynb"), "--tiers", "smoke", "--recipes", "default", "-p", "steps", "5", "--out", str(out)]
    assert main(argv) == 0
    executed = (out / "default_smoke" / "train_vae.ipynb").read_text()
    assert "resuming from" in executed and _metrics(out / "default_smoke")["step"] == 5
    assert main(argv) == 0 and "already complete, skipped" in capsys.readouterr().out
    assert "default_smoke" in (out / "summary.md").read_text()
    code, err = _exit_with(["batch", str(ROOT / "nbs" / "train_vae.ipynb"), "-p", "stesp", "3", "--out", str(out)], capsys)
    assert code == 2 and "unknown parameter(s) 'stesp' (did you mean 'steps'?)" in err

def test_module_entry_lists_tiers_and_recipes():
    for cmd, word in (("tiers", "high"), ("recipes", "anime_vq")):
        r = subprocess.run([sys.executable, "-m", "vae_course.cli", cmd], env=ENV, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and word in r.stdout, r.stderr[-2000:]

def test_same_entry_under_torchrun(tmp_path):
    "`torchrun -m vae_course.cli train ...` with 2 gloo processes: one run folder, written and reported by rank 0 only."
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vae_course.cli",
           "train", *SMOKE, "--steps", "2", "--out", str(tmp_path / "ddp")]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.count("x 2 processes") == 1, r.stdout[-2000:]          # only rank 0 prints
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"] and _metrics(tmp_path / "ddp")["step"] == 2

def test_param_and_parameter_are_one_option_in_both_commands():
    "train took --param and batch --parameter; each now takes both (and -p)."
    for flag in ("-p", "--param", "--parameter"):
        assert _parser().parse_args(["train", flag, "lr", "1e-4"]).param == [["lr", "1e-4"]]
        assert _parser().parse_args(["batch", "nb.ipynb", flag, "lr", "1e-4"]).parameter == [["lr", "1e-4"]]

def test_resume_of_a_run_saved_before_a_rename(tmp_path):
    "A run whose params.yaml still says kl_cycle (now kl_cycle_period) resumes with its saved value, not a refusal."
    from vae_course.cli import _saved_params
    (tmp_path / "params.yaml").write_text("name: ultra\nkl_cycle: 10\n")
    assert _saved_params(str(tmp_path)) == {"name": "ultra", "kl_cycle_period": 10}

def test_make_lab_works_as_root_too():
    "The README's JupyterLab command: as root (containers) Jupyter refuses to start without --allow-root, which make lab adds."
    import os
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed-stamp", "lab"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "jupyter lab nbs/" in out and "--allow-root" in out
