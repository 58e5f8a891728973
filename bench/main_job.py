"""The main job's numbers for the README: `make train` several times, then the medians of what each run's
metrics.json says (validation PSNR, and each sampler's FD, novelty gap and two-sample accuracy against the training
faces) and a labelled grid of one run's samples to judge by eye. Not a test: run it by hand on a quiet machine.

    python bench/main_job.py --runs 3                 # three `make train` runs (about 6 min each), then the table
    python bench/main_job.py --collect                # the table again from the runs already in bench/results/main_job/

Each finished run folder is copied to bench/results/main_job/<i>/ (git-ignored; best.ckpt kept for the grid); the
table goes to bench/results/main_job.md and the grid (from the last run: ten samples a row, the same seed for
every sampler) to bench/figures/main_job_samples.png, the picture the README shows.
"""
import argparse, json, shutil, statistics, subprocess, sys
from pathlib import Path
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "results" / "main_job"
RUN = ROOT / "runs" / "main" / "default_cpu"
FIGURE = ROOT / "bench" / "figures" / "main_job_samples.png"         # the README's grid: committed, unlike results/
LABELS = dict(                                                      # how the table and the grid name each sampler
    real="unseen real faces (the bar)", prior="prior N(0, I)", gaussian="fitted Gaussian",
    gmm="fitted mixture (10 components)", ar="learned prior (chapter 10b)")

def train_once(i: int) -> Path:
    "One `make train`; its run folder copied to OUT/<i> (with best.ckpt, without last.ckpt and the TensorBoard logs)."
    subprocess.run(["make", "-C", str(ROOT), "train"], check=True)
    dest = OUT / str(i)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(RUN, dest, ignore=shutil.ignore_patterns("last.ckpt", "events.*"))
    return dest

def median_row(ms: list, key: str) -> str:
    "The median of `key` over the runs' metrics, its range in brackets where it varies (FDs without decimals)."
    vals, d = [m[key] for m in ms if m.get(key) is not None], 0 if key.endswith("_fd") else 2
    if not vals: return ""                                            # runs from before the metric existed
    spread = f" ({min(vals):.{d}f}–{max(vals):.{d}f})" if f"{min(vals):.{d}f}" != f"{max(vals):.{d}f}" else ""
    return f"{statistics.median(vals):.{d}f}{spread}"

def table(ms: list) -> list:
    "Medians (and ranges) over the runs of every sampler's FD, novelty gap, two-sample accuracy, precision and recall, and the run facts."
    lines = [f"{len(ms)} runs of `make train`: {', '.join(str(m['step']) for m in ms)} steps; val PSNR {median_row(ms, 'val_psnr')} dB "
             f"(train {median_row(ms, 'train_psnr')}); machines: {'; '.join(sorted({m['machine'] for m in ms}))}",
             f"learned prior fit: {median_row(ms, 'gen_ar_fit_seconds')} s for {ms[0].get('gen_ar_fit_steps')} steps", "",
             "| samples | FD ↓ | novelty gap (dB) | two-sample acc. ↓ | precision | recall | nearest training image (dB) |", "|---|---|---|---|---|---|---|"]
    for k, label in LABELS.items():
        if f"gen_{k}_fd" not in ms[0]: continue
        gap = "0 (by definition)" if k == "real" else median_row(ms, f"gen_{k}_novelty_gap_db")
        lines.append(f"| {label} | {median_row(ms, f'gen_{k}_fd')} | {gap} | {median_row(ms, f'gen_{k}_c2st')} | {median_row(ms, f'gen_{k}_precision')} | "
                     f"{median_row(ms, f'gen_{k}_recall')} | {median_row(ms, f'gen_{k}_nearest_psnr')} |")
    met = [m["gen_ar_fd"] <= m["gen_real_fd"] and m["gen_ar_novelty_gap_db"] <= 1.0 for m in ms if "gen_ar_fd" in m]
    told = [m["gen_ar_c2st"] <= m["gen_real_c2st"] for m in ms if "gen_ar_c2st" in m]
    lines += ["", f"learned prior at temperature 1: FD at or below unseen real faces' and novelty gap at most 1 dB in {sum(met)} of {len(met)} runs"]
    if told: lines.append(f"learned prior: told from training faces no more often than unseen real faces in {sum(told)} of {len(told)} runs")
    return lines

@torch.no_grad()
def sample_grid(run: Path, path: Path, n: int = 10):
    "Ten unseen real faces (spread over the validation split), then ten samples of each sampler the run saved (seed 0), one labelled row each."
    from vae_course.core import show_rows
    from vae_course.data import OpenMoji
    from vae_course.recipes import load_model
    from vae_course.samplers import decode_samples, PriorSampler
    from vae_course.explore import run_sampler
    model = load_model(run, device="cpu").eval()
    vr, valid = tuple(model.value_range), OpenMoji(model.cfg.img_size, "valid", value_range=model.value_range)
    rows = {LABELS["real"]: torch.stack([valid[i] for i in torch.linspace(0, len(valid) - 1, n).long().tolist()])}   # spread over the split
    for k in ("prior", "gaussian", "gmm", "ar"):
        s = PriorSampler(model.cfg.latent_dim) if k == "prior" else run_sampler(run, k, model.cfg.latent_dim)
        if s is not None: rows[LABELS[k]] = decode_samples(model, s, n, seed=0).clamp(*vr)
    fig = show_rows(rows, vr, size=0.8)
    fig.savefig(path, dpi=80, bbox_inches="tight")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3, help="how many `make train` runs")
    ap.add_argument("--collect", action="store_true", help="no training: read the runs already in bench/results/main_job/")
    a = ap.parse_args()
    if not a.collect:
        OUT.mkdir(parents=True, exist_ok=True)
        for i in range(a.runs): train_once(i)
    runs = sorted((p for p in OUT.glob("*") if (p / "metrics.json").is_file()), key=lambda p: int(p.name)) if OUT.is_dir() else []
    if not runs: sys.exit(f"no finished runs in {OUT}: run `python bench/main_job.py --runs 3` first")
    ms = [json.loads((p / "metrics.json").read_text()) for p in runs]
    lines = table(ms)
    print("\n".join(lines))
    (OUT.parent / "main_job.md").write_text("\n".join(lines) + "\n")
    FIGURE.parent.mkdir(exist_ok=True); sample_grid(runs[-1], FIGURE)

if __name__ == "__main__": main()
