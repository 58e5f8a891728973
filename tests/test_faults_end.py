"""The second fault-injection pass (issue 23): the end of a run, resume, and the run's own reports. One test per
defect, each failing before its fix; then kill -9 at several moments of a run, always followed by a resume that
ends with the weights, metrics and pictures of the uninterrupted run."""
import json, math, os, shutil, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch, yaml
from vae_course.cli import main, run_status, monitor
from vae_course.core import write_json, run_lock, lock_holder, read_checkpoint, load_tensors
from vae_course.recipes import load_recipe, run_recipe, load_model

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
TINY = ["train", "--recipe", "default", "--tier", "smoke", "--size", "32", "-p", "channels", "[8, 16]", "-p", "latent_ch", "1"]
quiet = lambda *a, **k: None

def _cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vae_course.cli", *args], env=ENV, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)

def _start(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vae_course.cli", *args], env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

def _wait_for(cond, proc, timeout=240):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, f"the run ended before the moment to kill it: {proc.stderr.read()[-2000:]}"
        assert time.time() - t0 < timeout, "the moment to kill the run never came"
        time.sleep(0.05)

def _kill(proc):
    proc.send_signal(signal.SIGKILL); proc.wait()

def _metrics(run: Path) -> dict: return json.loads((run / "metrics.json").read_text())

def _exit_with(argv, capsys):
    with pytest.raises(SystemExit) as e: main(argv)
    return e.value.code, capsys.readouterr().err

# 1. A time-budgeted run trains no further step when resumed --------------------------------------------------------
def test_a_spent_time_budget_trains_nothing_more_on_resume(tmp_path):
    run = tmp_path / "R"
    first = _cli(*TINY, "--steps", "100000", "--minutes", "0.05", "--out", str(run))
    assert first.returncode == 0, first.stderr[-2000:]
    steps, weights = _metrics(run)["step"], load_tensors(run / "model.safetensors")[0]
    again = _cli("train", "--resume", str(run))
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"done in {steps} steps" in again.stdout, again.stdout[-500:]
    assert _metrics(run)["step"] == steps
    after = load_tensors(run / "model.safetensors")[0]
    assert all(torch.equal(weights[k], after[k]) for k in weights), "the resumed run trained on and changed the exported model"

# 2. metrics.json and monitor say only what has happened -------------------------------------------------------------
def test_finished_is_said_only_after_the_end_of_run_work(tmp_path):
    run = tmp_path / "R"
    proc = _start(*TINY, "--steps", "6", "--out", str(run))
    _wait_for(lambda: (run / "metrics.json").is_file() and _safe_phase(run) == "reporting", proc)
    _kill(proc)
    m = _metrics(run)
    assert m["finished"] is False and m["phase"] == "reporting"
    text, done = run_status(run)
    assert not done and "stopped" in text and "finished" not in text.replace(str(run), ""), text

def _safe_phase(run):
    try: return json.loads((run / "metrics.json").read_text()).get("phase")
    except (ValueError, OSError): return None

def test_monitor_sees_a_dead_run_and_follow_ends(tmp_path, capsys):
    run = tmp_path / "R"
    proc = _start(*TINY, "--steps", "400", "-p", "save_every_steps", "2", "--out", str(run))
    _wait_for(lambda: (run / "last.ckpt").is_file(), proc)
    _kill(proc)                                                          # its .lock stays, naming a dead process
    text, done = run_status(run)
    assert "not running" in text and not done, text
    assert monitor(run, follow=0.1, log=quiet) == 1                     # ends, and says the run is not finished
    empty = tmp_path / "empty"; empty.mkdir()
    assert monitor(empty, follow=0.1, log=quiet) == 1                   # no run writes there: no endless wait

def test_lock_holder_names_only_a_live_holder(tmp_path):
    with run_lock(tmp_path):
        probe = subprocess.run([sys.executable, "-c", f"from vae_course.core import lock_holder; print(lock_holder({str(tmp_path)!r}))"],
                               env=ENV, capture_output=True, text=True)
        assert f"pid {os.getpid()}" in probe.stdout
    (tmp_path / ".lock").write_text("pid 999999 on nowhere\n")          # a stale lock file of a killed run
    assert lock_holder(tmp_path) is None

# 3. A run folder belongs to one run ----------------------------------------------------------------------------------
def test_a_new_run_never_continues_an_older_one(tmp_path):
    base = tmp_path / "base"
    assert _cli(*TINY, "--steps", "4", "--out", str(base)).returncode == 0
    s = tmp_path / "S"; shutil.copytree(base, s)
    proc = _start(*TINY, "--steps", "400", "--seed", "7", "--out", str(s))
    _wait_for(lambda: (s / "params.yaml").is_file() and yaml.safe_load((s / "params.yaml").read_text())["seed"] == 7, proc)
    _kill(proc)
    assert (tmp_path / "S.prev" / "last.ckpt").is_file(), "the older run is kept beside the new one"
    r = _cli("train", "--resume", str(s))
    assert r.returncode != 0 and "no checkpoint" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-1500:]

