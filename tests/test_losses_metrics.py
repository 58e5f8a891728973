"Integration tests for vae_course.losses, .metrics and .quality: references, gradients, offline weight errors."
import math, os, subprocess, sys, time
from pathlib import Path
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models import ResNet18_Weights, VGG16_Weights

from vae_course.losses import (ReconLoss, VGGPerceptual, LPIPSLoss, gaussian_nll, load_torchvision_model,
                               WeightsUnavailableError, weights_path, gaussian_blur)
from vae_course.metrics import (psnr, ssim, ms_ssim, mse, MS_SSIM_WEIGHTS, sharpness, lpips_metric, bits_per_dim,
                                iwae_bits_per_dim, discretized_gaussian_log_likelihood, frechet_distance, fid)


@pytest.fixture
def imgs():
    g = torch.Generator().manual_seed(0)
    x = gaussian_blur(torch.rand(4, 3, 48, 48, generator=g, dtype=torch.float64), 1.5)  # smooth, image-like
    y = (x + 0.05 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return x, y


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    return tmp_path


# ---------------------------------------------------------------- pretrained weights: honest errors
@pytest.mark.parametrize("make", [lambda: VGGPerceptual(pretrained=True), lambda: LPIPSLoss("vgg", pretrained=True),
                                  lambda: LPIPSLoss("alex", pretrained=True),
                                  lambda: ReconLoss(perceptual=1.0, pretrained=True)])
def test_missing_weights_offline_flag(empty_torch_home, monkeypatch, make):
    monkeypatch.setenv("VAE_COURSE_OFFLINE", "1")  # no network attempt at all
    with pytest.raises(WeightsUnavailableError, match="pretrained=False") as e:
        make()
    assert str(empty_torch_home) in str(e.value)  # says where to put the file


def test_missing_weights_download_fails_fast(empty_torch_home, monkeypatch):
    "Without the offline flag the download is tried, and fails within the timeout (no hang), with the same advice."
    monkeypatch.delenv("VAE_COURSE_OFFLINE", raising=False)
    t0 = time.time()
    with pytest.raises(WeightsUnavailableError, match="hub/checkpoints"):
        load_torchvision_model(torchvision.models.resnet18, ResNet18_Weights.IMAGENET1K_V1, True, timeout=5)
    assert time.time() - t0 < 60


def test_cached_weights_load_offline(empty_torch_home, monkeypatch):
    "A checkpoint in the hub cache is used without any network: what a copied download gives."
    monkeypatch.setenv("VAE_COURSE_OFFLINE", "1")
    torch.manual_seed(0)
    ref = torchvision.models.resnet18()
    path = weights_path(ResNet18_Weights.IMAGENET1K_V1)
    os.makedirs(os.path.dirname(path)); torch.save(ref.state_dict(), path)
    m = load_torchvision_model(torchvision.models.resnet18, ResNet18_Weights.IMAGENET1K_V1, True)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), ref.state_dict().values()))
    with open(path, "wb") as f: f.write(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="cached file failed to load"):
        load_torchvision_model(torchvision.models.resnet18, ResNet18_Weights.IMAGENET1K_V1, True)


def test_lpips_trunk_copy_matches_torchvision():
    "Loading a torchvision trunk into lpips puts every conv where lpips expects it."
    from vae_course.losses import _load_lpips_trunk
    torch.manual_seed(0)
    lp = LPIPSLoss("alex", pretrained=False)
    tv = torchvision.models.alexnet()
    _load_lpips_trunk(lp.lpips.net, tv.features)
    x = torch.rand(2, 3, 64, 64)
    net = lp.lpips.net
    assert torch.allclose(net.slice2(net.slice1(x)), tv.features[:5](x))  # lpips slices 1-2 = features[0:5]


# ---------------------------------------------------------------- losses
def test_perceptual_gradient_flows_to_input_not_backbone():
    torch.manual_seed(0)
    loss = VGGPerceptual(pretrained=False)
    x, r = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32, requires_grad=True)
    loss(r, x).sum().backward()
    assert r.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in loss.parameters())
    loss.train(); assert not loss.features.training


