"""The learned prior of chapter 10b against chapter 10's samplers, on trained runs (by default the main job's).
Not a test: run it by hand after `make train`.

    python bench/learned_prior.py                                  # runs/main/default_cpu
    python bench/learned_prior.py RUN_DIR ... --steps 600 --reach 1 2 --hidden 128 256 --segments 0 4 --seeds 0 1 2 --flips --temperatures 1 1.5

For each run and each prior setting it fits the prior on posterior draws of the run's training codes (as the run's
own samplers are fitted on its training faces), decodes as many samples as there are validation faces, and prints
FD, precision and recall against the training faces (the emoji feature space of chapter 08), the median PSNR to
the nearest training and validation face, the novelty gap (chapter 10: about 0 for new images, large for copies)
and the held-out log-likelihood of the validation faces' codes. Two controls bound what any prior can do with this
decoder: the reconstructions of the unseen faces (codes as the encoder puts unseen faces: the ceiling of a prior
that learned the codes' distribution) and of training faces (copies). Several runs (a curve against training
length) end in one summary table. Fit and sampling times are given with the CPU. `--temperatures` also samples each
fitted prior at other temperatures; the summary's verdict reads temperature 1 only (see `summary`).
Results go to bench/results/learned_prior.{json,md}, and a grid to judge by eye (ten samples a row: the
reconstructions of unseen faces first, then every learned-prior row in table order) to learned_prior_samples.png.
"""
import argparse, itertools, json, statistics, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HEAD = "| samples | FD | two-sample acc. | precision | recall | nearest train (dB) | nearest valid (dB) | novelty gap (dB) | held-out NLL | fit / sample (s) |"

def setting(reach, hidden, steps, segments=0) -> str:
    "A learned-prior setting as its rows name it: the window's reach, the rows above (pooled into `segments` stretches, 0: not seen), width and fit steps."
    return f"reach {reach}, {f'rows above in {segments}' if segments else 'no rows above'}, hidden {hidden}, {steps} steps"

def variant(flips=False, temperature=1) -> str:
    "How a learned-prior row differs from a plain fit sampled at temperature 1, as its labels say it."
    return f"{', + mirrored codes' if flips else ''}{'' if temperature == 1 else f', temperature {temperature:g}'}"

def judge_run(run, a):
    "Every row of one run's table: controls, the run's fitted samplers, then each learned-prior setting."
    from vae_course.recipes import load_model
    from vae_course.data import OpenMoji
    from vae_course.metrics import sample_metrics
    from vae_course.samplers import fit_samplers, decode_samples, nearest_psnr
    from vae_course.learned_prior import ARPriorSampler, fit_ar_prior, held_out_nll, latent_grid, posterior_codes
    model = load_model(run).eval()
    cfg, vr = model.cfg, tuple(model.value_range)
    if cfg.latent != "spatial": sys.exit(f"{run}: a flat latent; this benchmark compares priors over a latent grid")
    shape = latent_grid(cfg)
    load = lambda split: (lambda ds: torch.stack([ds[i] for i in range(len(ds))]))(OpenMoji(cfg.img_size, split, value_range=vr))
    tx, vx = load("train"), load("valid")
    with torch.no_grad():
        mu, logvar = posterior_codes(model, tx)
        mirrored = posterior_codes(model, tx.flip(-1)) if a.flips else None   # the run trains on mirror images too (augment_flip)
        vmu = posterior_codes(model, vx)[0]
        decode = lambda z: torch.cat([model.decode(b) for b in z.split(256)]).clamp(*vr)
        copies = decode(mu[torch.randperm(len(mu), generator=torch.Generator().manual_seed(0))[:len(vx)]])
        unseen = decode(vmu)
    base = nearest_psnr(vx, tx, vr).median().item()
    rows, grid = [], [unseen[:10]]
    def add(name, x, s=None, **extra):
        m = sample_metrics(tx, x, "emoji", vr)
        near = nearest_psnr(x, tx, vr).median().item()
        rows.append(dict(sampler=name, fd=m["fd"], precision=m["precision"], recall=m["recall"], nearest_train=near,
                         nearest_valid=nearest_psnr(x, vx, vr).median().item() if x is not vx else float("nan"), c2st=m["c2st"],
                         novelty_gap=near - base, nll=held_out_nll(s, vmu) if s is not None else float("nan"), **extra))
    add("unseen real faces", vx)
    add("control: reconstructions of the unseen faces", unseen)
    add("control: reconstructions of training faces (copies)", copies)
    for name, s in fit_samplers(model, tx).items(): add(name, decode_samples(model, s, len(vx), seed=0), s)
    flip_options = [False, True] if a.flips else [False]
    for reach, hidden, steps, segments, flips, seed in itertools.product(a.reach, a.hidden, a.steps, a.segments, flip_options, a.seeds):
        codes = (torch.cat([mu, mirrored[0]]), torch.cat([logvar, mirrored[1]])) if flips else (mu, logvar)
        ar = ARPriorSampler(mu.shape[1], shape, reach=reach, hidden=hidden, segments=segments, seed=seed)
        t0 = time.perf_counter(); fit_ar_prior(ar, *codes, steps=steps); fit_s = time.perf_counter() - t0
        for temp in a.temperatures:
            t0 = time.perf_counter(); x = decode_samples(model, ar, len(vx), temp, seed=0); sample_s = time.perf_counter() - t0
            add(f"learned prior, {setting(reach, hidden, steps, segments)}{variant(flips, temp)}, seed {seed}",
                x, ar if temp == 1 else None, fit_s=fit_s, sample_s=sample_s, reach=reach, hidden=hidden,
                steps=steps, segments=segments, flips=flips, temperature=temp, seed=seed)
            grid.append(x[:10].clamp(*vr))
    facts = json.loads((Path(run) / "metrics.json").read_text())
    info = dict(run=str(run), steps=facts.get("step"), minutes=facts.get("train_seconds", 0) / 60, val_psnr=facts.get("val_psnr"),
                machine=facts.get("machine"), n_train=len(tx), n_valid=len(vx), shape=list(shape), value_range=list(vr))
    return info, rows, torch.cat(grid)