def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    run = tmp_path / "R"
    assert _cli(*TINY, "--steps", "4", "--out", str(run)).returncode == 0
    p = yaml.safe_load((run / "params.yaml").read_text()); p["seed"] = 7
    (run / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))        # as a copied or mixed-up folder would hold
    r = _cli("train", "--resume", str(run))
    assert r.returncode != 0 and "belongs to another run" in r.stderr and "seed" in r.stderr, r.stderr[-1500:]

# 4. batch --rerun leaves a live run alone ------------------------------------------------------------------------------
def test_rerun_does_not_move_a_live_run(tmp_path):
    from vae_course.batch import run_batch
    out = tmp_path / "batch"; live = out / "default_smoke"; live.mkdir(parents=True)
    (live / "metrics.json").write_text("{}")
    with run_lock(live):                                                # another batch is training here
        runs = run_batch(ROOT / "nbs" / "train_vae.ipynb", out, tiers=["smoke"], rerun=True, parameters=dict(steps=2), log=quiet)
    assert runs[0].status == "failed" and "in use by" in runs[0].error, runs[0].error
    assert (live / "metrics.json").is_file() and not (out / "default_smoke.prev").exists()

# 5. Sampler and checkpoint files ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("tiny") / "R"
    run_recipe(load_recipe("default", tier="smoke", image_size=32, channels=[8, 16], latent_ch=1, steps=4, out_dir=str(run)), log=quiet)
    return run

