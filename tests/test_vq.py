"Integration tests for vae_course.vq / vqgan / prior: the bugs a quantizer really has."
import math
import pytest
import torch
import torch.nn.functional as F
from vae_course.vq import (VectorQuantizer, VectorQuantizerEMA, kmeans, nearest_code, perplexity,
                           straight_through)

QUANTIZERS = {"grad": lambda **kw: VectorQuantizer(**kw), "ema": lambda **kw: VectorQuantizerEMA(**kw)}

@pytest.fixture(autouse=True)
def _seed(): torch.manual_seed(0)

@pytest.mark.parametrize("kind", QUANTIZERS)
@pytest.mark.parametrize("init", ["standard", "normal", "kmeans"])
@pytest.mark.parametrize("shape", [(2, 8, 4, 4), (4, 8, 3, 5)])
def test_round_trip_indices_codes_quantized(kind, init, shape):
    vq = QUANTIZERS[kind](num_codes=32, code_dim=8, init=init)
    z = torch.randn(*shape)
    out = vq(z)                                       # training mode: kmeans runs lazily here
    test = vq.eval()(z)
    assert test["indices"].shape == (shape[0], *shape[2:])
    assert test["indices"].dtype == torch.long and int(test["indices"].max()) < 32
    torch.testing.assert_close(test["quantized"], vq.lookup(test["indices"]), atol=1e-6, rtol=0)
    # re-quantizing the codes gives the same indices and a zero loss
    again = vq(vq.lookup(test["indices"]))
    assert torch.equal(again["indices"], test["indices"])
    assert again["commitment_loss"].item() < 1e-10

@pytest.mark.parametrize("kind", QUANTIZERS)
@pytest.mark.parametrize("beta", [0.25, 0.5])
def test_straight_through_gradient_reaches_encoder_unchanged(kind, beta):
    vq = QUANTIZERS[kind](num_codes=16, code_dim=4, beta=beta, init="normal")
    z = torch.randn(3, 4, 5, 5, requires_grad=True)
    g = torch.randn(3, 4, 5, 5)
    out = vq(z)
    (out["quantized"] * g).sum().backward()
    assert torch.equal(z.grad, g)
    # the loss adds β·2(z − zq)/n to the encoder gradient and nothing else
    z.grad = None
    out = vq(z)
    out["loss"].backward()
    zq = out["quantized"].detach()                    # (the EMA codebook has moved since: not vq.lookup)
    torch.testing.assert_close(z.grad, beta * 2 * (z.detach() - zq) / z.numel())

def test_straight_through_function():
    z = torch.randn(4, requires_grad=True); zq = torch.randn(4)
    y = straight_through(z, zq)
    torch.testing.assert_close(y, zq)
    y.sum().backward()
    assert torch.equal(z.grad, torch.ones(4))

def test_codebook_loss_moves_only_codes():
    vq = VectorQuantizer(16, 4, init="normal")
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    out["codebook_loss"].backward()
    assert z.grad is None and vq.embed.grad is not None and vq.embed.grad.abs().sum() > 0
    unused = torch.ones(16, dtype=torch.bool); unused[out["indices"].unique()] = False
    assert vq.embed.grad[unused].abs().sum() == 0

@pytest.mark.parametrize("decay", [0.9, 0.99, 0.999])
def test_ema_step_equals_formula(decay):
    K, D, eps = 3, 2, 1e-5
    vq = VectorQuantizerEMA(K, D, decay=decay, eps=eps)
    codes = torch.tensor([[0., 0.], [10., 0.], [0., 10.]])
    vq._set_codes(slice(None), codes)
    x = torch.tensor([[1., 0.], [0., 1.], [9., 1.]])          # two vectors near code 0, one near code 1, none near 2
    out = vq(x.t().reshape(1, D, 1, 3))                        # (B, D, H, W)
    assert out["indices"].flatten().tolist() == [0, 0, 1]
    n_i = torch.tensor([2., 1., 0.]); sums = torch.tensor([[1., 1.], [9., 1.], [0., 0.]])
    N = decay * torch.ones(K) + (1 - decay) * n_i
    m = decay * codes + (1 - decay) * sums
    Nt = (N + eps) / (N.sum() + K * eps) * N.sum()
    torch.testing.assert_close(vq.cluster_size, N)
    torch.testing.assert_close(vq.embed_avg, m)
    torch.testing.assert_close(vq.codebook, m / Nt[:, None])
    assert list(vq.parameters()) == [] and not vq.codebook.requires_grad

