"""Training speed and peak memory of the course's trainer per recipe and tier, on this device,
side by side with a textbook training step of the same model. Not a test: run it by hand (`make bench`).

    python bench/train_speed.py                       # vanilla64 on this device: textbook vs trainer per tier
    python bench/train_speed.py --models tiny vanilla64 --tiers cpu high --steps 150 --compile

Each configuration runs in its own subprocess (a clean peak-memory reading and no warm caches carried over).
Throughput is the median of several timing windows after warm-up steps; every figure is also given as a
ratio to the textbook step measured in the same invocation. Results go to bench/results/train_speed_<device>.{json,md}.
"""
import argparse, json, os, resource, statistics, subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

def _peak_mem_mb(device) -> float:
    import torch
    if device.type == "cuda": return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB

def _kl(mu, logvar):  # the closed form, written out as a textbook would
    return (-0.5 * (1 + logvar - mu ** 2 - logvar.exp())).flatten(1).sum(1).mean()

def run_textbook(model_name, size, steps, warmup, window, device, eval_imgs, reuse_memory=False):
    "Eager fp32, NCHW, a Dataset of float images through a DataLoader, `.item()` every step."
    import torch
    from vae_course.training import reuse_freed_memory
    if reuse_memory: reuse_freed_memory()
    from torch.utils.data import DataLoader
    from vae_course.vae import build_vae
    from vae_course.data import OpenMoji
    torch.manual_seed(0)
    model = build_vae(model_name, img_size=size).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    dl = DataLoader(OpenMoji(size, "train", value_range=model.value_range), batch_size=64, shuffle=True, drop_last=True)
    times, losses, step, t_prev = [], [], 0, None
    while step < steps:
        for x in dl:
            x = x.to(device)
            out = model(x)
            loss = torch.nn.functional.mse_loss(out["recon"], x, reduction="sum") / len(x) + _kl(out["mu"], out["logvar"])
            opt.zero_grad(); loss.backward(); opt.step()
            losses.append(loss.item())                   # the per-step host sync
            step += 1
            if step == warmup or (step > warmup and (step - warmup) % window == 0):
                now = time.perf_counter()
                if t_prev is not None: times.append(window * 64 / (now - t_prev))
                t_prev = now
            if step >= steps: break
    return dict(images_per_s=statistics.median(times), windows=times, final_loss=losses[-1],
                valid=_evaluate(model, eval_imgs, device), batch=64, accum=1, amp="none", layout="NCHW",
                reuse_memory=reuse_memory)

def run_trainer(model_name, size, steps, warmup, window, device, eval_imgs, tier, compile_, amp, reuse_memory=True):
    "The course's Trainer with the tier's settings: uint8 data in memory, channels-last, autocast, no per-step syncs."
    import torch
    from vae_course.vae import build_vae
    from vae_course.data import OpenMoji, InMemoryLoader
    from vae_course.training import Trainer, TrainConfig, VAEObjective, Callback
    from vae_course.losses import ReconLoss
    cfg = TrainConfig(name="bench", out_dir=str(ROOT / "bench" / "results" / "runs"), device=str(device), tier=tier,
                      amp=amp, compile=compile_, epochs=None, max_steps=steps, log_every=window, lr=1e-3,
                      optimizer="adam", schedule="constant", grad_clip=0, progress=False, tensorboard=False,
                      save_every_epochs=0, export_safetensors=False, reuse_memory=reuse_memory).resolve()
    torch.manual_seed(0)
    model = build_vae(model_name, img_size=size)
    dl = InMemoryLoader(OpenMoji(size, "train").images, cfg.batch_size, seed=0, device=device, channels_last=cfg.channels_last,
                        value_range=model.value_range)
    class Timer(Callback):
        def __init__(self): self.ips = []
        def after_log(self, t): self.ips.append((t.step, t.logs["images_per_s"]))
    timer = Timer()
    tr = Trainer(model, dl, None, cfg, VAEObjective(ReconLoss(mse=1.0, reduction="sum"), beta=1.0), callbacks=[timer])
    tr.fit()
    times = [v for s, v in timer.ips if s > warmup]
    return dict(images_per_s=statistics.median(times), windows=times, final_loss=tr.logs.get("loss"),
                valid=_evaluate(tr.raw_model, eval_imgs, device), batch=cfg.batch_size, accum=cfg.accum_steps,
                amp=cfg.amp, layout="NHWC" if cfg.channels_last else "NCHW", grad_checkpointing=cfg.grad_checkpointing,
                compile=compile_, reuse_memory=cfg.reuse_memory)

def _evaluate(model, imgs, device):
    "Validation MSE (per pixel) and PSNR of reconstructions from the posterior mean, in fp32."
    import torch
    from vae_course.metrics import psnr
    model.eval().float().to(memory_format=torch.contiguous_format)
    lo, hi = model.value_range
    with torch.no_grad():
        x = imgs.to(device).float() / 255                       # [0, 1]
        rec = (model.reconstruct(x * (hi - lo) + lo).float() - lo) / (hi - lo)
        rec = rec.clamp(0, 1)
    return dict(mse=((rec - x) ** 2).mean().item(), psnr=psnr(rec, x).mean().item())