def _bad_files(d: Path, good: Path) -> dict:
    d.mkdir(exist_ok=True)
    files = dict(truncated=good.read_bytes()[: len(good.read_bytes()) // 2], empty=b"", pickle=b"\x80\x04K\x01.")
    for name, data in files.items(): (d / f"{name}.safetensors").write_bytes(data)
    return {n: d / f"{n}.safetensors" for n in files}

def test_bad_sampler_files_are_named_in_one_line(tiny_run, tmp_path):
    import json as _j
    from safetensors.torch import save_file
    from vae_course.samplers import load_sampler, sampler_path, GaussianSampler
    good = sampler_path(tiny_run, "gaussian")
    for kind, path in _bad_files(tmp_path, good).items():
        with pytest.raises(ValueError, match=path.name): load_sampler(path)
    s = load_sampler(good)
    def write(name, tensors, meta):
        save_file(tensors, str(tmp_path / name), metadata=meta); return tmp_path / name
    no_config = write("noconfig.safetensors", dict(mean=s.mean), dict(kind="gaussian"))
    bad_json = write("badjson.safetensors", dict(mean=s.mean), dict(kind="gaussian", config="{dim: "))
    wrong_kind = write("kind.safetensors", dict(mean=s.mean), dict(kind="flow", config=_j.dumps(dict(dim=s.dim))))
    nan = write("nan.safetensors", {k: v.clone().fill_(float("nan")) for k, v in s.state_dict().items()},
                dict(kind="gaussian", config=_j.dumps(s.config())))
    huge = write("huge.safetensors", dict(mean=torch.zeros(2, dtype=torch.float64)), dict(kind="gaussian", config=_j.dumps(dict(dim=8000))))
    for path in (no_config, bad_json, wrong_kind, nan, huge):
        with pytest.raises(ValueError, match="not a sampler file"): load_sampler(path)
    with pytest.raises(ValueError, match=f"draws {s.dim}-dimensional codes"): load_sampler(good, dim=s.dim * 2)

def test_compare_falls_back_from_a_broken_best_checkpoint(tiny_run, tmp_path):
    run = tmp_path / "R"; shutil.copytree(tiny_run, run)
    (run / "best.ckpt").unlink(); (run / "best.ckpt").write_bytes((run / "last.ckpt").read_bytes()[:300])   # truncated
    with pytest.warns(UserWarning, match="best.ckpt"): model = load_model(run)
    assert type(model).__name__ == "VAE"
    (run / "last.ckpt").unlink(); (run / "last.ckpt").write_bytes(b"\x80\x04K\x01.")                       # a pickle of 1
    with pytest.raises(ValueError, match="last.ckpt"): load_model(run)

# 6. A full disk at the end of a run -----------------------------------------------------------------------------------
def test_a_full_disk_in_the_end_of_run_work_is_one_line(tmp_path, capsys, monkeypatch):
    import errno, PIL.Image
    def full(self, fp, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(PIL.Image.Image, "save", full)
    code = main([*TINY, "--steps", "3", "--out", str(tmp_path / "R")])
    err = capsys.readouterr().err
    assert code == 1 and "the disk is full" in err and "resume" in err and len(err.strip().splitlines()) == 1, err
    assert _metrics(tmp_path / "R")["phase"] == "reporting"            # never reported as finished

def test_a_disk_too_small_for_the_first_checkpoint_does_not_say_resume(tmp_path, capsys, monkeypatch):
    import vae_course.core as core, vae_course.training as training
    def full(path, *a, **k): raise core._disk_full_error(Path(path))
    monkeypatch.setattr(training, "save_checkpoint", full)              # every checkpoint of the run fails
    code = main([*TINY, "--steps", "3", "--out", str(tmp_path / "R")])
    err = capsys.readouterr().err
    assert code == 1 and "the disk is full" in err and "resume" not in err, err

# 7. Every file a run writes is whole; a stop in the report says what to do ------------------------------------------
def test_a_stop_during_the_report_leaves_whole_files_and_a_resume_hint(tmp_path):
    run = tmp_path / "R"
    for sig in (signal.SIGINT, signal.SIGTERM):
        shutil.rmtree(run, ignore_errors=True)
        proc = _start(*TINY, "--steps", "6", "--out", str(run))
        _wait_for(lambda: (run / "sampler_gaussian.safetensors").is_file(), proc)
        proc.send_signal(sig); out, err = proc.communicate(timeout=120)
        assert proc.returncode == 128 + sig, (proc.returncode, err[-1500:])
        assert "Traceback" not in err and f"--resume {run}" in err, err[-1500:]
        for png in run.glob("*.png"): assert png.read_bytes()[:4] == b"\x89PNG" and png.stat().st_size > 100, png
        assert not list(run.glob(".*.tmp"))

def test_the_last_training_means_survive_a_resume(tmp_path):
    run = tmp_path / "R"
    assert _cli(*TINY, "--steps", "4", "--out", str(run)).returncode == 0
    assert _cli("train", "--resume", str(run), "--steps", "6").returncode == 0
    last = _metrics(run)["train"]["last"]
    assert {"train_loss", "train_recon", "train_kl"} <= set(last), last

# 8. CLI edges ---------------------------------------------------------------------------------------------------------
def test_resume_auto_reads_the_params_of_out(tmp_path, capsys):
    run = tmp_path / "R"
    assert _cli(*TINY, "--steps", "3", "--out", str(run)).returncode == 0
    r = _cli("train", "--resume", "auto", "--out", str(run), "--steps", "4")
    assert r.returncode == 0 and "done in 4 steps" in r.stdout, r.stderr[-1500:]

@pytest.mark.parametrize("follow", ["inf", "nan", "-1"])
def test_monitor_follow_takes_a_positive_number(tmp_path, capsys, follow):
    code, err = _exit_with(["monitor", str(tmp_path), "--follow", follow], capsys)
    assert code == 2 and "--follow" in err and len(err.strip().splitlines()) == 1, err

@pytest.mark.parametrize("content", ["[1, 2]", '{"train": 3, "step": "x"}', '{"step": 3', "\x00\x01binary"])
def test_monitor_names_a_bad_metrics_file(tmp_path, capsys, content):
    (tmp_path / "metrics.json").write_text(content)
    code, err = _exit_with(["monitor", str(tmp_path)], capsys)
    assert code == 2 and "metrics.json" in err and len(err.strip().splitlines()) == 1, err

def test_compare_refuses_non_images_and_zero_images(tiny_run, tmp_path, capsys):
    notes = tmp_path / "notes.txt"; notes.write_text("not an image")
    code, err = _exit_with(["compare", str(tiny_run), str(tiny_run), "--images", str(notes)], capsys)
    assert code == 2 and "notes.txt" in err and len(err.strip().splitlines()) == 1, err
    img = tmp_path / "a.png"; import PIL.Image; PIL.Image.new("RGB", (32, 32)).save(img)
    code, err = _exit_with(["compare", str(tiny_run), str(tiny_run), "--images", str(img), "-n", "0"], capsys)
    assert code == 2 and "-n" in err and "no images" not in err, err

@pytest.mark.parametrize("text,msg", [("recipe: {lr: [1, 2\n", "not valid YAML"), ("recipe: !!python/object:os.system {}\n", "not valid YAML"),
                                      ("recipe:\n  lr: 0.1\n  lr: 0.2\n", "'lr' twice"), ("\x00\x9f\x92binary", "not a text file")])
def test_bad_recipe_files_are_one_line_naming_the_file(tmp_path, capsys, text, msg):
    f = tmp_path / "my.yaml"; f.write_bytes(text.encode("latin-1"))
    code, err = _exit_with(["train", "--recipe", str(f), "--tier", "smoke"], capsys)
    assert code == 2 and "my.yaml" in err and msg in err and len(err.strip().splitlines()) == 1, err

def test_smoke_does_not_hide_a_bad_value_of_the_recipe_file(tmp_path, capsys):
    f = tmp_path / "my.yaml"; f.write_text("recipe:\n  steps: -5\n")
    code, err = _exit_with(["train", "--recipe", str(f), "--tier", "smoke"], capsys)
    assert code == 2 and "parameter 'steps'" in err, err

@pytest.mark.parametrize("name", ["../escape", "a/b", ".hidden", ""])
def test_a_run_name_stays_inside_its_folder(name):
    with pytest.raises(ValueError, match="parameter 'name'"): load_recipe("default", name=name)

def test_a_new_run_into_a_killed_runs_folder_starts_clean(tmp_path):
    run = tmp_path / "R"
    proc = _start(*TINY, "--steps", "400", "-p", "save_every_steps", "2", "--out", str(run))
    _wait_for(lambda: (run / "last.ckpt").is_file(), proc)
    _kill(proc)
    (run / ".last.ckpt.1.abcd.tmp").write_bytes(b"half")
    old_events = {p.name for p in run.glob("events.out.tfevents*")}
    assert _cli(*TINY, "--steps", "3", "--out", str(run)).returncode == 0
    assert not list(run.glob(".*.tmp")) and old_events and not old_events & {p.name for p in run.glob("events.out.tfevents*")}
    assert (tmp_path / "R.prev" / "last.ckpt").is_file()

def test_monitor_best_is_the_state_in_best_ckpt(tiny_run):
    m = _metrics(tiny_run)
    best = read_checkpoint(tiny_run / "best.ckpt")["callbacks"]["CheckpointCB"]["best"]
    assert math.isclose(m["train"]["best"], best)
    text, _ = run_status(tiny_run)
    assert f"best valid_loss: {best:.4g}" in text, text

# Kill -9 anywhere, resume, and end where the uninterrupted run ends ------------------------------------------------
RUN = [*TINY, "--steps", "24", "-p", "save_every_steps", "4", "-p", "psnr_every_s", "60"]
SAME = ("model.safetensors", "sampler_gaussian.safetensors", "sampler_gmm.safetensors", "recon.png", "samples_prior.png",
        "samples_gaussian.png", "samples_gmm.png", "samples_temperature.png", "interpolation.png")
NUMBERS = ("step", "val_psnr", "train_psnr", "val_mse", "val_ssim", "val_kl", "gen_gaussian_fd", "gen_gmm_precision", "gen_prior_recall")

@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "R"
    r = _cli(*RUN, "--out", str(run))
    assert r.returncode == 0, r.stderr[-2000:]
    return run

def _ckpt_step(run):
    try: return read_checkpoint(run / "last.ckpt")["step"]
    except Exception: return -1

@pytest.mark.parametrize("moment", ["mid-training", "as the report starts", "after the first sample grid"])
def test_kill_anywhere_then_resume_ends_like_the_straight_run(straight, tmp_path, moment):
    run = tmp_path / "R"
    when = {"mid-training": lambda: _ckpt_step(run) >= 12,
            "as the report starts": lambda: _safe_phase(run) == "reporting",
            "after the first sample grid": lambda: (run / "samples_prior.png").is_file()}[moment]
    proc = _start(*RUN, "--out", str(run))
    _wait_for(when, proc)
    _kill(proc)
    r = _cli("train", "--resume", str(run))
    assert r.returncode == 0, r.stderr[-2000:]
    a, b = _metrics(run), _metrics(straight)
    assert a["finished"] and a["phase"] == "finished"
    for k in NUMBERS: assert a[k] == b[k], (k, a[k], b[k])
    for f in SAME:
        if f.endswith(".safetensors"):          # the header's metadata order varies between processes: compare what it holds
            (ta, ma), (tb, mb) = load_tensors(run / f), load_tensors(straight / f)
            assert ma == mb and ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), f
        else: assert (run / f).read_bytes() == (straight / f).read_bytes(), f