def test_ema_in_eval_mode_does_not_move_codes():
    vq = VectorQuantizerEMA(8, 4, init="normal").eval()
    before = vq.codebook.clone()
    vq(torch.randn(2, 4, 3, 3))
    assert torch.equal(before, vq.codebook)

def test_ema_decay_validated():
    with pytest.raises(ValueError, match="0.99-0.999"): VectorQuantizerEMA(8, 4, decay=1.0)

@pytest.mark.parametrize("K", [1, 7, 512])
def test_perplexity_uniform_and_single(K):
    assert math.isclose(perplexity(torch.ones(K)).item(), K, rel_tol=1e-4)
    one = torch.zeros(K); one[K // 2] = 5
    assert math.isclose(perplexity(one).item(), 1.0, rel_tol=1e-6)

def test_perplexity_matches_categorical_entropy():
    p = torch.rand(20)
    ref = torch.distributions.Categorical(probs=p / p.sum()).entropy().exp()
    torch.testing.assert_close(perplexity(p), ref)

@pytest.mark.parametrize("kind", QUANTIZERS)
def test_batch_perplexity_reported(kind):
    vq = QUANTIZERS[kind](num_codes=4, code_dim=2)
    vq._set_codes(slice(None), torch.tensor([[0., 0.], [5., 0.], [0., 5.], [5., 5.]]))
    x = torch.tensor([[0., 0.], [5., 0.], [0., 5.], [5., 5.]]).t().reshape(1, 2, 2, 2)
    torch.testing.assert_close(vq.eval()(x)["perplexity"], torch.tensor(4.0))
    torch.testing.assert_close(vq(torch.zeros(1, 2, 2, 2))["perplexity"], torch.tensor(1.0))

def _clustered(n=2000, centres=16, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(centres, d, generator=g) * 4
    return c[torch.randint(0, centres, (n,), generator=g)] + 0.2 * torch.randn(n, d, generator=g)

@pytest.mark.parametrize("kind", QUANTIZERS)
@pytest.mark.parametrize("random_init", ["standard", "normal"])
def test_kmeans_init_lowers_quantisation_error(kind, random_init):
    x = _clustered()
    err = {}
    for init in (random_init, "kmeans"):
        vq = QUANTIZERS[kind](num_codes=16, code_dim=4, init=random_init)
        if init == "kmeans": vq.init_codebook("kmeans", x, generator=torch.Generator().manual_seed(0))
        err[init] = nearest_code(x, vq.codebook.detach())[1].mean().item()
    assert err["kmeans"] < 0.2 * err[random_init]

def test_lazy_kmeans_init_on_first_training_batch():
    vq = VectorQuantizer(16, 4, init="kmeans")
    assert not bool(vq.initted)
    x = _clustered(512).t().reshape(1, 4, 16, 32)
    vq.eval()(x); assert not bool(vq.initted)                 # eval never initialises
    vq.train()(x); assert bool(vq.initted)
    assert vq(x)["perplexity"] > 8

def test_kmeans_needs_enough_points():
    with pytest.raises(ValueError, match="at least k=8"): kmeans(torch.randn(5, 2), 8)

@pytest.mark.parametrize("kind", QUANTIZERS)
def test_reset_revives_dead_codes(kind):
    vq = QUANTIZERS[kind](num_codes=16, code_dim=4, usage_decay=0.5)
    x = _clustered(1024).t().reshape(4, 4, 16, 16)
    vq._set_codes(slice(None), torch.full((16, 4), 100.0))   # every code far away ...
    vq._set_codes(0, x[0, :, 0, 0])                             # ... but one, which takes everything
    for _ in range(10): vq(x)
    assert vq.dead_fraction.item() == 15 / 16
    assert vq.reset_dead_codes(x) == 15
    assert vq.dead_fraction.item() == 0
    for _ in range(5): out = vq(x)
    assert out["perplexity"] > 6 and vq.dead_fraction.item() < 0.5

def test_reset_prefers_high_error_outputs():
    vq = VectorQuantizer(4, 2, dead_threshold=0.5)
    vq._set_codes(slice(None), torch.zeros(4, 2))
    vq.usage.copy_(torch.tensor([1., 0., 0., 0.])); vq.usage_steps.fill_(10_000)
    z = torch.cat([torch.zeros(97, 2), torch.tensor([[10., 0.], [0., 10.], [-10., 0.]])])  # 3 badly served outputs
    assert vq.reset_dead_codes(z) == 3
    got = {tuple(c.tolist()) for c in vq.codebook[1:].detach()}
    assert got == {(10., 0.), (0., 10.), (-10., 0.)}

def test_automatic_reset_every():
    vq = VectorQuantizerEMA(16, 4, usage_decay=0.5, reset_every=5)
    x = _clustered(1024).t().reshape(4, 4, 16, 16)
    vq._set_codes(slice(None), torch.full((16, 4), 100.0)); vq._set_codes(0, x[0, :, 0, 0])
    for _ in range(10): vq(x)
    assert vq.dead_fraction.item() < 0.5

def test_stats_and_histogram():
    vq = VectorQuantizer(8, 2, init="normal")
    vq(torch.randn(2, 2, 4, 4))
    s = vq.codebook_stats()
    assert set(s) == {"perplexity_avg", "dead_fraction", "codes_used"}
    assert int(vq.hits.sum()) == 32
    vq.reset_stats(); assert int(vq.hits.sum()) == 0

def test_channel_mismatch_error_says_what_to_do():
    with pytest.raises(ValueError, match="1x1 conv"): VectorQuantizer(8, 4)(torch.randn(1, 5, 2, 2))
    with pytest.raises(ValueError, match="choose one of"): VectorQuantizer(8, 4, init="xavier")

# ---------------------------------------------------------------- the VQ-VAE model
from vae_course.vq import VQVAE, VQVAEConfig, VQ_PRESETS, code_projection
from vae_course.core import dataclass_from_dict

def _tiny(**kw): return VQVAE(dataclass_from_dict(VQVAEConfig, {**VQ_PRESETS["tiny"].__dict__, **kw}))

@pytest.mark.parametrize("quantizer", ["ema", "grad"])
@pytest.mark.parametrize("enc_dim", [None, 48])
def test_vqvae_round_trip_and_gradients(quantizer, enc_dim):
    m = _tiny(quantizer=quantizer, enc_dim=enc_dim, codebook_init="normal")
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    out = m(x)
    assert out["recon"].shape == x.shape and out["indices"].shape == (3, 8, 8)
    assert {"recon", "indices", "vq_loss", "codebook_loss", "commitment_loss", "perplexity"} <= set(out)
    (F.mse_loss(out["recon"], x) + out["vq_loss"]).backward()
    assert m.encoder.conv_out.weight.grad.abs().sum() > 0            # crossed the quantizer
    if enc_dim: assert isinstance(m.proj_in, torch.nn.Conv2d) and m.proj_in.weight.grad is not None
    m.eval()
    idx = m.encode_indices(x)
    assert torch.equal(idx, m(x)["indices"])
    torch.testing.assert_close(m.decode_indices(idx), m(x)["recon"], atol=1e-5, rtol=0)
    torch.testing.assert_close(m.reconstruct(x), m(x)["recon"], atol=1e-5, rtol=0)
    assert m.value_range == (-1, 1)

def test_vqvae_init_codebook_from_batches():
    m = _tiny(codebook_init="kmeans")
    batches = [torch.rand(8, 3, 32, 32) * 2 - 1 for _ in range(3)]
    m.init_codebook(batches, max_vectors=1000)
    assert bool(m.quantizer.initted)
    z = m.quantizer._rows(m.encode(batches[0]))
    err_k = nearest_code(z, m.quantizer.codebook)[1].mean()
    m.quantizer.init_codebook("normal")
    assert err_k < nearest_code(z, m.quantizer.codebook)[1].mean()

def test_last_layer_is_decoder_output_conv():
    m = _tiny()
    assert m.last_layer is m.decoder.head.weight and m.last_layer.shape[0] == 3

def test_config_errors_and_presets():
    with pytest.raises(ValueError, match="choose one of: ema, grad"): VQVAEConfig(quantizer="fsq")
    with pytest.raises(ValueError, match="choose one of: standard, normal, kmeans"): VQVAEConfig(codebook_init="x")
    with pytest.raises(TypeError, match="valid fields"): dataclass_from_dict(VQVAEConfig, {"codes": 3})
    assert VQ_PRESETS["anime256"].latent_res == 16 and VQ_PRESETS["anime256"].num_codes == 1024
    assert VQ_PRESETS["tiny"].latent_res == 8
    assert isinstance(code_projection(384, 256), torch.nn.Conv2d)
    with pytest.raises(ValueError, match="1x1 conv"):
        VQVAE(VQ_PRESETS["tiny"]).quantizer(torch.randn(1, 48, 8, 8))

# ---------------------------------------------------------------- VQ-GAN pieces
from vae_course.vqgan import (PatchDiscriminator, hinge_d_loss, hinge_g_loss, nonsat_d_loss, nonsat_g_loss,
                              adaptive_gan_weight, GANWeightSchedule, VQGANLoss, disc_optimizer, gan_losses,
                              vqgan_train_step)

@pytest.mark.parametrize("n_layers,size,grid", [(3, 256, 30), (3, 64, 6), (2, 32, 6), (1, 32, 14)])
@pytest.mark.parametrize("norm", ["batch", "group", "none"])
def test_patch_discriminator_shapes(n_layers, size, grid, norm):
    D = PatchDiscriminator(ch=8, n_layers=n_layers, norm=norm)
    assert D(torch.randn(2, 3, size, size)).shape == (2, 1, grid, grid)

@pytest.mark.parametrize("name", ["hinge", "nonsat"])
def test_gan_losses_direction(name):
    d_fn, g_fn = gan_losses(name)
    good = d_fn(torch.full((4,), 5.0), torch.full((4,), -5.0)); bad = d_fn(torch.full((4,), -5.0), torch.full((4,), 5.0))
    assert good < 0.01 and bad > 2                                  # a perfect discriminator has ~0 loss
    assert g_fn(torch.full((4,), 5.0)) < g_fn(torch.full((4,), -5.0))  # the generator wants high fake logits
    with pytest.raises(ValueError, match="choose one of"): gan_losses("lsgan")

def test_hinge_and_nonsat_values():
    r, f = torch.tensor([0.3, 1.5]), torch.tensor([-0.2, 0.4])
    torch.testing.assert_close(hinge_d_loss(r, f), torch.tensor(0.5 * ((0.7 + 0) / 2 + (0.8 + 1.4) / 2)))
    torch.testing.assert_close(hinge_g_loss(f), torch.tensor(-0.1))
    bce = F.binary_cross_entropy_with_logits
    torch.testing.assert_close(nonsat_d_loss(r, f), 0.5 * (bce(r, torch.ones(2)) + bce(f, torch.zeros(2))))
    torch.testing.assert_close(nonsat_g_loss(f), bce(f, torch.ones(2)))

@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0])
def test_adaptive_weight_is_gradient_norm_ratio(scale):
    w = torch.randn(5, 3, requires_grad=True); a = torch.randn(5, 3); b = torch.randn(5, 3)
    rec, g = (a * w).sum(), scale * (b * w).sum()
    lam = adaptive_gan_weight(rec, g, w)
    torch.testing.assert_close(lam, a.norm() / (scale * b.norm() + 1e-4))
    assert not lam.requires_grad