@pytest.mark.parametrize("terms", [dict(mse=1.0), dict(mse=0.4, l1=0.2, perceptual=0.2, lpips=0.2), dict(mse=0.0, l1=1.0)])
def test_reduction_scales_every_term_by_D(terms):
    torch.manual_seed(0)
    s = ReconLoss(**terms, pretrained=False, reduction="sum")
    m = ReconLoss(**terms, pretrained=False, reduction="mean"); m.load_state_dict(s.state_dict())
    x, r = torch.rand(3, 3, 32, 32), torch.rand(3, 3, 32, 32)
    a, b = s(r, x), m(r, x)
    assert set(a) == {k for k, w in terms.items() if w} | {"recon"}
    for k in a: assert torch.allclose(a[k], b[k] * 3 * 32 * 32, rtol=1e-4)
    assert torch.allclose(a["recon"], sum(v for k, v in a.items() if k != "recon"))


def test_value_range_pm1_matches_unit():
    torch.manual_seed(0)
    a = ReconLoss(mse=1, l1=1, perceptual=1, lpips=1, pretrained=False)
    b = ReconLoss(mse=1, l1=1, perceptual=1, lpips=1, pretrained=False, value_range=(-1, 1)); b.load_state_dict(a.state_dict())
    x, r = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    la, lb = a(r, x), b(r * 2 - 1, x * 2 - 1)
    for k in ("perceptual", "lpips"): assert torch.allclose(la[k], lb[k], rtol=1e-4)
    assert torch.allclose(lb["mse"], 4 * la["mse"]) and torch.allclose(lb["l1"], 2 * la["l1"])  # pixel terms in model units


def test_gaussian_nll_matches_torch():
    torch.manual_seed(0)
    x, m, lv = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    ref = -torch.distributions.Normal(m, (0.5 * lv).exp()).log_prob(x)
    assert torch.allclose(gaussian_nll(x, m, lv, "none"), ref, atol=1e-5)
    assert torch.allclose(gaussian_nll(x, m, lv, "mean"), F.gaussian_nll_loss(m, x, lv.exp(), full=True), atol=1e-5)


# ---------------------------------------------------------------- metrics vs independent implementations
def test_psnr_vs_skimage_and_torchmetrics(imgs):
    from skimage.metrics import peak_signal_noise_ratio
    import torchmetrics.functional.image as tmf
    x, y = imgs
    ref = [peak_signal_noise_ratio(a.numpy(), b.numpy(), data_range=1.0) for a, b in zip(x, y)]
    assert np.allclose(psnr(y, x, reduction="none").numpy(), ref)
    assert torch.allclose(psnr(y, x), tmf.peak_signal_noise_ratio(y, x, data_range=1.0, dim=(1, 2, 3)))
    assert torch.allclose(psnr(y * 2 - 1, x * 2 - 1, data_range=2.0), psnr(y, x))


def test_ssim_vs_skimage(imgs):
    from skimage.metrics import structural_similarity
    x, y = imgs
    ref = [structural_similarity(a.numpy(), b.numpy(), channel_axis=0, data_range=1.0, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False) for a, b in zip(y, x)]
    assert np.allclose(ssim(y, x, reduction="none").numpy(), ref, atol=1e-10)


def test_ms_ssim_vs_torchmetrics_and_size_error(imgs):
    import torchmetrics.functional.image as tmf
    x, y = imgs
    with pytest.raises(ValueError, match="at least 176 px"): ms_ssim(y, x)
    big_x, big_y = F.interpolate(x[:2], size=180, mode="bilinear"), F.interpolate(y[:2], size=180, mode="bilinear")
    ref = tmf.multiscale_structural_similarity_index_measure(big_y, big_x, data_range=1.0)
    assert abs(ms_ssim(big_y, big_x).item() - ref.item()) < 5e-3  # torchmetrics averages the last scale over padded borders
    assert torch.allclose(ms_ssim(y, x, weights=(1.0,)), ssim(y, x))


def test_mse_sharpness_hand_cases(imgs):
    from skimage.metrics import mean_squared_error
    from scipy.ndimage import laplace
    x, y = imgs
    assert np.isclose(mse(y, x, "none")[1].item(), mean_squared_error(x[1].numpy(), y[1].numpy()))
    lum = (x[0] * torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(3, 1, 1)).sum(0).numpy()
    assert np.isclose(sharpness(x[:1]).item(), laplace(lum)[1:-1, 1:-1].var())
    assert sharpness(gaussian_blur(x, 1.0)) < sharpness(x)


