"Integration checks of the model chapters (02_blocks ... 06_kl): every preset, block type and option together."
import dataclasses, math
from types import SimpleNamespace
import pytest
import torch
from torch.distributions import Normal, kl_divergence
from vae_course.core import count_parameters
from vae_course.encoder import VAEConfig, SpatialEncoder
from vae_course.decoder import SpatialDecoder, LOGVAR_RANGE
from vae_course.vae import VAE, PRESETS, build_vae, vae_config, reparameterize
from vae_course.kl import (kl_normal, free_bits_kl, active_units, make_beta_schedule, CyclicalBeta, AdaptiveKL,
                           LinearWarmup)

BLOCKS = ["bottleneck", "resnet", "convnormact", "conv_relu", "conv_bn_lrelu"]


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_build_on_meta(name):
    with torch.device("meta"): m = build_vae(name)
    n = count_parameters(m)
    expected = dict(vanilla64=(3.5e6, 4.5e6), ultra=(45e6, 55e6), tiny=(0.3e6, 3e6))
    lo, hi = expected.get(name, (1e6, 100e6))
    assert lo < n < hi, f"{name}: {n} parameters"


@pytest.mark.parametrize("name", ["tiny", "vanilla64", "celeba64"])
def test_small_presets_run(name):
    torch.manual_seed(0)
    m = build_vae(name)
    S, (lo, hi) = m.cfg.img_size, m.value_range
    x = torch.rand(2, 3, S, S) * (hi - lo) + lo
    out = m(x)
    assert set(out) == {"recon", "mu", "logvar", "z"}
    assert out["recon"].shape == x.shape and out["z"].shape == (2, m.cfg.latent_dim)
    assert lo <= out["recon"].min() and out["recon"].max() <= hi
    (out["recon"] - x).square().sum().backward()
    assert all(p.grad is not None for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("up", ["upsample", "transposed"])
@pytest.mark.parametrize("learned_variance", [False, True])
def test_options_combine(block, up, learned_variance):
    cfg = VAEConfig(img_size=16, channels=[8, 16], block=block, latent_dim=4, decoder_upsample=up,
                    learned_variance=learned_variance, output="tanh", blocks_per_level=2)
    out = VAE(cfg)(torch.rand(2, 3, 16, 16))
    assert out["recon"].shape == (2, 3, 16, 16) and out["recon"].abs().max() <= 1
    if learned_variance:
        lv = out["recon_logvar"]
        assert lv.shape == (2, 3, 16, 16) and LOGVAR_RANGE[0] <= lv.min() and lv.max() <= LOGVAR_RANGE[1]
    else:
        assert "recon_logvar" not in out


@pytest.mark.parametrize("block", ["bottleneck", "resnet", "conv_bn_lrelu"])
def test_grad_checkpointing_same_gradients(block):
    kw = dict(img_size=16, channels=[8, 16], block=block, latent_dim=4, attention_res=(8,))
    torch.manual_seed(0)
    a, b = build_vae(kw), build_vae(kw, grad_checkpointing=True)
    b.load_state_dict(a.state_dict())
    x, grads = torch.rand(4, 3, 16, 16), []
    for m in (a, b):
        torch.manual_seed(1)
        out = m(x)
        loss = (out["recon"] - x).square().sum() + kl_normal(out["mu"], out["logvar"])
        grads.append(torch.autograd.grad(loss, list(m.parameters())))
    for g1, g2 in zip(*grads): torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-5)


def test_build_vae_inputs_and_errors():
    assert build_vae("tiny", latent_dim=8).cfg.latent_dim == 8
    assert build_vae(dataclasses.asdict(PRESETS["tiny"])).cfg == PRESETS["tiny"]
    assert build_vae(PRESETS["tiny"], img_size=64).cfg.latent_res == 16
    assert PRESETS["tiny"].img_size == 32
    with pytest.raises(ValueError, match="choose one of"): build_vae("nope")
    with pytest.raises(TypeError, match="valid fields"): vae_config("tiny", chanels=[1])
    with pytest.raises(ValueError, match="multiple of"): vae_config("tiny", img_size=30)
    with pytest.raises(ValueError, match="img_size=64"): build_vae("tiny")(torch.rand(1, 3, 64, 64))


def test_spatial_encoder_decoder_with_a_foreign_config():
    "The VQ chapter passes its own config: only img_size/channels/block/... are read."
    cfg = SimpleNamespace(img_size=16, channels=[8, 16], block="resnet", blocks_per_level=1, in_ch=3, output="tanh")
    enc, dec = SpatialEncoder(cfg, out_ch=5), SpatialDecoder(cfg, in_ch=5)
    z = enc(torch.rand(2, 3, 16, 16))
    assert z.shape == (2, 5, 8, 8)
    y = dec(z)
    assert y.shape == (2, 3, 16, 16) and y.abs().max() <= 1


