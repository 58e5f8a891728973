"""The learned prior of chapter 10b against chapter 10's samplers, on a trained run (by default the main job's).
Not a test: run it by hand after `make train`.

    python bench/learned_prior.py                          # runs/main/default_cpu
    python bench/learned_prior.py RUN_DIR --steps 600 1200 --seeds 0 1 2

For each prior setting it fits the prior on posterior draws of the run's training codes (as the run's own
samplers are fitted on its training faces), decodes as many samples as there are validation faces, and prints
FD, precision and recall against the training faces (the emoji feature space of chapter 08), the median PSNR to
the nearest training and validation face, the novelty gap (chapter 10: about 0 for new images, large for copies)
and the held-out log-likelihood of the validation faces' codes. Fit and sampling times are given with the CPU.
Results go to bench/results/learned_prior.{json,md}.
"""
import argparse, json, statistics, sys, time
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

def main():
    ap = argparse.ArgumentParser(); ap.add_argument("run", nargs="?", default=str(ROOT / "runs/main/default_cpu"))
    ap.add_argument("--steps", type=int, nargs="+", default=[600]); ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--hidden", type=int, default=256); ap.add_argument("--reach", type=int, default=2)
    a = ap.parse_args()
    from vae_course.recipes import load_model
    from vae_course.data import OpenMoji
    from vae_course.hardware import machine_summary
    from vae_course.metrics import sample_metrics
    from vae_course.samplers import fit_samplers, decode_samples, nearest_psnr
    from vae_course.learned_prior import ARPriorSampler, fit_ar_prior, held_out_nll, latent_grid
    model = load_model(a.run).eval()
    cfg, vr = model.cfg, tuple(model.value_range)
    if cfg.latent != "spatial": sys.exit(f"{a.run}: a flat latent; this benchmark compares priors over a latent grid")
    shape = latent_grid(cfg)
    load = lambda split: (lambda ds: torch.stack([ds[i] for i in range(len(ds))]))(OpenMoji(cfg.img_size, split, value_range=vr))
    tx, vx = load("train"), load("valid")
    with torch.no_grad():
        mu, logvar = (torch.cat(t) for t in zip(*[model.encode(b) for b in tx.split(256)]))
        vmu = torch.cat([model.encode(b)[0] for b in vx.split(256)])
    rows = [dict(sampler="unseen real faces", **{k: v for k, v in sample_metrics(tx, vx, "emoji", vr).items() if k in ("fd", "precision", "recall")},
                 nearest_train=nearest_psnr(vx, tx, vr).median().item(), nearest_valid=float("nan"), novelty_gap=0.0, nll=float("nan"))]
    def judge(name, s, **extra):
        x = decode_samples(model, s, len(vx), seed=0)
        m = sample_metrics(tx, x, "emoji", vr)
        near = nearest_psnr(x, tx, vr).median().item()
        rows.append(dict(sampler=name, fd=m["fd"], precision=m["precision"], recall=m["recall"], nearest_train=near,
                         nearest_valid=nearest_psnr(x, vx, vr).median().item(), novelty_gap=near - rows[0]["nearest_train"],   # novelty_gap, without recomputing either side
                         nll=held_out_nll(s, vmu), **extra))
    for name, s in fit_samplers(model, tx).items(): judge(name, s)
    for steps in a.steps:
        for seed in a.seeds:
            ar = ARPriorSampler(mu.shape[1], shape, reach=a.reach, hidden=a.hidden, seed=seed)
            t0 = time.perf_counter(); fit_ar_prior(ar, mu, logvar, steps=steps); fit_s = time.perf_counter() - t0
            t0 = time.perf_counter(); ar.sample(len(vx), generator=torch.Generator().manual_seed(0)); sample_s = time.perf_counter() - t0
            judge(f"learned prior, {steps} steps, seed {seed}", ar, fit_s=fit_s, sample_s=sample_s)
    machine = machine_summary("cpu")
    head = "| samples | FD | precision | recall | nearest train (dB) | nearest valid (dB) | novelty gap (dB) | held-out NLL | fit / sample (s) |"
    lines = [f"{a.run} ({cfg.img_size} px, latent {shape}); {len(tx)} training and {len(vx)} validation faces; {machine}", "", head,
             "|" + "---|" * 9]
    for r in rows:
        t = f"{r['fit_s']:.0f} / {r['sample_s']:.1f}" if "fit_s" in r else ""
        lines.append(f"| {r['sampler']} | {r['fd']:.0f} | {r['precision']:.2f} | {r['recall']:.2f} | {r['nearest_train']:.1f} | "
                     f"{r['nearest_valid']:.1f} | {r['novelty_gap']:.2f} | {r['nll']:.3f} | {t} |")
    ars = [r for r in rows if "fit_s" in r]
    if len(ars) > 1: lines.append(f"\nlearned prior, medians of {len(ars)}: FD {statistics.median(r['fd'] for r in ars):.0f}, "
                                  f"novelty gap {statistics.median(r['novelty_gap'] for r in ars):.2f} dB")
    print("\n".join(lines))
    out = ROOT / "bench" / "results"; out.mkdir(parents=True, exist_ok=True)
    (out / "learned_prior.md").write_text("\n".join(lines) + "\n")
    (out / "learned_prior.json").write_text(json.dumps(dict(run=a.run, machine=machine, rows=rows), indent=1))

if __name__ == "__main__": main()