@pytest.mark.parametrize("warmup,ramp,target", [(0, 0, 1.0), (5, 0, 0.5), (3, 4, 0.8), (0, 10, 2.0)])
def test_gan_schedule(warmup, ramp, target):
    s = GANWeightSchedule(warmup, ramp, target)
    vals = [s(t) for t in range(warmup + ramp + 5)]
    assert all(v == 0 for v in vals[:warmup])
    assert vals[-1] == pytest.approx(target)
    assert all(b >= a for a, b in zip(vals, vals[1:]))             # monotone ramp
    if ramp: assert vals[warmup] == pytest.approx(target / ramp)
    for _ in range(warmup + 1): s.step()
    s2 = GANWeightSchedule(warmup, ramp, target); s2.load_state_dict(s.state_dict())
    assert s2.value == s.value

def test_disc_optimizer_betas():
    assert disc_optimizer(PatchDiscriminator(ch=8, n_layers=1)).defaults["betas"] == (0.5, 0.99)

@pytest.mark.parametrize("gan_loss", ["hinge", "nonsat"])
def test_vqgan_step_updates_both_and_respects_warmup(gan_loss):
    m = _tiny(codebook_init="normal")
    D = PatchDiscriminator(ch=8, n_layers=2)
    crit = VQGANLoss(D, None, gan_loss=gan_loss, schedule=GANWeightSchedule(warmup_steps=1, ramp_steps=0))
    opt_g, opt_d = torch.optim.Adam(m.parameters(), 1e-3), disc_optimizer(D)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    d0 = [p.clone() for p in D.parameters()]
    log0 = vqgan_train_step(m, crit, opt_g, opt_d, x)
    assert log0["g_loss"] == 0 and "d_loss" not in log0             # warm-up: no GAN term, D untouched
    assert all(torch.equal(a, b) for a, b in zip(d0, D.parameters()))
    log1 = vqgan_train_step(m, crit, opt_g, opt_d, x)
    assert "d_loss" in log1 and log1["adaptive_weight"] > 0 and math.isfinite(log1["loss"])
    assert not all(torch.equal(a, b) for a, b in zip(d0, D.parameters()))