def test_sample_interpolate_reconstruct_are_deterministic_in_eval():
    torch.manual_seed(0)
    m = build_vae("vanilla64").eval()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    torch.testing.assert_close(m.reconstruct(x), m.reconstruct(x))
    path = m.interpolate(x[0], x[1], steps=4, mode="slerp")
    assert path.shape == (4, 3, 64, 64)
    torch.testing.assert_close(path[0], m.reconstruct(x[:1])[0], rtol=1e-4, atol=1e-5)
    g = lambda: torch.Generator().manual_seed(3)
    torch.testing.assert_close(m.sample(2, generator=g()), m.sample(2, generator=g()))


def test_reparameterize_gradients():
    mu, sigma, eps = torch.randn(7, requires_grad=True), (torch.rand(7) + 0.1).requires_grad_(), torch.randn(7)
    gmu, gsig = torch.autograd.grad(reparameterize(mu, 2 * sigma.log(), eps).sum(), (mu, sigma))
    torch.testing.assert_close(gmu, torch.ones(7))
    torch.testing.assert_close(gsig, eps)


@pytest.mark.parametrize("shape", [(5, 3), (2, 4, 3, 3)])
def test_kl_matches_torch_distributions(shape):
    mu, logvar = torch.randn(shape), torch.randn(shape)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    torch.testing.assert_close(kl_normal(mu, logvar, "none"), ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(kl_normal(mu, logvar), ref.sum() / shape[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(kl_normal(mu, logvar, "sum"), ref.sum(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(kl_normal(mu, logvar, "mean"), ref.mean(), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(free_bits_kl(mu, logvar, 0.0), kl_normal(mu, logvar), rtol=1e-4, atol=1e-5)


def test_kl_hand_values():
    assert kl_normal(torch.zeros(4, 3), torch.zeros(4, 3)).item() == 0
    assert math.isclose(kl_normal(torch.ones(4, 3), torch.zeros(4, 3)).item(), 1.5, rel_tol=1e-6)   # 0.5 per dim
    assert math.isclose(free_bits_kl(torch.zeros(4, 3), torch.zeros(4, 3), 0.25).item(), 0.75, rel_tol=1e-6)


def test_active_units_detects_collapse():
    torch.manual_seed(0)
    mu = torch.cat([torch.randn(300, 3), torch.full((300, 5), 0.2) + 1e-3 * torch.randn(300, 5)], 1)
    assert active_units(mu) == 3


@pytest.mark.parametrize("name,kw", [("constant", dict(beta=0.5)), ("linear", dict(warmup_steps=5)),
                                     ("cosine", dict(warmup_steps=5)),
                                     ("cyclical", dict(kl_cycle_period=6, kl_cooldown_epochs=1, kl_beta_floor=0.1,
                                                       kl_floor_growth=0.1)),
                                     ("adaptive", dict(target_low=1.0, target_high=2.0))])
def test_schedules_resume_exactly(name, kw):
    a = make_beta_schedule(name, **kw)
    vals = [a.step(kl=3.0) for _ in range(9)]
    assert all(0 <= v <= 10 for v in vals)
    b = make_beta_schedule(name, **kw); b.load_state_dict(a.state_dict())
    assert [a.step(kl=0.5) for _ in range(5)] == [b.step(kl=0.5) for _ in range(5)]


def test_cyclical_and_warmup_values():
    s = CyclicalBeta(kl_cycle_period=4, kl_cooldown_epochs=1, kl_cooldown_reduction=0.5)
    assert [s.value] + [s.step() for _ in range(8)] == [0.0, 0.5, 1.0, 0.5, 0.0, 0.5, 1.0, 0.5, 0.0]
    w = LinearWarmup(warmup_steps=4, beta_max=2.0)
    assert [w.value] + [w.step() for _ in range(5)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]


def test_adaptive_kl_moves_beta_the_right_way():
    up, down = AdaptiveKL(1.0, 2.0, beta_init=1.0), AdaptiveKL(1.0, 2.0, beta_init=1.0)
    for _ in range(5): up.step(kl=10.0); down.step(kl=0.1)
    assert up.value > 1.0 > down.value


def test_tiny_learns_a_fixed_batch():
    torch.manual_seed(0)
    m = build_vae("tiny", img_size=16)
    x = torch.rand(8, 3, 16, 16)
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    losses = []
    for _ in range(40):
        out = m(x)
        loss = (out["recon"] - x).square().flatten(1).sum(1).mean() + kl_normal(out["mu"], out["logvar"])
        opt.zero_grad(); loss.backward(); opt.step(); losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