def test_lpips_metric_random_trunk(imgs):
    x, y = imgs
    x, y = x.float(), y.float()
    assert lpips_metric(x, x, pretrained=False).item() < 1e-6
    assert lpips_metric(x, y, pretrained=False).item() > 0


def test_discretized_gaussian_sums_to_one():
    grid = torch.arange(256, dtype=torch.float64) / 255
    for mean, sd in [(0.0, 0.01), (0.5, 0.2), (1.0, 0.001), (0.3, 3.0)]:
        lp = discretized_gaussian_log_likelihood(grid, torch.tensor(mean, dtype=torch.float64), 2 * math.log(sd))
        assert torch.isclose(lp.exp().sum(), torch.tensor(1.0, dtype=torch.float64), atol=1e-9)


class _LinearGaussian(torch.nn.Module):
    "z ~ N(0, I), x|z ~ N(Wz + b, s2 I) with orthogonal W: exact posterior, exact log p(x)."
    def __init__(self, D=16, d=3, s2=0.005):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        Q, _ = torch.linalg.qr(torch.randn(D, d, generator=g, dtype=torch.float64))
        self.W = Q * torch.tensor([0.15, 0.1, 0.05], dtype=torch.float64)
        self.b = 0.5 + 0.05 * torch.randn(D, generator=g, dtype=torch.float64)
        self.s2, self.value_range = s2, (0, 1)
    def encode(self, x):
        var = 1 / (1 + (self.W ** 2).sum(0) / self.s2)
        mu = (x.flatten(1) - self.b) @ self.W / self.s2 * var
        return mu, var.log().expand_as(mu)
    def decode(self, z): return (z @ self.W.T + self.b).view(-1, 1, 4, 4)
    def log_px(self, x):
        cov = self.W @ self.W.T + self.s2 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x.flatten(1))


def test_bits_per_dim_exact_on_linear_gaussian():
    torch.manual_seed(0)
    m = _LinearGaussian()
    x = m.decode(torch.randn(8, 3, dtype=torch.float64)) + math.sqrt(m.s2) * torch.randn(8, 1, 4, 4, dtype=torch.float64)
    true = -m.log_px(x) / (16 * math.log(2)) + 8
    kw = dict(obs_logvar=math.log(m.s2), dequantize=False, reduction="none")
    assert torch.allclose(iwae_bits_per_dim(m, x, k=1, **kw), true)
    assert torch.allclose(iwae_bits_per_dim(m, x, k=7, **kw), true)
    assert abs(bits_per_dim(m, x, n_samples=300, **kw).mean() - true.mean()) < 0.02


def test_iwae_tightens_with_k():
    torch.manual_seed(0)
    m = _LinearGaussian()
    enc = m.encode
    m.encode = lambda x: (lambda mu, lv: (mu + 0.5, lv))(*enc(x))  # a poor encoder
    x = m.decode(torch.randn(16, 3, dtype=torch.float64)) + math.sqrt(m.s2) * torch.randn(16, 1, 4, 4, dtype=torch.float64)
    kw = dict(obs_logvar=math.log(m.s2), dequantize=False)
    true = (-m.log_px(x) / (16 * math.log(2)) + 8).mean().item()
    elbo = bits_per_dim(m, x, n_samples=50, **kw).item()
    iw10, iw500 = iwae_bits_per_dim(m, x, k=10, **kw).item(), iwae_bits_per_dim(m, x, k=500, **kw).item()
    assert elbo > iw10 > iw500 and abs(iw500 - true) < 0.01


def test_bits_per_dim_needs_a_variance():
    m = _LinearGaussian()
    x = torch.full((2, 1, 4, 4), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="pass obs_logvar"): bits_per_dim(m, x)
    with pytest.raises(ValueError, match="choose 'gaussian'"): bits_per_dim(m, x, likelihood="bernoulli", obs_logvar=0.0)