# ---------------------------------------------------------------- the prior over codes
from vae_course.prior import PriorConfig, CodePrior, fit_prior, encode_codes

def _prior(K=16, grid=4, **kw): return CodePrior(PriorConfig(num_codes=K, grid=grid, d_model=32, n_layers=2, n_heads=2, **kw))

@pytest.mark.parametrize("K,grid", [(16, 4), (128, 8), (2, 3)])
def test_prior_starts_uniform(K, grid):
    p = _prior(K, grid)
    idx = torch.randint(0, K, (5, grid, grid))
    logits, loss = p(idx)
    assert logits.shape == (5, grid * grid, K)
    assert loss.item() == pytest.approx(math.log(K), rel=1e-6)
    torch.testing.assert_close(p.bits_per_image(idx), torch.full((5,), grid * grid * math.log2(K)))

@pytest.mark.parametrize("j", [0, 5, 15])
def test_prior_is_causal(j):
    p = _prior(); torch.nn.init.normal_(p.head.weight, std=0.5)
    a = torch.randint(0, 16, (2, 16)); b = a.clone(); b[:, j] = (b[:, j] + 3) % 16
    la, lb = p(a)[0], p(b)[0]
    torch.testing.assert_close(la[:, :j + 1], lb[:, :j + 1])
    if j < 15: assert (la[:, j + 1:] - lb[:, j + 1:]).abs().max() > 1e-5

