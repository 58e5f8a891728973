"Integration tests of #13: the recipes reproduce their reference systems (seed cards, losses, schedules, outputs, commands)."
import json, re
from pathlib import Path
import pytest, torch
import torch.nn.functional as F
from vae_course.recipes import load_recipe, run_recipe, build_model, build_objective, build_data, train_config
from vae_course.reference import (SEED_CARDS, STATED, READING, NOT_STATED, seed_card_drift, seed_card_markdown, unquoted,
                                  unlisted_parameters, reference_text)

ROOT = Path(__file__).resolve().parent.parent
quiet = lambda *a, **k: None

def _tags(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = {"scalars": set(), "images": set(), "histograms": set()}
    for ev in Path(run).glob("events.out.tfevents*"):
        acc = EventAccumulator(str(ev)); acc.Reload()
        for k in tags: tags[k] |= set(acc.Tags()[k])
    return tags

@pytest.mark.parametrize("name", list(SEED_CARDS))
def test_seed_card_holds_and_readme_shows_it(name):
    "Every value a seed card states is the recipe's; the README shows the card as the library renders it."
    assert seed_card_drift(name) == []
    assert seed_card_markdown(name) in (ROOT / "README.md").read_text(), f"README's seed card of {name} is out of date"

@pytest.mark.parametrize("name", list(SEED_CARDS))
def test_seed_card_quotes_its_reference_and_shows_every_choice(name):
    "A row marked stated quotes the reference's words; every parameter the recipe sets away from its default has a row."
    assert unquoted(name, reference_text(name)) == []
    assert unlisted_parameters(name) == []
    assert {row[2] for row in SEED_CARDS[name]} <= {STATED, READING, NOT_STATED}
    assert all(row[5] for row in SEED_CARDS[name] if row[2] != STATED), "a reading or a choice says why"

def test_the_reference_copies_are_the_shared_ones():
    "nbs/references/ is a copy of the project's shared reference systems (where this checkout has them next to it)."
    shared = ROOT.parent / "shared" / "reference-systems"
    if not shared.is_dir(): pytest.skip("no ../shared/reference-systems next to this checkout")
    for f in shared.glob("*.md"): assert (ROOT / "nbs" / "references" / f.name).read_text().endswith(f.read_text().split("\n", 1)[-1])

def test_pixel_art_loss_is_the_references():
    "MSE mean + 0.01 x KL mean over batch and dims - 1.0 x mean quality, as the reference computes it."
    torch.manual_seed(0)
    p = load_recipe("pixel_art", tier="smoke")
    model = build_model(p)
    obj = build_objective(p, model, quality=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1)))
    x = torch.rand(4, 3, 32, 32)
    torch.manual_seed(1); t = obj(model, x)
    torch.manual_seed(1); out = model(x)
    mu, logvar = out["mu"], out["logvar"]
    torch.testing.assert_close(t["recon"], F.mse_loss(out["recon"], x))
    torch.testing.assert_close(t["kl"], -0.5 * torch.mean(1 + logvar - mu.pow(2) - logvar.exp()))
    torch.testing.assert_close(t["loss"], t["recon"] + obj.beta.value * t["kl"] - 1.0 * t["quality"])

def test_ultra_reports_success_criteria_and_monitor_shows_them(shared_run, capsys):
    "An ultra run writes the reference's success criteria with pass/fail; `vae-course monitor` prints them."
    from vae_course.cli import main
    run, _ = shared_run("ultra", 3)
    s = json.loads((run / "metrics.json").read_text())["success"]
    assert set(s["criteria"]) == {"val_psnr", "val_lpips", "val_mse"}
    assert s["criteria"]["val_psnr"]["passed"] is False and s["criteria"]["val_psnr"]["target"] == "> 25"
    assert s["criteria"]["val_lpips"]["passed"] is None and s["passed"] is None   # random LPIPS weights decide nothing
    assert main(["monitor", str(run)]) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "success criteria: not decided" in out and "val_psnr" in out

def test_monitor_a_running_run(tmp_path, capsys):
    "While a run trains, its metrics.json is the trainer's record: monitor reads it as running and names the epoch."
    from vae_course.cli import main
    run = tmp_path / "r"; run.mkdir()
    (run / "metrics.json").write_text(json.dumps(dict(finished=False, step=40, epoch=2, monitor="valid_loss", best=0.5,
                                                      last=dict(train_loss=0.6, valid_loss=0.5), wall_time_s=90.0,
                                                      config=dict(epochs=200))))
    (run / "figures").mkdir(); (run / "figures" / "epoch_002_recon.png").write_bytes(b"png")
    from vae_course.core import run_lock
    with run_lock(run): assert main(["monitor", str(run)]) == 0          # a live process holds the run's folder
    out = capsys.readouterr().out
    assert ": running (pid " in out and "epoch 2 of 200, step 40" in out and "best valid_loss: 0.5" in out, out
    assert "figures/epoch_002_recon.png" in out

def test_figures_every_epochs(tmp_path):
    "celeba64 writes interpolation, temperature, reconstruction and loss figures every 5 epochs (here: every epoch)."
    p = load_recipe("celeba64", tier="smoke", steps=None, epochs=2, figures_every_epochs=1, out_dir=str(tmp_path / "c"),
                    data_source="folder", data_path=str(_faces(tmp_path, 40)))
    run = run_recipe(p, log=quiet)
    names = {f.name for f in (run / "figures").iterdir()}
    for e in (1, 2):
        assert {f"epoch_00{e}_{k}.png" for k in ("recon", "samples_temperature", "interpolation", "losses")} <= names, names