def one(spec: dict) -> dict:
    import torch
    from vae_course.core import get_device
    from vae_course.data import OpenMoji
    torch.set_num_threads(spec.get("threads") or torch.get_num_threads())
    device = get_device(spec.get("device"))
    eval_imgs = OpenMoji(spec["size"], "valid").images[:128]
    args = (spec["model"], spec["size"], spec["steps"], spec["warmup"], spec["window"], device, eval_imgs)
    t0 = time.perf_counter()
    reuse = spec.get("reuse_memory")
    res = run_textbook(*args, reuse_memory=bool(reuse)) if spec["kind"] == "textbook" else \
          run_trainer(*args, spec["tier"], spec.get("compile", False), spec.get("amp"), reuse_memory=reuse is not False)
    return {**spec, **res, "device": str(device), "wall_s": time.perf_counter() - t0, "peak_mem_mb": _peak_mem_mb(device),
            "torch": torch.__version__, "threads": torch.get_num_threads()}

def _device_name():
    import torch, platform
    if torch.cuda.is_available(): return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"): return line.split(":", 1)[1].strip() + f" ({os.cpu_count()} cores)"
    except OSError: pass
    return platform.processor() or "cpu"

def table(rows) -> str:
    base = {r["model"]: r["images_per_s"] for r in rows if r["kind"] == "textbook" and not r.get("reuse_memory")}
    out = ["| model | step | batch × accum | amp | layout | images/s | × textbook | peak mem (MB) | valid PSNR (dB) |",
           "|---|---|---|---|---|---:|---:|---:|---:|"]
    for r in rows:
        name = "textbook (eager fp32, `.item()` per step)" + (", freed memory kept" if r.get("reuse_memory") else "") \
               if r["kind"] == "textbook" else \
               f"trainer, tier `{r['tier']}`" + (" + compile" if r.get("compile") else "") + (" + grad ckpt" if r.get("grad_checkpointing") else "") \
               + (", freed memory not kept" if r.get("reuse_memory") is False else "")
        ratio = r["images_per_s"] / base[r["model"]] if r["model"] in base else float("nan")
        out.append(f"| {r['model']} | {name} | {r['batch']} × {r['accum']} | {r['amp']} | {r['layout']} | "
                   f"{r['images_per_s']:.0f} | {ratio:.2f} | {r['peak_mem_mb']:.0f} | {r['valid']['psnr']:.2f} |")
    return "\n".join(out)

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["vanilla64"])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--tiers", nargs="+", default=None, help="default: cpu and high on a CPU, all GPU tiers on CUDA")
    ap.add_argument("--steps", type=int, default=30, help="optimiser steps per configuration (effective batch 64)")
    ap.add_argument("--warmup", type=int, default=5, help="steps before timing starts")
    ap.add_argument("--window", type=int, default=5, help="steps per timing window")
    ap.add_argument("--compile", action="store_true", help="also time the trainer with torch.compile")
    ap.add_argument("--amp", default=None, help="force an amp mode for the trainer rows (default: the tier's)")
    ap.add_argument("--fp32-trainer", action="store_true", help="also run the trainer in fp32 (isolates precision)")
    ap.add_argument("--memory-rows", action="store_true",
                    help="also run the trainer without, and the textbook step with, freed memory kept (isolates reuse_freed_memory)")
    ap.add_argument("--device"); ap.add_argument("--threads", type=int)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print("RESULT " + json.dumps(one(json.loads(a.one)))); return 0
    import torch
    cuda = (a.device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    tiers = a.tiers or (["high", "mid", "low"] if cuda else ["cpu", "high"])
    common = dict(size=a.size, steps=a.steps, warmup=a.warmup, window=a.window, device=a.device, threads=a.threads)
    specs = []
    for m in a.models:
        specs.append(dict(kind="textbook", model=m, **common))
        for t in tiers: specs.append(dict(kind="trainer", model=m, tier=t, amp=a.amp, **common))
        if a.fp32_trainer: specs.append(dict(kind="trainer", model=m, tier=tiers[0], amp="none", **common))
        if a.memory_rows:
            specs.append(dict(kind="trainer", model=m, tier=tiers[0], amp=a.amp, reuse_memory=False, **common))
            specs.append(dict(kind="textbook", model=m, reuse_memory=True, **common))
        if a.compile: specs.append(dict(kind="trainer", model=m, tier=tiers[0], amp=a.amp, compile=True, **common))
    rows = []
    for s in specs:
        print("running", {k: v for k, v in s.items() if v is not None}, flush=True)
        r = subprocess.run([sys.executable, __file__, "--one", json.dumps(s)], capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        line = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
        if r.returncode or not line: print(r.stdout[-2000:], r.stderr[-3000:]); continue
        rows.append(json.loads(line[0][7:]))
        print(f"  {rows[-1]['images_per_s']:.1f} images/s, peak {rows[-1]['peak_mem_mb']:.0f} MB, PSNR {rows[-1]['valid']['psnr']:.2f} dB", flush=True)
    dev = "cuda" if cuda else "cpu"
    out = ROOT / "bench" / "results"; out.mkdir(parents=True, exist_ok=True)
    (out / f"train_speed_{dev}.json").write_text(json.dumps(dict(device=_device_name(), rows=rows), indent=1))
    md = f"Device: {_device_name()}, torch {torch.__version__}, {a.steps} optimiser steps of 64 images per row, " \
         f"median of {max(1, (a.steps - a.warmup) // a.window)} windows of {a.window} steps after {a.warmup} warm-up steps.\n\n" + table(rows)
    (out / f"train_speed_{dev}.md").write_text(md + "\n")
    print(md)
    return 0

if __name__ == "__main__": sys.exit(main())