def test_frechet_distance_vs_scipy():
    from scipy import linalg
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, 5, generator=g, dtype=torch.float64), 2 * torch.randn(40, 5, generator=g, dtype=torch.float64) + 1
    ma, mb, sa, sb = a.mean(0), b.mean(0), torch.cov(a.T), torch.cov(b.T)
    ref = ((ma - mb) ** 2).sum() + np.trace(sa.numpy() + sb.numpy() - 2 * linalg.sqrtm(sa.numpy() @ sb.numpy()).real)
    assert abs(frechet_distance(ma, sa, mb, sb).item() - ref) < 1e-6
    assert abs(fid(a.view(40, 5, 1, 1), a.view(40, 5, 1, 1), feature_fn=lambda t: t.flatten(1))) < 1e-8


def test_fid_without_inception_weights_is_clear(empty_torch_home, monkeypatch):
    monkeypatch.setenv("VAE_COURSE_OFFLINE", "1")
    x = torch.rand(4, 3, 32, 32)
    with pytest.raises(WeightsUnavailableError, match="Inception_V3"):
        fid(x, x)


# ---------------------------------------------------------------- quality network
from vae_course.quality import (QualityNet, QualityConfig, QualityGuide, quality_loss, degrade, make_quality_data,
                                fit_quality_net, spearman, register_target, register_backbone, QUALITY_TARGETS,
                                QUALITY_BACKBONES, save_quality_net, load_quality_net, get_target)


@pytest.mark.parametrize("preset", ["tiny", "resnet18"])
@pytest.mark.parametrize("value_range", [(0, 1), (-1, 1)])
def test_quality_score_in_unit_interval(preset, value_range):
    torch.manual_seed(0)
    net = QualityNet(preset, value_range=value_range).eval()
    lo, hi = value_range
    s = net(torch.rand(3, 3, 32, 32) * (hi - lo) + lo)
    assert s.shape == (3,) and ((s >= 0) & (s <= 1)).all()
    assert net(torch.rand(2, 1, 32, 32) * (hi - lo) + lo).shape == (2,)  # grayscale is expanded
    assert torch.isclose(quality_loss(s), -s.mean())


def test_quality_pretrained_offline_error(empty_torch_home, monkeypatch):
    monkeypatch.setenv("VAE_COURSE_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError, match="ResNet18"): QualityNet("resnet18_imagenet")
    with pytest.raises(ValueError, match="no pretrained weights"): QualityNet("tiny", pretrained=True)


def test_quality_guide_frozen_gradient_to_images():
    torch.manual_seed(0)
    net = QualityNet("tiny")
    fit_quality_net(net, torch.rand(8, 3, 32, 32), torch.rand(8), epochs=1, batch_size=4)  # leaves stale grads
    guide = QualityGuide(net, weight=0.5).train()
    assert not guide.net.training and all(not p.requires_grad and p.grad is None for p in guide.parameters())
    bn = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    stats = bn.running_mean.clone()
    r = torch.rand(4, 3, 32, 32, requires_grad=True)
    loss = guide(r); loss.backward()
    assert torch.isclose(loss, -0.5 * net(r).mean())
    assert r.grad.abs().sum() > 0 and all(p.grad is None for p in guide.parameters())
    assert torch.equal(bn.running_mean, stats)  # eval mode: BatchNorm statistics do not drift


def test_quality_data_targets_and_training_ranks_heldout():
    from vae_course.data import OpenMoji
    torch.manual_seed(0)
    tr, va = OpenMoji(size=32, split="train").images[:128].float() / 255, OpenMoji(size=32, split="valid").images[:64].float() / 255
    x, y = make_quality_data(tr, seed=0)
    assert x.shape == (4 * 128, 3, 32, 32) and torch.equal(y[:128], torch.ones(128)) and (y >= 0).all() and (y <= 1).all()
    xv, yv = make_quality_data(va, include_clean=False, seed=1)
    n = torch.get_num_threads(); torch.set_num_threads(1)
    try:
        net = QualityNet("tiny")
        fit_quality_net(net, x, y, epochs=2)
    finally: torch.set_num_threads(n)
    with torch.no_grad(): rho = spearman(net.eval()(xv), yv)
    assert rho > 0.6, rho


def test_spearman_vs_scipy():
    from scipy.stats import spearmanr
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(40, generator=g), torch.randn(40, generator=g)
    a[::5] = a[0]  # ties
    assert abs(spearman(a, b) - spearmanr(a, b).statistic) < 1e-9


def test_quality_registries_plug_in(tmp_path):
    @register_target("_half")
    def half(d, r): return torch.full((len(d),), 0.5)
    @register_backbone("_lin")
    def lin(cfg): return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()), 3
    try:
        x, y = make_quality_data(torch.rand(4, 3, 16, 16), target="_half")
        assert torch.equal(y[4:], torch.full((12,), 0.5))
        net = QualityNet(backbone="_lin")
        assert net(torch.rand(2, 3, 16, 16)).shape == (2,)
        save_quality_net(net, tmp_path / "q.pt")
        assert torch.allclose(load_quality_net(tmp_path / "q.pt")(x[:2]), net.eval()(x[:2]))
    finally:
        del QUALITY_TARGETS["_half"], QUALITY_BACKBONES["_lin"]
    with pytest.raises(ValueError, match="register_backbone"): QualityNet(backbone="_lin")
    with pytest.raises(ValueError, match="register your own"): get_target("_half")


