"""What the course says about its samplers and metrics is exactly what they do (issue 24): each test failed before
its fix, or checks a formula against an independent computation."""
import numpy as np
import torch
from vae_course.samplers import GMMSampler, aggregate_posterior
from vae_course.metrics import kid

def test_a_second_fit_of_a_mixture_starts_afresh():
    "GMMSampler.fit twice on the same object gives the same mixture (the first fit's weights used to seed the second)."
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.randn(200, 6, generator=g) + 3 * torch.randn(1, 6, generator=g) for _ in range(3)])
    s = GMMSampler(6, k=3, rank=4, iters=20)
    first = {k: v.clone() for k, v in s.fit(z).state_dict().items()}
    second = s.fit(z).state_dict()
    assert all(torch.allclose(first[k], second[k]) for k in first)

def test_the_aggregate_posterior_variance_is_the_mixtures():
    "q(z) = (1/N) Σ N(μ_n, σ_n²) has variance mean(σ²) + mean(μ²) − mean(μ)²: 1/N, not N − 1."
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g)
    exact = logvar.double().exp().mean(0) + (mu.double() ** 2).mean(0) - mu.double().mean(0) ** 2
    torch.testing.assert_close(aggregate_posterior(mu, logvar)["var"], exact)

def _binkowski_mmd(a: np.ndarray, b: np.ndarray) -> float:
    "Unbiased MMD² with the polynomial kernel (x·y/d + 1)³, written after Bińkowski et al.'s polynomial_mmd."
    d, m = a.shape[1], len(a)
    kxx, kyy, kxy = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
    return ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (m * (m - 1)) - 2 * kxy.mean()

def test_kid_is_binkowskis_with_their_std():
    g = torch.Generator().manual_seed(1)
    fr, ff = torch.randn(60, 8, generator=g), torch.randn(60, 8, generator=g) + 0.3
    mean, std = kid(fr, ff, subset_size=20, n_subsets=5, seed=3)
    perm = torch.Generator().manual_seed(3)
    vals = [_binkowski_mmd(fr[torch.randperm(60, generator=perm)[:20]].double().numpy(),
                           ff[torch.randperm(60, generator=perm)[:20]].double().numpy()) for _ in range(5)]
    assert np.isclose(mean, np.mean(vals)) and np.isclose(std, np.std(vals))       # np.std: ddof=0, as their code
