"""Integration tests of the training engine: exact resume after a real kill, DDP replicas, non-finite losses,
architecture checks, tiers and atomic checkpoints. Each runs on CPU in a few seconds."""
import os, signal, subprocess, sys, time
from pathlib import Path
import pytest, torch
from torch import nn
from vae_course.training import *
from vae_course.data import InMemoryLoader

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "_train_run.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}

def _run(*args, **kw):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], env=ENV, capture_output=True, text=True, timeout=120, **kw)

def _ckpt_step(path):
    try: return torch.load(path, weights_only=True)["step"]
    except Exception: return -1

def test_kill_and_resume_is_bit_exact(tmp_path):
    """A VAE run (β warm-up, reparameterisation noise, accumulation) SIGKILLed mid-training and resumed from its
    last checkpoint ends at the same weights, bit for bit, as an uninterrupted run."""
    steps = 20
    r = _run(tmp_path / "full", "--steps", steps, "--model", "tiny", "--dump"); assert r.returncode == 0, r.stderr
    full = torch.load(tmp_path / "full" / "final_rank0.pt")
    out = tmp_path / "killed"; out.mkdir()
    p = subprocess.Popen([sys.executable, str(SCRIPT), str(out), "--steps", str(steps), "--model", "tiny", "--sleep", "0.3"], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt, t0 = out / "run" / "last.ckpt", time.time()
    while _ckpt_step(ckpt) < 7 and p.poll() is None and time.time() - t0 < 90: time.sleep(0.1)
    p.send_signal(signal.SIGKILL); p.wait()
    assert p.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = _ckpt_step(ckpt)
    assert 7 <= killed_at < steps
    r = _run(out, "--steps", steps, "--model", "tiny", "--resume", ckpt, "--dump"); assert r.returncode == 0, r.stderr
    resumed = torch.load(out / "final_rank0.pt")
    assert resumed["step"] == full["step"] == steps
    assert torch.equal(resumed["params"], full["params"]), f"resumed from step {killed_at} but weights differ"

def test_ddp_two_processes_keep_identical_replicas(tmp_path):
    "torchrun with 2 gloo processes: each trains on its shard, gradients are averaged, replicas stay identical."
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(SCRIPT), str(tmp_path), "--steps", "6", "--dump"]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (torch.load(tmp_path / f"final_rank{i}.pt") for i in (0, 1))
    assert a["step"] == b["step"] == 6
    assert torch.equal(a["params"], b["params"])
    single = _run(tmp_path / "single", "--steps", "6", "--dump")
    assert single.returncode == 0, single.stderr
    s = torch.load(tmp_path / "single" / "final_rank0.pt")["params"]
    assert not torch.equal(s, a["params"])          # a different (sharded) data stream: really distributed
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["best.ckpt", "last.ckpt", "metrics.json", "model.safetensors"]

class Lin(nn.Module):
    def __init__(self, n=4):
        super().__init__(); self.l = nn.Conv2d(3, 3, 1)
    def forward(self, x): return dict(recon=self.l(x))

class NaNAt(MSEObjective):
    "MSE, but the loss is NaN at the given calls (0-based)."
    def __init__(self, bad): self.bad, self.calls = set(bad), 0
    def __call__(self, model, x, step=0):
        t = super().__call__(model, x, step)
        if self.calls in self.bad: t["loss"] = t["loss"] * float("nan")
        self.calls += 1
        return t

def _trainer(tmp_path, objective, **kw):
    torch.manual_seed(0)
    imgs = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    cfg = TrainConfig(out_dir=str(tmp_path), device="cpu", tier="cpu", batch_size=8, accum_steps=1, amp="none",
                      progress=False, tensorboard=False, **{"epochs": None, "log_every": 1, **kw})
    return Trainer(Lin(), InMemoryLoader(imgs, 8, device="cpu"), None, cfg, objective)

def test_nonfinite_step_is_skipped(tmp_path):
    tr = _trainer(tmp_path, NaNAt({2}), max_steps=5)
    with pytest.warns(UserWarning, match="non-finite"): tr.fit()
    assert tr.step == 5 and tr.n_skipped == 1
    assert all(torch.isfinite(p).all() for p in tr.raw_model.parameters())
    st = tr.optimizers["model"].state_dict()["state"]
    assert all(torch.isfinite(s["exp_avg"]).all() for s in st.values())

