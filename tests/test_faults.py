"""What a fault-injection pass found (issue 12), one test per defect: each failed before its fix.
Data loss and wrong results first (NaN batches with BatchNorm, resume, early stopping, shared folders, Ctrl-C),
then bad input that must end in one clear line."""
import json, os, shutil, signal, subprocess, sys, textwrap, threading, time, warnings
from pathlib import Path
import numpy as np
import pytest, torch, yaml
from PIL import Image
from vae_course.cli import main
from vae_course.core import write_json, run_lock
from vae_course.data import ImageFolder, InMemoryLoader, split_names
from vae_course.recipes import load_recipe, validate_params, run_recipe, build_model, build_objective, run_folder, step_checkpoints
from vae_course.training import Trainer, TrainConfig, Callback, load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
TINY = dict(tier="smoke", image_size=32, channels=[8, 16], latent_ch=1)      # the default recipe, as small as it gets
CLI_TINY = ["--recipe", "default", "--tier", "smoke", "--size", "32", "-p", "channels", "[8, 16]", "-p", "latent_ch", "1"]
quiet = lambda *a, **k: None

def _metrics(run: Path) -> dict: return json.loads((run / "metrics.json").read_text())

def _exit_with(argv, capsys):
    with pytest.raises(SystemExit) as e: main(argv)
    return e.value.code, capsys.readouterr().err

class KillAt(Callback):
    "Raise at optimiser step `n`, as a crash or kill -9 would end the run (no save of its own)."
    order = 99
    def __init__(self, n): self.n = n
    def after_step(self, t):
        if t.step == self.n: raise KeyboardInterrupt(f"killed at step {self.n}")

def _finite_state(sd: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in sd.values() if torch.is_tensor(v) and v.is_floating_point())

# 1. ---------------------------------------------------------------------------------------------------------------
def test_nan_batch_leaves_batchnorm_statistics_and_checkpoints_finite(tmp_path):
    "One NaN batch in the BatchNorm `vanilla` model: the step is skipped and the whole state, buffers too, stays finite."
    p = load_recipe("vanilla", tier="smoke")
    torch.manual_seed(0)
    model = build_model(p); objective = build_objective(p, model)
    g = torch.Generator().manual_seed(0)
    batches = [torch.rand(8, 3, 32, 32, generator=g) * 2 - 1 for _ in range(4)]
    batches[1] = torch.full_like(batches[1], float("nan"))
    cfg = TrainConfig(out_dir=str(tmp_path), device="cpu", tier="cpu", batch_size=8, accum_steps=1, amp="none", progress=False,
                      tensorboard=False, epochs=2, log_every=1, channels_last=False)
    tr = Trainer(model, batches, [batches[0]], cfg, objective)
    with pytest.warns(UserWarning, match="non-finite"): tr.fit()
    assert tr.n_skipped == 2 and tr.step == 6                         # the NaN batch once per epoch
    assert _finite_state(tr.raw_model.state_dict()), "a skipped step left NaN in the BatchNorm running statistics"
    assert all(np.isfinite(h["valid_loss"]) for h in tr.history)
    assert _finite_state(load_checkpoint(tr.run_dir / "last.ckpt")["model"])
    from safetensors.torch import load_file
    assert _finite_state(load_file(str(tr.run_dir / "model.safetensors")))

