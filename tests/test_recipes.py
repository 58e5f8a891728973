"""Integration tests of the recipes: a CPU smoke run of every reference recipe through `run_recipe` (the code path
of the training notebooks and the command line), the artifacts each leaves, the generated YAML files, parameter
checks, the time budget and loading a trained model back."""
import json
from pathlib import Path
import pytest, torch
from vae_course.recipes import (RECIPES, PARAMS, load_recipe, validate_params, run_recipe, recipe_files_drift,
                                load_model, reconstruct)

ROOT = Path(__file__).resolve().parent.parent
COMMON = ("params.yaml", "metrics.json", "loss_components.png", "psnr_curve.png", "psnr_curve.csv", "recon.png",
          "samples_temperature.png", "interpolation.png", "last.ckpt", "model.safetensors")

@pytest.mark.parametrize("name", list(RECIPES))
def test_smoke_run_of_every_recipe(name, shared_run):
    "Each recipe, shrunk by its 'smoke' entry, trains a few steps on OpenMoji and leaves every artifact."
    steps = 4 if name == "anime_vq" else 3                       # anime_vq: the GAN term switches on at step 2
    p = load_recipe(name, tier="smoke", steps=steps)
    assert p["pretrained"] is False and p["data_source"] == "openmoji"
    run, _ = shared_run(name, steps)
    names = {f.name for f in run.iterdir()}
    missing = [f for f in COMMON if f not in names]
    assert not missing, f"{name}: missing artifacts {missing}"
    assert any(n.startswith("events.out.tfevents") for n in names), "no TensorBoard logs"
    m = json.loads((run / "metrics.json").read_text())
    assert m["step"] == steps and m["recipe"] == name
    for k in ("val_psnr", "val_ssim", "val_lpips"): assert isinstance(m[k], float), k
    assert m["lpips_pretrained"] is False and "pretrained=False" in m["lpips_note"]
    assert m["psnr_curve"] and m["psnr_curve"][-1]["step"] == steps
    if RECIPES[name].get("model") == "vq":
        assert "codebook_usage.png" in names and 1 <= m["val_codes_used"] <= m["num_codes"]
        assert "val_kl" not in m
    else:
        assert m["val_kl"] > 0 and m["val_bits_per_dim"] > 0
        for kind in ("prior", "gaussian", "gmm"):                      # every VAE run reports generation
            assert f"samples_{kind}.png" in names
            assert all(isinstance(m[f"gen_{kind}_{k}"], float) for k in ("fd", "kid", "precision", "recall", "nearest_psnr"))
        assert {"sampler_gaussian.safetensors", "sampler_gmm.safetensors"} <= names
        assert isinstance(m["gen_real_precision"], float) and "feature space" in m["gen_note"]
    if name == "anime_vq":
        assert m["train"]["last"]["valid_gan_factor"] > 0 and "valid_g_loss" in m["train"]["last"]  # VQ-GAN by now
        assert "prior.safetensors" in names and m["vq_samples"].startswith("autoregressive code prior")
        assert 0 < m["val_prior_bits_per_image"] < 1.5 * m["uniform_bits_per_image"]   # a finite fit, sane scale
    if name == "pixel_art": assert "quality_net.pt" in names

def test_recipe_files_match_the_library():
    "nbs/recipes/*.yaml are exactly what vae_course.recipes generates (regenerate with write_recipe_files)."
    assert recipe_files_drift(ROOT / "nbs" / "recipes") == []
    for name in RECIPES: assert load_recipe(ROOT / "nbs" / "recipes" / f"{name}.yaml") == load_recipe(name)

def test_reference_configurations():
    "The numbers of the issue, as the recipes hold them."
    u = load_recipe("ultra")
    assert (u["image_size"], u["latent_dim"] or 1024, u["mse"], u["l1"], u["perceptual"], u["lpips"]) == (256, 1024, 0.4, 0.2, 0.2, 0.2)
    assert (u["lr"], u["optimizer"], u["weight_decay"], u["lr_schedule"], u["plateau_patience"], u["early_stopping"]) == \
           (5e-5, "adam", 1e-5, "plateau", 10, 20) and u["kl_schedule"] == "adaptive_cyclical"
    px = load_recipe("pixel_art")
    assert (px["image_size"], px["kl_weight"], px["quality_weight"], px["resize"]) == (128, 0.01, 1.0, "nearest")
    c = load_recipe("celeba64")
    assert (c["preset"], c["optimizer"], c["lr"], c["kl_schedule"], c["perceptual"], c["amp"]) == ("celeba64", "adam", 1e-4, "linear", 0.1, "bf16")
    a = load_recipe("anime_vq")
    assert (a["model"], a["image_size"], a["l1"], a["lpips"], a["lr"], a["lr_schedule"]) == ("vq", 256, 1.0, 0.5, 2e-4, "cosine")
    assert a["warmup_steps"] > 0 and a["gan_weight"] > 0 and a["gan_ramp"] > 0 and a["prior_steps"] > 0
    from vae_course.vq import VQ_PRESETS
    assert VQ_PRESETS[a["preset"]].num_codes == 1024 and VQ_PRESETS[a["preset"]].quantizer == "ema"
    v = load_recipe("vanilla")
    assert (v["image_size"], v["kl_weight"], v["lr_schedule"], v["lr_gamma"]) == (256, 1e-4, "exponential", 0.95)
    for name in RECIPES: assert load_recipe(name)["pretrained"] is True     # real runs need the ImageNet weights