def _faces(tmp_path, n):
    from vae_course.data import OpenMoji, save_grid
    d = tmp_path / "faces"; d.mkdir(exist_ok=True)
    imgs = OpenMoji(32).images[:n].float() / 255
    for i, x in enumerate(imgs): save_grid(x[None], d / f"{i:03d}.png", nrow=1)
    return d

def test_on_disk_data_gets_flips_and_jitter(monkeypatch, tmp_path):
    "CelebA and folders too large for memory (a Dataset without .images) get the recipe's flips and colour jitter."
    import vae_course.recipes as R
    from vae_course.data import AugmentedLoader
    class OnDisk(torch.utils.data.Dataset):
        def __len__(self): return 16
        def __getitem__(self, i): return torch.linspace(0, 1, 32).expand(3, 32, 32).clone()
    monkeypatch.setattr(R, "_dataset", lambda p, split, vr: OnDisk())
    p = load_recipe("celeba64", tier="smoke", augment_jitter=0.1, out_dir=str(tmp_path))
    train_dl, *_ = build_data(p, train_config(p, tmp_path).resolve())
    assert isinstance(train_dl, AugmentedLoader)
    x = next(iter(train_dl))
    flipped = (x[:, 0, 0, 0] > x[:, 0, 0, -1])                  # the ramp runs the other way
    assert flipped.any() and not flipped.all()

def test_learned_variance_decoder_is_selectable(tmp_path):
    "celeba64 with the variance-predicting decoder: a Gaussian NLL, log-variance clamped to [-10, 10]; half a pair is refused."
    p = load_recipe("celeba64", tier="smoke", steps=2, learned_variance=True, nll=1.0, mse=0.0, out_dir=str(tmp_path / "v"))
    run = run_recipe(p, log=quiet)
    assert json.loads((run / "metrics.json").read_text())["step"] == 2
    m = build_model(p); out = m(torch.rand(2, 3, 32, 32))
    assert out["recon_logvar"].shape == (2, 3, 32, 32) and out["recon_logvar"].abs().max() <= 10
    with pytest.raises(ValueError, match="go together"): load_recipe("celeba64", nll=1.0)

def test_vanilla_logs_images_every_n_steps(tmp_path):
    "vanilla writes reconstruction grids every image_every_steps (5,000 in the recipe) and checkpoints every save_every_steps."
    p = load_recipe("vanilla", tier="smoke", steps=4, image_every_steps=2, save_every_steps=2, out_dir=str(tmp_path / "v"))
    assert load_recipe("vanilla")["log_every"] == 50
    run = run_recipe(p, log=quiet)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    steps = set()
    for ev in run.glob("events.out.tfevents*"):
        acc = EventAccumulator(str(ev)); acc.Reload()
        if "images/recon" in acc.Tags()["images"]: steps |= {e.step for e in acc.Images("images/recon")}
    assert {2, 4} <= steps, steps

def test_anime_vq_reports_codes_and_samples(shared_run):
    "anime_vq: k-means on many images, per-batch and moving-average perplexity, a code-usage histogram, FD of its samples."
    run, lines = shared_run("anime_vq", 4)
    assert any(l.startswith("codebook: k-means on up to") and "from 64 training images" in l for l in lines), lines
    m = json.loads((run / "metrics.json").read_text())
    assert all(isinstance(m[f"gen_vq_{k}"], float) for k in ("fd", "kid", "precision", "recall"))
    assert m["train"]["monitor"] == "valid_recon", "the best checkpoint is chosen without the GAN terms"
    tags = _tags(run)
    assert {"train/perplexity", "train/perplexity_avg"} <= tags["scalars"] and "codes/usage" in tags["histograms"]

def test_anime_vq_schedule_scales_to_a_short_run(tmp_path):
    "A run shorter than the reference's 100k steps scales the GAN schedule and says so in metrics.json."
    lines = []
    p = load_recipe("anime_vq", tier="smoke", steps=10, time_budget_min=None, gan_start=20_000, gan_ramp=20_000,
                    reference_steps=100_000, prior_steps=0, out_dir=str(tmp_path / "a"))
    run = run_recipe(p, log=lines.append)
    s = json.loads((run / "metrics.json").read_text())["reference_scaling"]
    assert (s["gan_start"], s["gan_ramp"]) == (2, 2) and any("scaled" in l for l in lines)
    assert json.loads((run / "metrics.json").read_text())["train"]["last"]["valid_gan_factor"] > 0   # the GAN phase happened

def test_compare_two_runs_from_the_shell(tmp_path, capsys, shared_run):
    "`vae-course compare RUN_A RUN_B --images PATH`: a side-by-side comparison.png and a table (a VAE against a VQ-VAE)."
    from vae_course.cli import main
    (a, _), (b, _) = shared_run("default", 3), shared_run("anime_vq", 4)
    imgs = _faces(tmp_path, 3)
    assert main(["compare", str(a), str(b), "--images", str(imgs), "--out", str(tmp_path / "cmp"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "| psnr |" in out and "| codes_used |" in out and "| kl_nats |" in out
    assert (tmp_path / "cmp" / "comparison.png").is_file()
    c = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert c["A"]["model"] == "VAE" and c["B"]["model"] == "VQVAE" and len(c["images"]) == 3
    with pytest.raises(SystemExit) as e: main(["compare", str(a), str(tmp_path / "nope"), "--images", str(imgs)])
    assert e.value.code == 2