def test_prior_learns_structure_and_samples_it():
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 16, (64, 1, 1), generator=g).expand(64, 4, 4).contiguous()  # each grid one repeated code
    p = _prior()
    losses = fit_prior(p, codes, steps=150, batch_size=32, lr=3e-3, generator=g)
    assert losses[-1] < 0.5 * losses[0]
    s = p.sample(8, temperature=0.5, generator=g)
    assert s.shape == (8, 4, 4)
    assert (s == s[:, :1, :1]).float().mean() > 0.9          # samples repeat their first code, like the data
    assert p.bits_per_image(codes[:4]).mean() < 0.5 * 16 * 4

def test_prior_errors():
    with pytest.raises(ValueError, match="divisible"): CodePrior(PriorConfig(d_model=30, n_heads=4))
    with pytest.raises(ValueError, match="expected 16 codes"): _prior()(torch.zeros(1, 9, dtype=torch.long))

def test_encode_codes_matches_model():
    m = _tiny(codebook_init="normal").eval()
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    c = encode_codes(m, x, batch_size=2)
    assert torch.equal(c, m.encode_indices(x)) and not m.training

# ---------------------------------------------------------------- data-parallel codebooks
_DDP_SCRIPT = '''
import sys, torch, torch.distributed as dist
dist.init_process_group("gloo"); rank = dist.get_rank(); torch.set_num_threads(1)
from vae_course.vq import VectorQuantizerEMA, VectorQuantizer
res = []
for cls in (VectorQuantizerEMA, VectorQuantizer):
    torch.manual_seed(rank)                                   # different data and local k-means on each rank
    vq = cls(16, 4, init="kmeans", reset_every=2, usage_decay=0.5)
    for _ in range(6): vq(torch.randn(2, 4, 4, 4) + 3 * rank)
    res.append(dict(codes=vq.codebook.detach().clone(), usage=vq.usage.clone(), hits=vq.hits.clone()))
torch.save(res, f"{sys.argv[1]}/rank{rank}.pt")
dist.destroy_process_group()
'''