def test_nonfinite_stop_keeps_last_good_checkpoint(tmp_path):
    tr = _trainer(tmp_path, NaNAt({3, 4, 5, 6}), max_steps=8, nonfinite="stop", save_every_steps=1)
    with pytest.raises(NonFiniteError, match="Training stopped"): tr.fit()
    ck = load_checkpoint(tr.run_dir / "last.ckpt", Lin())
    assert ck["step"] == 3
    assert not (tr.run_dir / "model.safetensors").exists()
    tr.raw_model.l.weight.data[0] = float("nan")           # a broken state is never written
    with pytest.raises(NonFiniteError, match="refusing"): tr.save(tr.run_dir / "last.ckpt")
    assert load_checkpoint(tr.run_dir / "last.ckpt")["step"] == 3

def test_too_many_skips_stop(tmp_path):
    tr = _trainer(tmp_path, NaNAt(range(100)), max_steps=50, max_skips=3)
    with pytest.warns(UserWarning), pytest.raises(NonFiniteError, match="3 bad step"): tr.fit()

def test_wrong_architecture_is_a_clear_error(tmp_path):
    save_checkpoint(tmp_path / "a.ckpt", nn.Conv2d(3, 8, 3))
    with pytest.raises(ValueError, match="another architecture.*shape"):
        load_checkpoint(tmp_path / "a.ckpt", nn.Conv2d(3, 16, 3))
    with pytest.raises(ValueError, match="another architecture.*class Conv2d != Linear"):
        load_checkpoint(tmp_path / "a.ckpt", nn.Linear(3, 8))
    export_safetensors(nn.Conv2d(3, 8, 3), tmp_path / "a.safetensors")
    with pytest.raises(ValueError, match="another architecture"):
        load_safetensors(nn.Conv2d(3, 4, 3), tmp_path / "a.safetensors")

@pytest.mark.parametrize("name", ["huge", "gpu", ""])
def test_bad_tier_lists_valid_ones(name):
    with pytest.raises(ValueError, match="choose one of: auto, high, mid, low, cpu"): resolve_tier(name)
    with pytest.raises(ValueError, match="choose one of"): TrainConfig(tier=name, device="cpu").resolve()

def test_atomic_save_survives_a_crash_while_writing(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint(path, nn.Linear(2, 2), step=1)
    real_save = torch.save
    def crash(obj, f, *a, **k):
        f.write(b"half a checkpoint"); raise KeyboardInterrupt("killed while saving")
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt): save_checkpoint(path, nn.Linear(2, 2), step=2)
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path, nn.Linear(2, 2))["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]

def test_checkpoint_loads_weights_only(tmp_path):
    "A checkpoint holding an arbitrary object is refused by weights_only loading."
    torch.save({"evil": Lin()}, tmp_path / "x.ckpt")
    with pytest.raises(Exception, match="[Ww]eights only"): load_checkpoint(tmp_path / "x.ckpt")

def test_accumulation_equals_big_batch(tmp_path):
    "Two micro-batches of 8 with accumulation give the same step as one batch of 16."
    def run(bs, acc):
        torch.manual_seed(0); m = Lin()
        imgs = torch.randint(0, 256, (16, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        cfg = TrainConfig(out_dir=str(tmp_path), device="cpu", tier="cpu", batch_size=bs, accum_steps=acc, amp="none",
                          progress=False, tensorboard=False, max_steps=1, epochs=None, schedule="constant", grad_clip=0)
        Trainer(m, InMemoryLoader(imgs, bs, shuffle=False, device="cpu"), None, cfg).fit()
        return m.l.weight.detach().clone()
    torch.testing.assert_close(run(8, 2), run(16, 1))

class KLLog(MSEObjective):
    "MSE plus a made-up 'kl' term that counts the calls (1, 2, 3, ...), and a β schedule that records what it is given."
    def __init__(self):
        self.calls = 0
        class Rec:
            value, seen = 1.0, []
            def step(self, kl=None): self.seen.append(kl)
        self.beta = Rec()
    def __call__(self, model, x, step=0):
        t = super().__call__(model, x, step); self.calls += 1
        t["kl"] = torch.tensor(float(self.calls)); return t

def test_epoch_beta_schedule_reads_the_epochs_mean_kl(tmp_path):
    "Per-epoch β control is steered by the mean KL of the epoch's steps, not by its last batch (the ultra reference)."
    obj = KLLog()
    tr = _trainer(tmp_path, obj, epochs=2, beta_step="epoch")   # 4 steps per epoch: KLs 1..4 then 5..8
    tr.fit()
    assert obj.beta.seen == [2.5, 6.5]