def test_a_checkpoint_never_holds_a_nonfinite_buffer(tmp_path):
    from torch import nn
    cfg = TrainConfig(out_dir=str(tmp_path), device="cpu", tier="cpu", batch_size=4, amp="none", progress=False, tensorboard=False, epochs=1)
    tr = Trainer(nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)), [torch.rand(4, 3, 8, 8)], None, cfg); tr.setup()
    tr.raw_model[1].running_var.fill_(float("nan"))
    with pytest.raises(Exception, match="refusing to save.*running_var"): tr.save(tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()

# 2, 3. ------------------------------------------------------------------------------------------------------------
def _killed_run(tmp_path) -> Path:
    "A smoke run with non-default length and batch, killed at step 3 after a step checkpoint at step 2."
    run = tmp_path / "run"
    p = load_recipe("default", **TINY, steps=8, batch_size=4, save_every_steps=2, out_dir=str(run))
    with pytest.raises(KeyboardInterrupt): run_recipe(p, callbacks=[KillAt(3)], log=quiet)
    assert load_checkpoint(run / "last.ckpt")["step"] == 2
    return run

def test_resume_without_recipe_continues_with_the_saved_parameters(tmp_path):
    run = _killed_run(tmp_path)
    saved = yaml.safe_load((run / "params.yaml").read_text())
    assert main(["train", "--resume", str(run)]) == 0
    m = _metrics(run)
    assert m["step"] == 8, "the smoke presets were applied again over the saved run"
    assert {k: m["params"][k] for k in saved if k != "resume"} == {k: v for k, v in saved.items() if k != "resume"}

def test_resume_refuses_a_changed_experiment_and_leaves_the_folder_as_it_was(tmp_path, capsys):
    run = _killed_run(tmp_path)
    before = (run / "params.yaml").read_bytes()
    code, err = _exit_with(["train", "--resume", str(run), "--lr", "1e-4"], capsys)
    assert code == 2 and "would change lr 0.002 -> 0.0001" in err, err
    code, err = _exit_with(["train", "--recipe", "vanilla", "--tier", "smoke", "--resume", str(run)], capsys)
    assert code == 2 and "would change" in err and "name 'default' -> 'vanilla'" in err, err
    assert (run / "params.yaml").read_bytes() == before
    assert main(["train", "--resume", str(run), "--steps", "6"]) == 0 and _metrics(run)["step"] == 6   # still resumable

def test_a_failed_resume_does_not_rewrite_params(tmp_path):
    run = _killed_run(tmp_path)
    before = (run / "params.yaml").read_bytes()
    good = (run / "last.ckpt").read_bytes()
    torch.save(dict(format="vae_course.ckpt/1", arch=dict(cls="VQVAE", config={}), model={}), run / "last.ckpt")
    with pytest.raises(ValueError, match="another architecture"):
        run_recipe(validate_params({**yaml.safe_load(before), "resume": str(run)}), log=quiet)
    assert (run / "params.yaml").read_bytes() == before
    (run / "last.ckpt").write_bytes(good)
    assert run_recipe(validate_params({**yaml.safe_load(before), "resume": str(run)}), log=quiet) == run

# 4. ---------------------------------------------------------------------------------------------------------------
def test_resume_is_exact_with_early_stopping(tmp_path):
    "lr 0: the validation loss never improves after epoch 1, so patience 3 stops after epoch 4, resumed or not."
    imgs = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    class CopyAt(Callback):
        order = 99
        def after_epoch(self, t):
            if t.epoch == 2: (tmp_path / "resumed").mkdir(); shutil.copy(t.run_dir / "last.ckpt", tmp_path / "resumed" / "last.ckpt")
    def trainer(out, cbs=()):
        from torch import nn
        torch.manual_seed(0)
        cfg = TrainConfig(out_dir=str(out), device="cpu", tier="cpu", batch_size=8, accum_steps=1, amp="none", progress=False,
                          tensorboard=False, epochs=50, lr=0.0, schedule="constant", patience=3, deterministic=True)
        return Trainer(nn.Conv2d(3, 3, 3, padding=1), InMemoryLoader(imgs, 8, device="cpu"), InMemoryLoader(imgs[:8], 8, shuffle=False, device="cpu"), cfg, callbacks=list(cbs))
    full = trainer(tmp_path / "full", [CopyAt()]).fit()
    resumed = trainer(tmp_path / "r").fit(resume=tmp_path / "resumed" / "last.ckpt")
    assert full.epoch == 4
    assert (resumed.epoch, resumed.step) == (full.epoch, full.step)

# 5. ---------------------------------------------------------------------------------------------------------------
def test_two_runs_in_the_same_second_get_two_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = load_recipe("default", **TINY, steps=2)
    a, b = run_folder(p), run_folder(p)
    assert a != b and a.is_dir() and b.is_dir()

def test_a_folder_in_use_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time; from vae_course.core import run_lock
        with run_lock({str(run)!r}): print("locked", flush=True); time.sleep(60)""")], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["train", *CLI_TINY, "--steps", "2", "--out", str(run)]) == 1
        err = capsys.readouterr().err
        assert "is in use by pid" in err and len(err.strip().splitlines()) == 1, err
        assert not (run / "params.yaml").exists()
    finally: holder.kill(); holder.wait()
    assert main(["train", *CLI_TINY, "--steps", "2", "--out", str(run)]) == 0      # kill -9 released it

def test_concurrent_json_writers_do_not_collide(tmp_path):
    errors, path = [], tmp_path / "status.json"
    def write(i):
        try:
            for j in range(100): write_json({"i": i, "j": j}, path)
        except Exception as e: errors.append(e)
    ts = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert errors == [] and [p.name for p in tmp_path.iterdir()] == ["status.json"]

def test_resume_removes_temp_files_of_a_killed_save(tmp_path):
    run = _killed_run(tmp_path)
    (run / ".last.ckpt.4242.tmp").write_bytes(b"half a checkpoint")
    (run / ".metrics.json.4242.0a1b2c3d.tmp").write_text("{")
    assert main(["train", "--resume", str(run)]) == 0
    assert not list(run.glob(".*.tmp"))

# 6. ---------------------------------------------------------------------------------------------------------------
def test_step_checkpoints_are_a_parameter_with_a_default_for_long_epochs():
    p = load_recipe("default", **TINY, steps=2)
    class Loader:
        def __init__(self, n): self.n = n
        def __len__(self): return self.n
    assert p["save_every_steps"] is None
    assert step_checkpoints(p, Loader(5000)) == 1000 and step_checkpoints(p, Loader(200)) == 0
    assert step_checkpoints(p, Loader(5000), accum_steps=8) == 0                  # 625 optimiser steps an epoch
    assert step_checkpoints({**p, "save_every_steps": 50}, Loader(200)) == 50

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_save_the_run(tmp_path, sig):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "vae_course.cli", "train", *CLI_TINY, "--steps", "100000", "-p", "time_budget_min", "5",
           "-p", "batch_size", "4", "--out", str(run)]
    p = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (run / "last.ckpt").exists() and p.poll() is None and time.time() - t0 < 120: time.sleep(0.05)
    time.sleep(0.5)                                                              # now somewhere inside the second epoch
    p.send_signal(sig); err = p.communicate(timeout=120)[1]
    assert p.returncode == 128 + sig, err[-2000:]
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len([l for l in lines if l.startswith("vae-course train:")]) == 1, err[-2000:]
    assert f"{signal.Signals(sig).name} at step" in lines[-1] and f"--resume {run}" in lines[-1]
    ck = load_checkpoint(run / "last.ckpt")
    assert ck["batch_in_epoch"] > 0, "the save on the signal came from the last epoch end, not from the step it stopped at"
    assert main(["train", "--resume", str(run), "--steps", str(ck["step"] + 2)]) == 0
    assert _metrics(run)["step"] == ck["step"] + 2

# 7, 8. ------------------------------------------------------------------------------------------------------------
def _image(path, size=(24, 24), seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)

def test_a_folder_whose_images_cannot_be_decoded(tmp_path):
    for i in range(3):
        _image(tmp_path / "src" / f"{i}.jpg")
        good = (tmp_path / "src" / f"{i}.jpg").read_bytes()
        (tmp_path / "bad" / f"{i}.jpg").parent.mkdir(exist_ok=True)
        (tmp_path / "bad" / f"{i}.jpg").write_bytes(good[: len(good) // 2])      # the header check passes, decoding fails
    with pytest.raises(FileNotFoundError, match=r"none of the 3 image file\(s\).*could be read: 3 unreadable or corrupt: 0.jpg, 1.jpg, 2.jpg"):
        ImageFolder(tmp_path / "bad", size=16, split="all")

def test_a_single_image_in_the_validation_split_is_said_so(tmp_path):
    name = next(f"img{i}.png" for i in range(1000) if split_names([f"img{i}.png"], "valid") == [0])
    _image(tmp_path / "one" / name)
    with pytest.raises(FileNotFoundError, match=r"'train' split .* is empty: its 1 image file\(s\) all fell in the other split"):
        ImageFolder(tmp_path / "one", size=16, split="train")

def test_an_image_over_the_decompression_bomb_limit_is_named_as_such(tmp_path, monkeypatch):
    _image(tmp_path / "f" / "small.png", (10, 10)); _image(tmp_path / "f" / "huge.png", (100, 100))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)                           # 2x: 2,000 pixels; huge.png has 10,000
    with pytest.warns(UserWarning, match=r"1 over Pillow's decompression-bomb limit of 2,000 pixels.*MAX_IMAGE_PIXELS = None.*huge.png"):
        ds = ImageFolder(tmp_path / "f", size=8, split="all")
    assert ds.names == ["small.png"]

def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    (tmp_path / "g").mkdir()
    Image.fromarray(np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (32, 1))).save(tmp_path / "g" / "ramp.png")
    x = ImageFolder(tmp_path / "g", size=32, split="all")[0]                       # (3, 32, 32) in [0, 1]
    assert abs(x.mean().item() - 0.5) < 0.02, f"mean {x.mean().item():.3f}: the ramp loaded almost white"

# 9, 10. -----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,msg", [
    (["-p", "num_codes", "64"], "'num_codes' only applies to model='vq'"),
    (["-p", "prior_steps", "10", "-p", "disc_lr", "1e-3"], "'disc_lr', 'prior_steps' only apply to model='vq'"),
    (["--recipe", "anime_vq", "-p", "free_bits", "1.0"], "'free_bits' only applies to model='vae'"),
    (["--recipe", "anime_vq", "-p", "latent_prior_steps", "10"], "'latent_prior_steps' only applies to model='vae'"),
    (["--recipe", "anime_vq", "-p", "num_codes", "512", "--batch-size", "2"], "set batch_size to at least 8"),
    (["--recipe", "anime_vq", "-p", "block", "conv_relu", "-p", "num_codes", "128", "--batch-size", "4"], "set batch_size to at least 8"),
    (["--device", "bogus"], "parameter 'device': expected 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    (["--data", "folder:/no/such/folder"], "'data_path': no such folder"),
    (["-p", "quality_weight", "1.0", "-p", "quality_checkpoint", "/no/such.pt"], "'quality_checkpoint': no such file"),
    pytest.param(["--device", "cuda"], "CUDA is not available", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has CUDA")),
])
def test_bad_input_is_refused_before_training(tmp_path, capsys, args, msg):
    recipe = [] if "--recipe" in args else ["--recipe", "default"]
    code, err = _exit_with(["train", *recipe, "--tier", "smoke", "--out", str(tmp_path / "run"), *args], capsys)
    assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()

def test_batch_takes_any_recipe_parameter_and_suggests_for_typos(tmp_path, capsys):
    nb = str(ROOT / "nbs" / "train_vae.ipynb")
    argv = ["batch", nb, "--tiers", "smoke", "-p", "kl_weight", "0.1", "-p", "image_size", "32", "-p", "channels", "[8, 16]",
            "-p", "latent_ch", "1", "-p", "steps", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    assert _metrics(tmp_path / "default_smoke")["params"]["kl_weight"] == 0.1
    code, err = _exit_with(["batch", nb, "-p", "kl_wieght", "0.1", "--out", str(tmp_path / "x")], capsys)
    assert code == 2 and "'kl_wieght' (did you mean 'kl_weight'?)" in err

@pytest.mark.parametrize("name,value,msg", [("_seed", 3, "['_seed']: a name that starts with '_'"),
                                            ("json", 3, "['json'] would replace names the notebook itself uses"),
                                            ("run_recipe", "x", "['run_recipe'] would replace names")])
def test_notebook_refuses_private_and_shadowing_parameters(tmp_path, name, value, msg):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError, match=msg.replace("[", r"\[").replace("]", r"\]")):
        pm.execute_notebook(str(ROOT / "nbs" / "train_vae.ipynb"), str(tmp_path / "out.ipynb"), parameters={name: value},
                            cwd=str(tmp_path), progress_bar=False, log_output=False)
    assert not (tmp_path / "runs").exists()

# 11. --------------------------------------------------------------------------------------------------------------
def test_a_full_disk_is_said_plainly_and_keeps_the_last_checkpoint(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", *CLI_TINY, "--steps", "2", "--out", str(run)]) == 0
    def full_disk(obj, f, *a, **k):
        f.write(b"x" * 64); raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")
    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--steps", "4"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the disk is full" in err and ".ckpt is intact" in err, err
    monkeypatch.undo()
    assert load_checkpoint(run / "last.ckpt")["step"] == 2 and not list(run.glob(".*.tmp"))

def test_epoch_lines_never_show_a_fake_nan(tmp_path):
    "An epoch shorter than the logging interval used to print 'train loss nan'."
    lines = []
    run_recipe(load_recipe("default", **TINY, steps=4, batch_size=256, out_dir=str(tmp_path / "r")), log=lines.append)
    epochs = [l for l in lines if l.startswith("epoch ")]
    assert epochs and not any("nan" in l for l in epochs), epochs

# 12. --------------------------------------------------------------------------------------------------------------
class Sleep(Callback):
    def __init__(self, s): self.s = s
    def after_step(self, t): time.sleep(self.s)

def test_run_time_counts_every_session_of_a_resumed_run(tmp_path):
    run = tmp_path / "run"
    run_recipe(load_recipe("default", **TINY, steps=2, out_dir=str(run)), callbacks=[Sleep(1.0)], log=quiet)
    first = _metrics(run)
    run_recipe(load_recipe("default", **TINY, steps=4, resume=str(run)), log=quiet)
    second = _metrics(run)
    assert first["wall_time_s"] >= 2.0
    assert second["wall_time_s"] > first["wall_time_s"] and second["train_seconds"] > first["train_seconds"]

def test_training_time_stops_when_training_ends(tmp_path, monkeypatch):
    "The report after training (sample metrics, figures) is not training time: metrics.json says what the checkpoint says."
    import vae_course.recipes as recipes
    slow_report = recipes.write_artifacts
    def write_artifacts(*a, **k): time.sleep(2.0); return slow_report(*a, **k)
    monkeypatch.setattr(recipes, "write_artifacts", write_artifacts)
    run = run_recipe(load_recipe("default", **TINY, steps=2, out_dir=str(tmp_path / "run")), log=quiet)
    m, ck = _metrics(run), load_checkpoint(run / "last.ckpt")
    assert m["train_seconds"] == m["wall_time_s"] == m["train"]["wall_time_s"] == ck["train_seconds"], (m["train_seconds"], ck["train_seconds"])

def test_resuming_with_another_thread_count_warns(tmp_path):
    from torch import nn
    imgs = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8)
    def trainer():
        cfg = TrainConfig(out_dir=str(tmp_path), device="cpu", tier="cpu", batch_size=8, amp="none", progress=False, tensorboard=False,
                          epochs=None, max_steps=2)
        m = nn.Conv2d(3, 3, 1)
        return Trainer(m, InMemoryLoader(imgs, 8, device="cpu"), None, cfg, callbacks=[])
    n = torch.get_num_threads()
    try:
        torch.set_num_threads(2); tr = trainer().fit()
        assert load_checkpoint(tr.run_dir / "last.ckpt")["threads"] == 2
        torch.set_num_threads(1)
        with pytest.warns(UserWarning, match="saved with 2.*OMP_NUM_THREADS=2"): trainer().load(tr.run_dir / "last.ckpt")
    finally: torch.set_num_threads(n)

def test_fit_goes_on_after_a_caught_interrupt(tmp_path):
    "In a notebook, Ctrl-C raises RunInterrupted; running fit again continues from there instead of stopping at once."
    from torch import nn
    from vae_course.training import RunInterrupted
    class CtrlCAt(Callback):
        def after_step(self, t):
            if t.step == 2 and not getattr(self, "sent", False): self.sent = True; os.kill(os.getpid(), signal.SIGINT)
    imgs = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    cfg = TrainConfig(out_dir=str(tmp_path), device="cpu", tier="cpu", batch_size=8, amp="none", progress=False, tensorboard=False,
                      epochs=None, max_steps=6)
    tr = Trainer(nn.Conv2d(3, 3, 1), InMemoryLoader(imgs, 8, device="cpu"), None, cfg, callbacks=[CtrlCAt()])
    with pytest.raises(RunInterrupted, match="SIGINT at step 2"): tr.fit()
    assert load_checkpoint(tr.run_dir / "last.ckpt")["step"] == 2
    tr.fit()
    assert tr.step == 6