def test_ddp_codebooks_stay_identical(tmp_path):
    "Two gloo processes with different data: k-means init and resets broadcast, EMA and usage use global counts."
    import subprocess, sys, os
    (tmp_path / "w.py").write_text(_DDP_SCRIPT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(tmp_path / "w.py"), str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    for qa, qb in zip(a, b):
        assert torch.equal(qa["codes"], qb["codes"]) and torch.equal(qa["usage"], qb["usage"])
        assert int(qa["hits"].sum()) == 2 * 6 * 2 * 16     # global counts: both ranks' vectors

@pytest.mark.parametrize("quantizer", ["ema", "grad"])
def test_vqvae_under_bf16_autocast(quantizer):
    "Mixed precision: distances and EMA statistics stay float32, the codebook stays float32, the loss is finite."
    m = _tiny(quantizer=quantizer, codebook_init="kmeans")
    x = torch.rand(16, 3, 32, 32) * 2 - 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
        loss = F.mse_loss(out["recon"].float(), x) + out["vq_loss"]
    loss.backward()
    assert math.isfinite(loss.item()) and m.quantizer.codebook.dtype == torch.float32
    assert out["perplexity"] > 10

def _small_vq():
    from vae_course.vq import VQVAE, VQVAEConfig
    return VQVAE(VQVAEConfig(img_size=32, channels=[16, 32, 32], blocks_per_level=2, block="resnet", num_codes=16, code_dim=8))

def test_trainer_grad_checkpointing_reaches_the_vq_model(tmp_path):
    "The low tier's gradient checkpointing is applied to a VQ-VAE (its encoder/decoder keep their own architecture copy)."
    from vae_course.training import Trainer, TrainConfig, VQObjective, saved_activation_bytes
    from vae_course.data import InMemoryLoader
    m, x = _small_vq(), torch.rand(4, 3, 32, 32)
    plain = saved_activation_bytes(m, x, VQObjective())
    imgs = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    cfg = TrainConfig(out_dir=str(tmp_path), device="cpu", tier="low", batch_size=4, accum_steps=1, amp="none",
                      progress=False, tensorboard=False, epochs=None, max_steps=1, channels_last=False)
    Trainer(m, InMemoryLoader(imgs, 4, device="cpu"), None, cfg.resolve(), VQObjective()).setup()
    assert m.encoder.cfg.grad_checkpointing and m.decoder.cfg.grad_checkpointing
    assert saved_activation_bytes(m, x, VQObjective()) < 0.7 * plain

def test_codebook_kmeans_samples_every_image():
    "init_codebook(n_images=...) draws its k-means sample from all the images, not just the first batches."
    m = _small_vq()
    batches = [torch.rand(4, 3, 32, 32) for _ in range(10)]
    seen = []
    enc = m.encode
    m.encode = lambda x: (seen.append(len(x)), enc(x))[1]
    m.init_codebook(batches, max_vectors=400, n_images=40, generator=torch.Generator().manual_seed(0))
    assert len(seen) == 10 and bool(m.quantizer.initted)