def table(info, rows):
    lines = [f"{info['run']}: {info['steps']} steps in {info['minutes']:.1f} min of training, val PSNR {info['val_psnr']:.2f} dB "
             f"({info['machine']}); latent {tuple(info['shape'])}; {info['n_train']} training and {info['n_valid']} validation faces",
             "", HEAD, "|" + "---|" * 10]
    for r in rows:
        t = f"{r['fit_s']:.0f} / {r['sample_s']:.1f}" if "fit_s" in r else ""
        nv = "" if r["nearest_valid"] != r["nearest_valid"] else f"{r['nearest_valid']:.1f}"
        nll = "" if r["nll"] != r["nll"] else f"{r['nll']:.3f}"
        c2 = f"{r['c2st']:.2f}" if "c2st" in r else ""
        lines.append(f"| {r['sampler']} | {r['fd']:.0f} | {c2} | {r['precision']:.2f} | {r['recall']:.2f} | {r['nearest_train']:.1f} | "
                     f"{nv} | {r['novelty_gap']:.2f} | {nll} | {t} |")
    settings = {}
    for r in rows:
        if "fit_s" in r: settings.setdefault((r["reach"], r["hidden"], r["steps"], r.get("segments", 0), r.get("flips", False), r.get("temperature", 1)), []).append(r)
    for (reach, hidden, steps, segments, flips, temp), rs in settings.items():   # medians over seeds, one setting at a time
        if len(rs) > 1: lines.append(f"\nlearned prior, {setting(reach, hidden, steps, segments)}{variant(flips, temp)}, medians of {len(rs)} seeds: "
                                     f"FD {statistics.median(r['fd'] for r in rs):.0f}, novelty gap {statistics.median(r['novelty_gap'] for r in rs):.2f} dB")
    return lines

def summary(results):
    """One line per run: the target (unseen real FD, gap 0..1 dB), the decoder's ceiling, the Gaussian and the best learned
    prior by FD at temperature 1. Tempered rows never count: above 1 the FD falls while the samples turn to scribbles
    (bench/README.md), so there the FD judges the temperature, not the prior."""
    lines = ["| run: steps (min) | val PSNR | unseen real FD | ceiling FD / gap | gaussian FD / gap | best learned prior FD / gap (setting) | target met |",
             "|" + "---|" * 7]
    for info, rows in results:
        by = {r["sampler"]: r for r in rows}
        real, ceil, gauss = by["unseen real faces"], by["control: reconstructions of the unseen faces"], by["gaussian"]
        ars = [r for r in rows if "fit_s" in r and r.get("temperature", 1) == 1]
        best = min(ars, key=lambda r: r["fd"]) if ars else None
        met = best is not None and best["fd"] <= real["fd"] and best["novelty_gap"] <= 1.0
        b = (f"{best['fd']:.0f} / {best['novelty_gap']:.2f} ({setting(best['reach'], best['hidden'], best['steps'], best.get('segments', 0))}"
             f"{variant(best.get('flips', False))})") if best else ""
        lines.append(f"| {info['steps']} ({info['minutes']:.1f}) | {info['val_psnr']:.2f} | {real['fd']:.0f} | {ceil['fd']:.0f} / {ceil['novelty_gap']:.2f} | "
                     f"{gauss['fd']:.0f} / {gauss['novelty_gap']:.2f} | {b} | {'yes' if met else 'no'} |")
    return lines

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="*", default=[str(ROOT / "runs/main/default_cpu")])
    ap.add_argument("--steps", type=int, nargs="+", default=[600]); ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[128]); ap.add_argument("--reach", type=int, nargs="+", default=[1])
    ap.add_argument("--segments", type=int, nargs="+", default=[4], help="stretches each row above is pooled into (0: the window alone)")
    ap.add_argument("--flips", action="store_true", help="also fit each setting on the training codes plus their mirror images'")
    ap.add_argument("--temperatures", type=float, nargs="+", default=[1.0], help="sample each fitted prior at these temperatures")
    a = ap.parse_args()
    missing = [r for r in a.runs if not (Path(r) / "metrics.json").exists()]
    if missing: sys.exit(f"not a finished run (no metrics.json): {', '.join(missing)}; run `make train` first or pass a run folder")
    judged = [judge_run(run, a) for run in a.runs]
    results = [(info, rows) for info, rows, _ in judged]
    lines = [l for info, rows in results for l in table(info, rows) + [""]] + summary(results)
    print("\n".join(lines))
    out = ROOT / "bench" / "results"; out.mkdir(parents=True, exist_ok=True)
    (out / "learned_prior.md").write_text("\n".join(lines) + "\n")
    (out / "learned_prior.json").write_text(json.dumps([dict(info, rows=rows) for info, rows in results], indent=1))
    from vae_course.data import save_grid
    save_grid(torch.cat([g for *_, g in judged]), out / "learned_prior_samples.png", nrow=10, value_range=tuple(results[0][0]["value_range"]))

if __name__ == "__main__": main()
