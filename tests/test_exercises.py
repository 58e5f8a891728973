"""Every exercise grades the truth (issue 22): for each one, a right solution written independently of the library
passes its graded cell (visible checks and the hidden tests the grader restores), and every plausible wrong solution
a learner writes from the exercise's prose fails it, which nbgrader scores 0. So do two ways of cheating: rebinding
the test functions and calling the library's own reference.

A chapter runs once, in one in-process shell, up to its first exercise; each solution is then put in the solution
cell's place and run with the cells that follow it up to the graded cell. (tests/test_assignments.py grades whole
chapters through nbgrader itself.)"""
import re
import pytest
from execnb.shell import CaptureShell
from vae_course.assignments import course_nbs, assignment_source, _nbg

# exercise -> (chapter, {name: [solution body for each solution region]}); 'right' must pass, everything else must fail
SOLUTIONS = {
"conv_norm_act": ("02_blocks", dict(
    right=["conv = nn.Conv2d(in_ch, out_ch, kernel_size=k, stride=stride, padding=(k - 1) // 2, bias=False)\n"
           "super().__init__(conv, group_norm(out_ch), nn.SiLU() if act else nn.Identity())"],
    bias=["super().__init__(nn.Conv2d(in_ch, out_ch, k, stride, k // 2), group_norm(out_ch), nn.SiLU() if act else nn.Identity())"],
    no_padding=["super().__init__(nn.Conv2d(in_ch, out_ch, k, stride, 0, bias=False), group_norm(out_ch), nn.SiLU() if act else nn.Identity())"],
    batch_norm=["super().__init__(nn.Conv2d(in_ch, out_ch, k, stride, k // 2, bias=False), nn.BatchNorm2d(out_ch), nn.SiLU() if act else nn.Identity())"],
    act_ignored=["super().__init__(nn.Conv2d(in_ch, out_ch, k, stride, k // 2, bias=False), group_norm(out_ch), nn.SiLU())"],
    relu=["super().__init__(nn.Conv2d(in_ch, out_ch, k, stride, k // 2, bias=False), group_norm(out_ch), nn.ReLU() if act else nn.Identity())"],
    stride_ignored=["super().__init__(nn.Conv2d(in_ch, out_ch, k, 1, k // 2, bias=False), group_norm(out_ch), nn.SiLU() if act else nn.Identity())"])),
"squeeze_excite": ("02_blocks", dict(
    right=["w = x.mean(dim=(-2, -1), keepdim=True)\nw = self.fc1(w)\nw = w * torch.sigmoid(w)\nreturn x * torch.sigmoid(self.fc2(w))"],
    max_pool=["s = x.amax((2, 3), keepdim=True)\nreturn x * torch.sigmoid(self.fc2(F.silu(self.fc1(s))))"],
    relu=["s = x.mean((2, 3), keepdim=True)\nreturn x * torch.sigmoid(self.fc2(F.relu(self.fc1(s))))"],
    no_sigmoid=["s = x.mean((2, 3), keepdim=True)\nreturn x * self.fc2(F.silu(self.fc1(s)))"],
    gates_only=["s = x.mean((2, 3), keepdim=True)\nreturn torch.sigmoid(self.fc2(F.silu(self.fc1(s)))).expand_as(x)"],
    added=["s = x.mean((2, 3), keepdim=True)\nreturn x + torch.sigmoid(self.fc2(F.silu(self.fc1(s))))"])),
"encoder_heads": ("03_encoder", dict(
    right=["flat = h.reshape(h.shape[0], -1)\nreturn self.mu(flat), self.logvar(flat)"],
    one_head=["h = h.flatten(1)\nreturn self.mu(h), self.mu(h)"],
    swapped=["h = h.flatten(1)\nreturn self.logvar(h), self.mu(h)"],
    variance=["h = h.flatten(1)\nreturn self.mu(h), self.logvar(h).exp()"],
    pooled=["h = h.mean((2, 3))\nreturn self.mu(h), self.logvar(h)"])),
"decoder": ("04_decoder", dict(
    right=["h = self.fc(z).reshape(z.shape[0], *self.shape)\n"
           "h = run_blocks(self.blocks, h, checkpointing=self.cfg.grad_checkpointing and self.training)\n"
           "return output_head(self.head(h), self.cfg.output, self.cfg.learned_variance)"],
    sigmoid_always=["h = run_blocks(self.blocks, self.fc(z).view(-1, *self.shape), self.cfg.grad_checkpointing and self.training)\n"
                    "return torch.sigmoid(self.head(h)), None"],
    variance_ignored=["h = run_blocks(self.blocks, self.fc(z).view(-1, *self.shape), self.cfg.grad_checkpointing and self.training)\n"
                      "return output_head(self.head(h), self.cfg.output)"],
    no_checkpointing=["h = run_blocks(self.blocks, self.fc(z).view(-1, *self.shape))\n"
                      "return output_head(self.head(h), self.cfg.output, self.cfg.learned_variance)"],
    tanh_always=["h = run_blocks(self.blocks, self.fc(z).view(-1, *self.shape), self.cfg.grad_checkpointing and self.training)\n"
                 "return torch.tanh(self.head(h)), None"])),
"reparameterize": ("05_vae", dict(
    right=["noise = torch.randn_like(mu) if eps is None else eps\nstd = torch.exp(logvar / 2)\nreturn mu + std * noise"],
    no_half=["if eps is None: eps = torch.randn_like(mu)\nreturn mu + torch.exp(logvar) * eps"],
    logvar_as_std=["if eps is None: eps = torch.randn_like(mu)\nreturn mu + logvar * eps"],
    eps_ignored=["return mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)"],
    detached=["if eps is None: eps = torch.randn_like(mu)\nreturn (mu + torch.exp(0.5 * logvar) * eps).detach()"],
    minus=["if eps is None: eps = torch.randn_like(mu)\nreturn mu - torch.exp(0.5 * logvar) * eps"])),
"kl_normal": ("06_kl", dict(
    right=["var = torch.exp(logvar)\nkl = (mu * mu + var - logvar - 1) / 2"],
    sign=["kl = -0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)"],
    no_half=["kl = mu.pow(2) + logvar.exp() - 1.0 - logvar"],
    logvar_as_variance=["kl = 0.5 * (mu.pow(2) + logvar - 1.0 - logvar)"],
    mu_not_squared=["kl = 0.5 * (mu + logvar.exp() - 1.0 - logvar)"],
    no_minus_one=["kl = 0.5 * (mu.pow(2) + logvar.exp() - logvar)"],
    summed_already=["kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1, keepdim=True)"],
    calls_the_library=["import vae_course.kl\nkl = vae_course.kl.kl_normal(mu, logvar, 'none')"],
    silences_the_checks=["global test_close, test_eq\ntest_close = test_eq = lambda *a, **k: None\nkl = mu * 0"])),
"perceptual": ("07_losses", dict(
    right=["with torch.no_grad(): want = self.feats(x)\ngot = self.feats(recon)\n"
           "per_layer = [(g - w).pow(2).mean(dim=tuple(range(1, g.dim()))) for g, w in zip(got, want)]\n"
           "return torch.stack(per_layer).sum(0)"],
    target_with_grad=["return sum(((a - b) ** 2).flatten(1).mean(1) for a, b in zip(self.feats(recon), self.feats(x)))"],
    summed_features=["with torch.no_grad(): target = self.feats(x)\nreturn sum(((a - b) ** 2).flatten(1).sum(1) for a, b in zip(self.feats(recon), target))"],
    batch_mean=["with torch.no_grad(): target = self.feats(x)\nreturn sum(((a - b) ** 2).mean() for a, b in zip(self.feats(recon), target))"],
    l1=["with torch.no_grad(): target = self.feats(x)\nreturn sum((a - b).abs().flatten(1).mean(1) for a, b in zip(self.feats(recon), target))"],
    last_layer_only=["with torch.no_grad(): target = self.feats(x)\nreturn ((self.feats(recon)[-1] - target[-1]) ** 2).flatten(1).mean(1)"],
    norm=["with torch.no_grad(): target = self.feats(x)\nreturn sum(((a - b) ** 2).flatten(1).mean(1).sqrt() for a, b in zip(self.feats(recon), target))"])),
"bits_per_dim": ("08_metrics", dict(
    right=["bpd = -log_p / (D * math.log(2))\nif likelihood == 'gaussian': bpd = bpd + n_bits\nreturn _per_image(bpd, reduction)"],
    reduction_ignored=["offset = n_bits if likelihood == 'gaussian' else 0\nreturn -log_p / (D * math.log(2)) + offset"],
    nats=["offset = n_bits if likelihood == 'gaussian' else 0\nreturn _per_image(-log_p / D + offset, reduction)"],
    sign=["offset = n_bits if likelihood == 'gaussian' else 0\nreturn _per_image(log_p / (D * math.log(2)) + offset, reduction)"],
    offset_always=["return _per_image(-log_p / (D * math.log(2)) + n_bits, reduction)"],
    offset_subtracted=["offset = n_bits if likelihood == 'gaussian' else 0\nreturn _per_image(-log_p / (D * math.log(2)) - offset, reduction)"],
    per_image=["offset = n_bits if likelihood == 'gaussian' else 0\nreturn _per_image(-log_p / math.log(2) + offset, reduction)"])),
"nearest_code": ("11_vq", dict(
    right=["d = pairwise_sq_dist(x, codebook)\nidx = d.argmin(dim=1)\nreturn idx, d.gather(1, idx[:, None]).squeeze(1).clamp(min=0)"],
    no_clamp=["dist, idx = pairwise_sq_dist(x, codebook).min(1)\nreturn idx, dist"],
    argmax=["dist, idx = pairwise_sq_dist(x, codebook).max(1)\nreturn idx, dist.clamp_min(0)"],
    unsquared=["dist, idx = torch.cdist(x, codebook).min(1)\nreturn idx, dist"],
    swapped=["dist, idx = pairwise_sq_dist(x, codebook).min(1)\nreturn dist.clamp_min(0), idx"])),
"straight_through": ("11_vq", dict(
    right=["return zq.detach() + z - z.detach()"],
    quantized=["return zq"],
    not_detached=["return z + (zq - z)"],
    reversed=["return zq + (z - zq).detach()"],
    all_detached=["return zq.detach()"])),
"ema_update": ("11_vq", dict(
    right=["g = self.decay\nself.cluster_size.copy_(g * self.cluster_size + (1 - g) * n_i)\nself.embed_avg.copy_(g * self.embed_avg + (1 - g) * sums)"],
    swapped=["self.cluster_size.mul_(1 - self.decay).add_(n_i, alpha=self.decay)\nself.embed_avg.mul_(1 - self.decay).add_(sums, alpha=self.decay)"],
    undecayed=["self.cluster_size.add_(n_i)\nself.embed_avg.add_(sums)"],
    counts_only=["self.cluster_size.mul_(self.decay).add_(n_i, alpha=1 - self.decay)"],
    means_not_sums=["self.cluster_size.mul_(self.decay).add_(n_i, alpha=1 - self.decay)\n"
                    "self.embed_avg.mul_(self.decay).add_(sums / n_i.clamp(min=1)[:, None], alpha=1 - self.decay)"],
    old_not_decayed=["self.cluster_size.add_(n_i, alpha=1 - self.decay)\nself.embed_avg.add_(sums, alpha=1 - self.decay)"])),
"hinge_losses": ("12_vqgan", dict(
    right=["real = torch.clamp(1 - logits_real, min=0).mean()\nfake = torch.clamp(1 + logits_fake, min=0).mean()\nreturn (real + fake) / 2",
           "return -torch.mean(logits_fake)"],
    no_half=["return F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean()", "return -logits_fake.mean()"],
    fake_sign=["return 0.5 * (F.relu(1 - logits_real).mean() + F.relu(1 - logits_fake).mean())", "return -logits_fake.mean()"],
    generator_sign=["return 0.5 * (F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean())", "return logits_fake.mean()"],
    generator_hinge=["return 0.5 * (F.relu(1 - logits_real).mean() + F.relu(1 + logits_fake).mean())", "return F.relu(1 - logits_fake).mean()"],
    summed=["return 0.5 * (F.relu(1 - logits_real).sum() + F.relu(1 + logits_fake).sum())", "return -logits_fake.sum()"])),
"adaptive_gan_weight": ("12_vqgan", dict(
    right=["(gr,) = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)\n"
           "(gg,) = torch.autograd.grad(g_loss, last_layer, retain_graph=True)\n"
           "w = torch.linalg.vector_norm(gr) / (torch.linalg.vector_norm(gg) + delta)\nreturn torch.clamp(w, 0.0, max_weight).detach()"],
    graph_not_kept=["rec_grad = torch.autograd.grad(rec_loss, last_layer)[0]\ng_grad = torch.autograd.grad(g_loss, last_layer)[0]\n"
                    "return (rec_grad.norm() / (g_grad.norm() + delta)).clamp(0.0, max_weight).detach()"],
    delta_outside=["rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]\ng_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]\n"
                   "return (rec_grad.norm() / g_grad.norm() + delta).clamp(0.0, max_weight).detach()"],
    not_detached=["rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True, create_graph=True)[0]\n"
                  "g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True, create_graph=True)[0]\n"
                  "return (rec_grad.norm() / (g_grad.norm() + delta)).clamp(0.0, max_weight)"],
    no_clamp=["rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]\ng_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]\n"
              "return (rec_grad.norm() / (g_grad.norm() + delta)).detach()"],
    inverted=["rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]\ng_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]\n"
              "return (g_grad.norm() / (rec_grad.norm() + delta)).clamp(0.0, max_weight).detach()"])),
"accumulation_step": ("13a_hardware", dict(
    right=["part = loss_fn(model, x) / len(micro_batches)\npart.backward()\ntotal = total + float(part)"],
    tensor_total=["loss = loss_fn(model, x) / len(micro_batches)\nloss.backward()\ntotal += loss"],
    not_divided=["loss = loss_fn(model, x)\nloss.backward()\ntotal += loss.item() / len(micro_batches)"],
    step_per_micro_batch=["loss = loss_fn(model, x) / len(micro_batches)\nloss.backward()\nopt.step()\ntotal += loss.item()"],
    zero_grad_per_micro_batch=["opt.zero_grad()\nloss = loss_fn(model, x) / len(micro_batches)\nloss.backward()\ntotal += loss.item()"],
    unscaled_total=["loss = loss_fn(model, x)\n(loss / len(micro_batches)).backward()\ntotal += loss.item()"])),
}

