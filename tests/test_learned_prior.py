"""The learned prior of chapter 10b on a short real run: it predicts the codes of unseen faces better than the fitted
Gaussian, and its safetensors file loads back into the same sampler."""
import torch
from vae_course.data import OpenMoji
from vae_course.recipes import load_model
from vae_course.samplers import GaussianSampler, save_sampler, load_sampler, decode_samples
from vae_course.learned_prior import ARPriorSampler, fit_ar_prior, held_out_nll, latent_grid, LEARNED_SAMPLERS

def _codes(model, split):
    ds = OpenMoji(model.cfg.img_size, split, value_range=model.value_range)
    with torch.no_grad(): return model.encode(torch.stack([ds[i] for i in range(len(ds))]))

def test_learned_prior_beats_the_fitted_gaussian_and_round_trips(shared_run, tmp_path):
    run, _ = shared_run("default", 60)
    model = load_model(run).eval()
    (mu, _), (vmu, _) = _codes(model, "train"), _codes(model, "valid")
    c = model.cfg
    ar = ARPriorSampler(mu.shape[1], latent_grid(c), hidden=64)
    losses = fit_ar_prior(ar, mu, steps=300)                      # on the posterior means, as the Gaussian: the same codes for both
    assert losses[-1] < losses[0]
    g = GaussianSampler(mu.shape[1]).fit(mu)
    nll = dict(ar=held_out_nll(ar, vmu), gaussian=held_out_nll(g, vmu))
    assert nll["ar"] < nll["gaussian"], nll                       # nats per latent number of the unseen faces' codes
    back = load_sampler(save_sampler(ar, tmp_path / "sampler_ar.safetensors"), dim=model.cfg.latent_dim, kinds=LEARNED_SAMPLERS)
    assert back.config() == ar.config()
    a, b = decode_samples(model, ar, 4, seed=2), decode_samples(model, back, 4, seed=2)
    assert torch.equal(a, b) and a.shape == (4, 3, c.img_size, c.img_size)

def test_a_run_saves_its_learned_prior_and_judges_it(shared_run):
    "Every VAE run fits the learned prior after training (20 steps on the smoke tier), saves it next to the other samplers and reports its samples."
    import json
    from vae_course.explore import run_sampler
    run, log = shared_run("default", 3)
    m = json.loads((run / "metrics.json").read_text())
    assert m["gen_ar_fit_steps"] == 20 and m["gen_ar_fit_seconds"] > 0
    for k in ("fd", "precision", "recall", "nearest_psnr", "nearest_valid_psnr", "c2st"): assert f"gen_ar_{k}" in m, k
    assert 0 <= m["gen_real_c2st"] <= 1 and 0 <= m["gen_ar_c2st"] <= 1
    assert abs(m["gen_ar_novelty_gap_db"] - (m["gen_ar_nearest_psnr"] - m["gen_real_nearest_psnr"])) < 1e-9
    assert (run / "samples_ar.png").is_file() and any("ar " in l and "novelty gap / two-sample accuracy" in l for l in log), log
    ar = run_sampler(run, "ar", dim=m["latent_dim"])
    assert isinstance(ar, ARPriorSampler) and ar.config()["shape"] == [4, 8, 8]

def test_latent_prior_steps_zero_fits_none(shared_run):
    import json
    run, _ = shared_run("default", 3, latent_prior_steps=0)
    assert not (run / "sampler_ar.safetensors").exists() and "gen_ar_fd" not in json.loads((run / "metrics.json").read_text())
    assert (run / "sampler_gaussian.safetensors").is_file()

def _bench(name="learned_prior"):
    import importlib.util, pathlib
    path = pathlib.Path(__file__).resolve().parent.parent / "bench" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod, path

def row(name, fd, gap, **kw):
    "A benchmark row with what its table prints."
    return dict(sampler=name, fd=fd, novelty_gap=gap, precision=0.1, recall=0.1, nearest_train=9.0, nearest_valid=float("nan"), nll=float("nan"), **kw)

def test_benchmark_says_target_met_only_when_both_numbers_are():
    bench, _ = _bench()
    def line(fd, gap, **kw):
        info = dict(steps=100, minutes=1.0, val_psnr=24.0)
        rows = [row("unseen real faces", 527, 0.0), row("control: reconstructions of the unseen faces", 442, 0.2), row("gaussian", 650, 1.5),
                row("learned", fd, gap, fit_s=1, reach=2, hidden=8, steps=10, **kw)]
        return bench.summary([(info, rows)])[-1]
    assert line(500, 0.9).endswith("| yes |")
    assert line(530, 0.5).endswith("| no |")                      # new but farther from the data than unseen faces
    assert line(300, 3.0).endswith("| no |")                      # close to the data because it copies
    assert line(500, 0.2, temperature=1.5).endswith("| no |")    # tempered: the FD falls while samples turn to scribbles

def test_benchmark_names_the_mirrored_setting_it_picked():
    bench, _ = _bench()
    rows = [row("unseen real faces", 527, 0.0), row("control: reconstructions of the unseen faces", 442, 0.2), row("gaussian", 650, 1.5)]
    rows += [row(f"learned {f}", fd, 0.5, fit_s=1, sample_s=1, reach=2, hidden=8, steps=10, flips=f, seed=s)
             for f, fd in [(False, 700), (True, 640)] for s in (0, 1)]
    info = dict(run="r", steps=100, minutes=1.0, val_psnr=24.0, machine="cpu", n_train=10, n_valid=10, shape=[4, 16, 16])
    assert "640 / 0.50 (reach 2, no rows above, hidden 8, 10 steps, + mirrored codes)" in bench.summary([(info, rows)])[-1]
    medians = [l for l in bench.table(info, rows) if "medians" in l]
    assert len(medians) == 2 and "+ mirrored codes" in medians[1] and "+ mirrored codes" not in medians[0], medians

def test_benchmark_refuses_a_folder_that_is_no_run(tmp_path):
    import subprocess, sys
    _, path = _bench()
    r = subprocess.run([sys.executable, str(path), str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "not a finished run" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

def test_main_job_table_says_how_often_the_learned_prior_is_told_apart():
    "The README's table: the two-sample column, and the runs in which the learned prior is told from training faces no more often than unseen real faces."
    main_job, _ = _bench("main_job")
    run = lambda ar_c2st: dict(step=100, val_psnr=24.0, train_psnr=25.0, machine="cpu", gen_ar_fit_seconds=30.0, gen_ar_fit_steps=600,
                               **{f"gen_{k}_{m}": v for k in ("real", "ar") for m, v in dict(fd=500.0, novelty_gap_db=0.0, precision=0.1,
                                  recall=0.3, nearest_psnr=9.0, c2st=0.87 if k == "real" else ar_c2st).items()})
    lines = main_job.table([run(0.93), run(0.86), run(0.95)])
    assert "two-sample acc." in lines[3] and any(l.startswith("| learned prior") and "| 0.93 (0.86–0.95) |" in l for l in lines)
    assert lines[-1].endswith("no more often than unseen real faces in 1 of 3 runs")
    older = {k: v for k, v in run(0.9).items() if not k.endswith("_c2st")}            # runs from before the metric: no column, no line
    assert "told from" not in main_job.table([older])[-1]