@pytest.mark.parametrize("kind", ["blur", "noise", "smooth"])
def test_degradations_monotone_in_ssim(kind):
    from vae_course.data import OpenMoji
    torch.manual_seed(0)
    x = OpenMoji(size=32, split="valid").images[:16].float() / 255
    weak, strong = ssim(degrade(x, kind, 0.1), x), ssim(degrade(x, kind, 1.0), x)
    assert 1.0 > weak > strong
    assert degrade(x, kind, torch.linspace(0, 1, 16)).shape == x.shape


def test_inception_features_shape_random_init():
    from vae_course.metrics import inception_features
    torch.manual_seed(0)
    f = inception_features(torch.rand(2, 3, 32, 32), pretrained=False)
    assert f.shape == (2, 2048) and torch.isfinite(f).all()

def test_sample_metrics_never_fall_back_to_random_inception(monkeypatch):
    "FID proper needs the ImageNet Inception weights: offline, a clear error, never a random-weight number; the course's own features work offline."
    from vae_course.metrics import sample_metrics
    monkeypatch.setenv("VAE_COURSE_OFFLINE", "1")
    x = torch.rand(6, 3, 32, 32)
    if not Path(weights_path(torchvision.models.Inception_V3_Weights.IMAGENET1K_V1)).exists():
        with pytest.raises(WeightsUnavailableError, match="pretrained=False"): sample_metrics(x, x, features="inception")
    with pytest.raises(ValueError, match="'emoji', 'inception'"): sample_metrics(x, x, features="clip")
    m = sample_metrics(x, x.flip(-1), features=lambda t: t.mean((2, 3)))                  # any feature function
    assert set(m) == {"fd", "kid", "kid_std", "precision", "recall", "c2st"}
    assert 0 <= sample_metrics(x[:4], x[2:], features=lambda t: t.mean((2, 3)))["c2st"] <= 1   # four images a set: four folds

def test_feature_network_is_made_when_missing(tmp_path, monkeypatch):
    "On a fresh clone the course's feature network is trained on first use, even from inside torch.no_grad(), then cached."
    import shutil
    from vae_course import metrics as M
    from vae_course.data import render_openmoji
    render_openmoji(M.FEATURE_SIZE, subset="all")                                 # the renders are shared; the network is not
    rendered = _render_file(M)
    monkeypatch.setenv("VAE_COURSE_DATA", str(tmp_path))
    shutil.copy(rendered, tmp_path)
    monkeypatch.setattr(M, "_FEATURE_NETS", {})
    from functools import partial
    monkeypatch.setattr(M, "train_feature_net", partial(M.train_feature_net, epochs=1))   # the path, not the quality: one epoch
    with torch.no_grad(): f = M.emoji_features(torch.rand(3, 3, 64, 64))
    assert f.shape == (3, 128) and (tmp_path / f"emoji_features_v{M.FEATURE_VERSION}.safetensors").is_file()
    again = M.emoji_feature_net(log=None)                                          # loaded from the cache, no training
    assert torch.equal(again.features(torch.ones(1, 3, 32, 32)), M._FEATURE_NETS["emoji"].features(torch.ones(1, 3, 32, 32)))

def _render_file(M):
    from vae_course.data import data_dir, _cache_name
    return data_dir() / _cache_name("all", M.FEATURE_SIZE, False)
