"""A small training run used by tests/test_training.py in real subprocesses (kill-and-resume, torchrun DDP).

python tests/_train_run.py OUT_DIR [--steps N] [--resume CKPT] [--sleep S] [--model toy|tiny] [--dump]
Writes OUT_DIR/final_rank<r>.pt (the flat parameter vector of each rank) when --dump is given.
"""
import argparse, os, sys, time
from pathlib import Path
import torch
from torch import nn
torch.set_num_threads(1)
from vae_course.core import seed_everything
from vae_course.data import InMemoryLoader
from vae_course.training import Trainer, TrainConfig, Callback, MSEObjective, dist_info

class ToyAE(nn.Module):
    "A two-level conv autoencoder with a noisy bottleneck, so the RNG state matters for the result."
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.SiLU(), nn.Conv2d(8, 8, 3, 2, 1))
        self.dec = nn.Sequential(nn.ConvTranspose2d(8, 8, 4, 2, 1), nn.SiLU(), nn.ConvTranspose2d(8, 3, 4, 2, 1), nn.Sigmoid())
    def forward(self, x):
        h = self.enc(x)
        return dict(recon=self.dec(h + 0.1 * torch.randn_like(h) if self.training else h))

class Sleep(Callback):
    def __init__(self, s): self.s = s
    def after_step(self, t): time.sleep(self.s)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out"); ap.add_argument("--steps", type=int, default=20); ap.add_argument("--resume")
    ap.add_argument("--sleep", type=float, default=0.0); ap.add_argument("--model", default="toy")
    ap.add_argument("--dump", action="store_true"); ap.add_argument("--amp", default="none")
    a = ap.parse_args()
    rank, _, ws = dist_info()
    seed_everything(0, deterministic=True)
    if a.model == "toy": model, objective = ToyAE(), MSEObjective()
    else:
        from vae_course.vae import build_vae
        from vae_course.training import VAEObjective
        from vae_course.kl import LinearWarmup
        model = build_vae(a.model, img_size=16)
        objective = VAEObjective(beta=LinearWarmup(warmup_steps=10, beta_max=1.0))
    images = torch.randint(0, 256, (48, 3, 16, 16), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    train_dl = InMemoryLoader(images, batch_size=4, seed=0, device="cpu", rank=rank, world_size=ws)
    valid_dl = InMemoryLoader(images[:8], batch_size=8, shuffle=False, device="cpu")
    cfg = TrainConfig(name="t", out_dir=a.out, device="cpu", tier="cpu", batch_size=4, accum_steps=2, amp=a.amp,
                      epochs=None, max_steps=a.steps, save_every_steps=3, log_every=2, lr=3e-3, warmup_steps=3,
                      deterministic=True, progress=False, tensorboard=False, seed=0)
    tr = Trainer(model, train_dl, valid_dl, cfg, objective, callbacks=[Sleep(a.sleep)] if a.sleep else [])
    if a.resume: tr.run_dir = Path(a.resume).parent
    else: tr.run_dir = Path(a.out) / "run"
    tr.fit(resume=a.resume)
    if a.dump:
        flat = torch.cat([p.detach().reshape(-1) for p in tr.raw_model.parameters()])
        torch.save(dict(params=flat, step=tr.step, epoch=tr.epoch), Path(a.out) / f"final_rank{rank}.pt")
    if torch.distributed.is_initialized():              # leave together: a rank that exits while its peer talks can abort
        torch.distributed.barrier(); torch.distributed.destroy_process_group()

if __name__ == "__main__": main()