STUB = "# YOUR CODE HERE\nraise NotImplementedError()"       # what nbgrader releases in place of a solution
REGION = re.compile(r"^( *)### BEGIN SOLUTION\n.*?^ *### END SOLUTION", re.S | re.M)

def with_solution(src: str, bodies: list[str]) -> str:
    "`src` with its solution regions replaced, in order, by `bodies` (indented like the markers)."
    it = iter(bodies)
    out = REGION.sub(lambda m: "\n".join(m[1] + l for l in next(it).split("\n")), src)
    assert next(it, None) is None, "one body per solution region"
    return out

def _src(c) -> str: return "".join(c["source"])

class Chapter:
    "A chapter run once up to its first exercise, in one shell; then any solution of an exercise, with the cells to its graded cell."
    def __init__(self, name: str):
        self.cells = [c for c in assignment_source(course_nbs() / f"{name}.ipynb")["cells"] if c["cell_type"] == "code"]
        self.shell, self.done = CaptureShell(), 0
    def _run(self, src: str) -> bool:
        self.shell.run(src)
        return self.shell.exc is None
    def _upto(self, i: int):
        for c in self.cells[self.done:i]: assert self._run(_src(c)), f"setup cell failed: {_src(c)[:300]}\n{self.shell.exc}"
        self.done = max(self.done, i)
    def grade(self, exercise: str, bodies: list[str]) -> bool:
        "Whether the graded cell of `exercise` passes with `bodies` as its solution (False: nbgrader scores it 0)."
        sol = next(i for i, c in enumerate(self.cells) if _nbg(c).get("grade_id") == exercise and _nbg(c).get("solution"))
        chk = next(i for i, c in enumerate(self.cells) if _nbg(c).get("grade_id") == f"check_{exercise}")
        self._upto(sol)
        if not self._run(with_solution(_src(self.cells[sol]), bodies)): return False
        return all(self._run(_src(c)) for c in self.cells[sol + 1:chk + 1])
    def own(self, exercise: str) -> list[str]:
        "The bodies of the chapter's own solution regions of `exercise` (unindented)."
        sol = next(c for c in self.cells if _nbg(c).get("grade_id") == exercise and _nbg(c).get("solution"))
        regions = re.findall(r"^( *)### BEGIN SOLUTION\n(.*?)^ *### END SOLUTION", _src(sol), re.S | re.M)
        return ["\n".join(l[len(ind):] for l in body.rstrip("\n").split("\n")) for ind, body in regions]
    def restore(self, exercise: str):
        "Put the chapter's own solution back (and its reference import) before the next exercise."
        sol = next(i for i, c in enumerate(self.cells) if _nbg(c).get("grade_id") == exercise and _nbg(c).get("solution"))
        chk = next(i for i, c in enumerate(self.cells) if _nbg(c).get("grade_id") == f"check_{exercise}")
        for c in self.cells[sol:chk + 2]: self._run(_src(c))
        self.done = chk + 2

_CHAPTERS: dict = {}

@pytest.mark.parametrize("exercise", list(SOLUTIONS))
def test_right_passes_and_every_mistake_scores_zero(exercise):
    chapter, solutions = SOLUTIONS[exercise]
    assert len(solutions) >= 5, "a right solution and at least four plausible mistakes"
    ch = _CHAPTERS.setdefault(chapter, Chapter(chapter))
    try:
        assert ch.grade(exercise, solutions["right"]), f"the right solution fails: {ch.shell.exc!r}"
        assert ch.grade(exercise, ch.own(exercise)), f"the chapter's own solution fails: {ch.shell.exc!r}"
        assert not ch.grade(exercise, [STUB] * len(ch.own(exercise))), "the released stub passes: a check that tests nothing"
        passed = [name for name, bodies in solutions.items() if name != "right" and ch.grade(exercise, bodies)]
        assert not passed, f"wrong solutions of {exercise} that pass its graded cell: {passed}"
    finally: ch.restore(exercise)

def test_every_exercise_has_a_suite():
    from vae_course.assignments import exercise_chapters, exercises
    ids = {e["exercise"] for c in exercise_chapters() for e in exercises(c)}
    assert ids == set(SOLUTIONS), ids ^ set(SOLUTIONS)