@pytest.mark.parametrize("bad, words", [
    (dict(lerning_rate=1e-3), ["'lerning_rate'", "did you mean 'lr'"]),
    (dict(lr=-1), ["parameter 'lr'", "a number in"]),
    (dict(tier="gpu"), ["parameter 'tier'", "'smoke'", "'high'"]),
    (dict(kl_schedule="warm"), ["parameter 'kl_schedule'", "'cyclical'"]),
    (dict(channels=[16, 0]), ["parameter 'channels'"]),
    (dict(data_source="folder"), ["'data_path' is needed"]),
    (dict(image_size=50), ["'image_size'", "multiple of"]),
    (dict(preset="vanila"), ["parameter 'preset'", "vanilla"]),
    (dict(latent_dim=256), ["'latent_dim' is set but latent='spatial'", "set latent_ch"]),
])
def test_bad_parameters_are_named(bad, words):
    with pytest.raises(ValueError) as e: load_recipe("default", **bad)
    for w in words: assert w in str(e.value), (w, str(e.value))

def test_real_folder_and_time_budget(tmp_path):
    "A recipe on a folder of images (nearest resize), stopped by its wall-clock budget; load_model gives the model back."
    from PIL import Image
    import numpy as np
    rng = np.random.default_rng(0)
    for i in range(40): Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    p = load_recipe("pixel_art", tier="smoke", data_source="folder", data_path=str(tmp_path), steps=None, epochs=None,
                    time_budget_min=0.05, out_dir=str(tmp_path / "run"), quality_weight=0.0)
    assert p["resize"] == "nearest"
    run = run_recipe(p, log=lambda *a: None)
    m = json.loads((run / "metrics.json").read_text())
    assert m["step"] >= 1 and m["wall_time_s"] < 60
    assert "gen_gaussian_fd" not in m and "OpenMoji" in m["gen_note"]   # the feature network knows emoji only: said, not faked
    assert (run / "sampler_gaussian.safetensors").is_file() and "gen_gaussian_nearest_psnr" in m
    model = load_model(run)
    x = torch.rand(2, 3, 32, 32)
    assert reconstruct(model, x).shape == x.shape

def test_missing_lpips_weights_are_reported_not_replaced(monkeypatch):
    "After a real run, missing ImageNet weights leave val_lpips empty with the instructions, never a random-trunk number."
    from vae_course import metrics as M
    from vae_course.losses import WeightsUnavailableError
    from vae_course.recipes import evaluate
    from vae_course.vae import build_vae
    def offline(*a, pretrained=True, **k):
        if pretrained: raise WeightsUnavailableError("weights missing: copy alexnet.pth to ~/.cache/torch/hub/checkpoints")
        return torch.tensor(0.5)
    monkeypatch.setattr(M, "lpips_metric", offline)
    with pytest.warns(UserWarning, match="LPIPS not computed"):
        out = evaluate(build_vae("tiny", img_size=32), torch.rand(4, 3, 32, 32), pretrained=True)
    assert out["val_lpips"] is None and out["lpips_pretrained"] is False and "copy alexnet" in out["lpips_note"]

def test_train_and_valid_psnr_side_by_side(shared_run):
    "metrics.json, the PSNR curve (csv and figure) and TensorBoard carry training PSNR next to validation PSNR, and TensorBoard the final metrics."
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run, _ = shared_run("default", 3)
    m = json.loads((run / "metrics.json").read_text())
    assert isinstance(m["train_psnr"], float) and isinstance(m["val_psnr"], float)
    assert all("train_psnr" in row for row in m["psnr_curve"])
    assert "train_psnr" in (run / "psnr_curve.csv").read_text().splitlines()[0]
    tags = set()
    for ev in run.glob("events.out.tfevents*"): acc = EventAccumulator(str(ev)); acc.Reload(); tags |= set(acc.Tags()["scalars"])
    assert {"valid/psnr", "train/psnr", "final/val_psnr", "final/train_psnr"} <= tags, sorted(tags)
    assert "loss/reconstruction" in tags and "train/mse" not in tags, "one reconstruction term: one curve, not two"
    assert {"loss/kl", "opt/beta"} <= tags, "the reference systems' TensorBoard names"

def test_saved_sampler_draws_what_the_run_drew(shared_run):
    "A run's fitted samplers load back from safetensors (no pickle) and decode the same images as the run's own fit."
    from vae_course.samplers import load_sampler, sampler_path, decode_samples
    run, _ = shared_run("default", 3)
    model = load_model(run)
    for kind in ("gaussian", "gmm"):
        s = load_sampler(sampler_path(run, kind))
        assert s.kind == kind and s.dim == model.cfg.latent_dim
        a, b = decode_samples(model, s, 4, seed=1), decode_samples(model, s, 4, seed=1)
        assert torch.equal(a, b) and a.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="not a sampler file"): load_sampler(run / "model.safetensors")

def test_progress_follows_the_time_budget(tmp_path, capsys, monkeypatch):
    "A bar on a terminal whose total follows the time budget (not 1,000,000,000 steps); without a terminal, periodic lines."
    from vae_course.recipes import progress_callback
    from vae_course.training import ProgressCB, HeartbeatCB
    p = load_recipe("default", tier="smoke", steps=None, time_budget_min=0.05, out_dir=str(tmp_path / "r"))
    assert p["progress"] is None
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    assert isinstance(progress_callback(p), HeartbeatCB)
    run_recipe({**p, "progress": True}, log=lambda *a: None)
    err = capsys.readouterr().err
    assert "step" in err and "1000000000" not in err, err[-500:]
    assert isinstance(progress_callback({**p, "progress": True}), ProgressCB)
