"HCFlow: exact to the official code (fixtures, key lists, parameter counts), invertibility, exact log-dets, API and bad input."
import copy
import json
import math

import pytest
import torch
import torch.nn.functional as F
from fastcore.test import test_fail as fails_with

from srflow_nb.core import InputError, sum_except_batch
from srflow_nb.hcflow import (AtanAffineCoupling, ConditionalFlow, HaarDownsampling, HCFlow, HCFlowConfig, HCFlowStep,
                              LRCoupling, quantize8_ste)
from srflow_nb.hcflow_train import infer_hcflow_config, load_official_hcflow, official_hcflow_state_dict, read_hcflow_key_list
from srflow_nb.layers import gaussian_logp
from srflow_nb.testing import check_inverse, check_logdet, fixture_dir, official_fixture, perturb_zero_params

KEYS = fixture_dir("hcflow_keys")
PAPER = [("sr_div2k_4x", "HCFlow_SR_DF2K_4X"), ("sr_celeba_8x", "HCFlow_SR_CelebA_8X"),
         ("rescaling_div2k_4x", "HCFlow_Rescaling_DF2K_4X")]


def n_params(m): return sum(p.numel() for p in m.parameters())


def perturbed(m, std=0.1, seed=1):
    perturb_zero_params(m, std, torch.Generator().manual_seed(seed))
    return m


def tiny(kind, seed=0, std=0.05):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        m = HCFlow(getattr(HCFlowConfig, f"{kind}_tiny_4x")())
    return perturbed(m, std, seed).eval()


# ---------------------------------------------------------------- paper configurations
@pytest.mark.parametrize("preset,stem,n", [(p, s, n) for (p, s), n in zip(PAPER, [23_232_539, 27_017_723, 4_396_350])])
def test_paper_keys_shapes_params_and_inference(preset, stem, n):
    "Key for key (in order) and shape for shape; parameter counts = the official ones (issue 16 and the fixture json)."
    ref = read_hcflow_key_list(KEYS / f"{stem}.keys.txt")
    info = json.loads((KEYS / f"{stem}.json").read_text())
    m = HCFlow(getattr(HCFlowConfig, preset)())
    assert [(k, tuple(v.shape)) for k, v in official_hcflow_state_dict(m).items()] == list(ref.items())
    assert n_params(m) == n == info["n_params"] == sum(math.prod(s) for s in ref.values())
    assert len(ref) == info["n_state_keys"]
    assert infer_hcflow_config({k: torch.empty(s, device="meta") for k, s in ref.items()}) == getattr(HCFlowConfig, preset)()
    assert m.scale == info["scale"] and m.config.K == (info["network_G"]["flowDownsampler"]["K"],) * m.config.L


# ---------------------------------------------------------------- official fixtures
def _ours(kind):
    sd, fx = official_fixture(f"hcflow_{kind}_tiny")
    m = load_official_hcflow(sd)
    with torch.no_grad():
        lr_est, latents, logdet = m.encode(fx["hr"])
        out = {"flow_out": lr_est}
        if kind == "sr":
            out["flow_logdet"] = logdet
            out["fwd_nll"] = m.nll(fx["hr"], fx["lr"], fx["dequant_noise"]).mean().reshape(1)
            out["fwd_lr"] = quantize8_ste(m.encode(fx["hr"] + fx["dequant_noise"] / m.config.quant)[0])
            start = fx["lr"]
        else:
            out |= {"fwd_z2": latents[0], "fwd_z1": latents[1], "fwd_lr": m.downscale(fx["hr"])}
            start = fx["flow_out"]
        for t in ("0.0", "0.9"):
            out[f"rev_flow_t{t}"] = m.decode(start, [fx[f"rev_t{t}_eps0"], fx[f"rev_t{t}_eps1"]])
            out[f"rev_t{t}"] = out[f"rev_flow_t{t}"].clamp(0, 1)
    return m, fx, out


@pytest.mark.parametrize("kind", ["sr", "rescaling"])
def test_official_fixture(kind):
    m, fx, out = _ours(kind)
    meta = json.loads((fixture_dir(f"hcflow_{kind}_tiny") / "meta.json").read_text())
    assert n_params(m) == meta["n_params"] and m.config == getattr(HCFlowConfig, f"{kind}_tiny_4x")()
    want = {"sr": {"flow_out", "flow_logdet", "fwd_nll", "fwd_lr"}, "rescaling": {"flow_out", "fwd_z1", "fwd_z2", "fwd_lr"}}[kind]
    assert want | {"rev_flow_t0.0", "rev_flow_t0.9", "rev_t0.0", "rev_t0.9"} == set(out)
    for k, v in out.items():
        torch.testing.assert_close(v, fx[k], rtol=1e-4, atol=1e-5, msg=lambda s: f"{kind} {k}: {s}")
    # the fixture is sensitive: a different temperature or a dropped conditional log-density would not match
    assert not torch.allclose(out["rev_flow_t0.9"], out["rev_flow_t0.0"], atol=1e-3)


def test_official_logdet_includes_conditional_logp():
    m, fx, out = _ours("sr")
    with torch.no_grad(): _, _, steps_logdet, logp = m.flow.encode(fx["hr"])
    assert logp.abs().min() > 1.0  # the density term is not negligible, so the fixture check above tests it
    torch.testing.assert_close(steps_logdet + logp, fx["flow_logdet"], rtol=1e-4, atol=1e-5)


def test_rescaling_upscale_downscale_match_official():
    sd, fx = official_fixture("hcflow_rescaling_tiny")
    m = load_official_hcflow(sd)
    with torch.no_grad():
        torch.testing.assert_close(m.downscale(fx["hr"]), fx["fwd_lr"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.upscale(fx["flow_out"], temperature=0.0), fx["rev_t0.0"], rtol=1e-4, atol=1e-5)


def test_load_official_paths_prefix_and_errors(tmp_path):
    sd, fx = official_fixture("hcflow_sr_tiny")
    path = fixture_dir("hcflow_sr_tiny") / "official_state_dict.safetensors"
    a, b = load_official_hcflow(path), load_official_hcflow({"module." + k: v for k, v in sd.items()})
    torch.save(sd, tmp_path / "hcflow.pth")
    c = load_official_hcflow(tmp_path / "hcflow.pth")
    for m in (b, c):
        for k, v in official_hcflow_state_dict(a).items(): assert torch.equal(v, official_hcflow_state_dict(m)[k])
    assert all(bool(n.initialized) for n in a.actnorms()) and not a.training
    fails_with(lambda: load_official_hcflow({"RRDB.conv_first.weight": torch.zeros(1)}), contains="not an official HCFlow")
    bad = dict(sd); bad["flow.level0_condFlow.f.bias"] = torch.zeros(7)
    fails_with(lambda: load_official_hcflow(bad, config=HCFlowConfig.sr_tiny_4x()), contains="has shape")
    missing = {k: v for k, v in sd.items() if "level1_condFlow.f." not in k}
    fails_with(lambda: load_official_hcflow(missing), contains="missing")
    fails_with(lambda: load_official_hcflow(tmp_path / "nope.pth"), contains="nope.pth")   # names the file (the wording is the checkpoint loader's)
    assert infer_hcflow_config(sd, quant=256).quant == 256 and infer_hcflow_config(sd).quant == 64


# ---------------------------------------------------------------- layers: inverse and exact log-det
def test_haar():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 6, generator=g)
    y, ld = HaarDownsampling(3)(x)
    torch.testing.assert_close(y[:, :3], F.avg_pool2d(x, 2))
    torch.testing.assert_close(ld, torch.full((2,), -math.log(16.0) * 3 * 4 * 3))
    check_inverse(HaarDownsampling(3), x)
    check_logdet(HaarDownsampling(4), torch.randn(2, 4, 4, 4, generator=g))
    fails_with(lambda: HaarDownsampling(3)(x[..., :5]), contains="even H, even W")


@pytest.mark.parametrize("make,channels,cond_channels", [
    (lambda: AtanAffineCoupling(5, 6, 8), 5, 6),
    (lambda: AtanAffineCoupling(4, 0, 8, "DenseBlock"), 4, 0),
    (lambda: LRCoupling(12, True, 8), 12, 0),
    (lambda: LRCoupling(12, False, 8), 12, 0),
    (lambda: HCFlowStep(6, AtanAffineCoupling(6, 5, 8)), 6, 5),
    (lambda: HCFlowStep(7, LRCoupling(7, True, 8), invconv=False), 7, 0),
])
def test_layer_inverse_and_logdet(make, channels, cond_channels):
    g = torch.Generator().manual_seed(2)
    layer = perturbed(make())
    for p in layer.parameters():
        if p.shape[:2] == (1, channels) and p.ndim == 4:  # ActNorm: make it non-trivial
            with torch.no_grad(): p.normal_(0, 0.2, generator=g)
    x = torch.randn(2, channels, 4, 4, generator=g)
    cond = torch.randn(2, cond_channels, 4, 4, generator=g) if cond_channels else None
    check_inverse(layer, x, cond)
    check_logdet(layer, x, cond)
    with torch.no_grad(): assert not torch.allclose(layer(x, cond)[0], x, atol=1e-3)  # not the identity


def test_lr_coupling_structure():
    x = torch.randn(2, 12, 4, 4, generator=torch.Generator().manual_seed(3))
    a, b = perturbed(LRCoupling(12, True, 8)), perturbed(LRCoupling(12, False, 8))
    with torch.no_grad():
        assert torch.equal(a(x)[0][:, :3], x[:, :3]) and torch.equal(b(x)[0][:, 3:], x[:, 3:])
        assert torch.equal(b(x)[1], torch.zeros(2))


def test_conditional_flow_inverse_and_logdet():
    g = torch.Generator().manual_seed(4)
    for atan_prior, two in [(False, True), (True, False)]:
        cf = perturbed(ConditionalFlow(5, 4, 2, 8, (1, 1), 8, 4, two_features=two, atan_prior=atan_prior), 0.05)
        a, u = torch.randn(2, 5, 4, 4, generator=g), torch.randn(2, 4, 4, 4, generator=g)
        with torch.no_grad():
            eps, ld, logp, feats = cf.encode(a, u)
            torch.testing.assert_close(cf.decode(eps, u)[0], a, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(logp, gaussian_logp(eps) - sum_except_batch(cf.prior(feats)[1]), rtol=1e-4, atol=1e-3)
            assert not torch.allclose(cf.encode(a, u + 1)[0], eps)
        cfd = copy.deepcopy(cf).double()

        def a_to_eps(a, u):
            eps, ld, _, feats = cfd.encode(a, u)
            return eps, ld - sum_except_batch(cfd.prior(feats)[1])
        check_logdet(a_to_eps, a, u)


def _full_map(m):
    md = copy.deepcopy(m).double()

    def f(x, c):
        lr, latents, logdet = md.encode(x)
        return [lr] + latents, logdet - sum(gaussian_logp(e) for e in latents)
    return f


@pytest.mark.parametrize("kind", ["sr", "rescaling"])
def test_model_round_trip_and_exact_logdet(kind):
    m = tiny(kind)
    hr = torch.rand(2, 3, 8, 12, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        lr, latents, _ = m.encode(hr)
        assert [tuple(t.shape) for t in latents] == m.latent_shapes((2, 3), 2)
        torch.testing.assert_close(m.decode(lr, latents), hr, rtol=1e-5, atol=1e-5)
    check_logdet(_full_map(m), hr)


def test_check_logdet_catches_a_halved_logdet():
    full = _full_map(tiny("rescaling"))
    hr = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    with pytest.raises(AssertionError): check_logdet(lambda x, c: (full(x, c)[0], full(x, c)[1] / 2), hr)


# ---------------------------------------------------------------- API
def test_any_size_and_bad_input():
    m = tiny("sr")
    for hw in [(8, 8), (16, 8), (12, 20)]:
        hr = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            lr, lat, _ = m.encode(hr)
            assert lr.shape == (1, 3, hw[0] // 4, hw[1] // 4)
            torch.testing.assert_close(m.decode(lr, lat), hr, rtol=1e-5, atol=1e-5)
    fails_with(lambda: m.encode(torch.rand(1, 3, 10, 8)), contains="divisible by 4")
    fails_with(lambda: m.encode(torch.rand(1, 1, 8, 8)), contains="(B, 3, H, W)")
    fails_with(lambda: m.decode(torch.rand(1, 3, 2, 2), [torch.zeros(1, 21, 2, 2)]), contains="eps shapes")
    fails_with(lambda: m.nll(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 4, 4)), contains="does not match")
    assert issubclass(InputError, ValueError)
    fails_with(lambda: HCFlowConfig(K=(4, 4), after_flowstep=(4, 2)), contains="after_flowstep")


def test_sample():
    m = tiny("sr")
    lr = torch.rand(2, 3, 3, 2, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        s = m.sample(lr, n=3, temperature=0.8, generator=torch.Generator().manual_seed(1))
        assert s.shape == (3, 2, 3, 12, 8) and s.min() >= 0 and s.max() <= 1
        assert torch.equal(s, m.sample(lr, n=3, temperature=0.8, generator=torch.Generator().manual_seed(1)))
        assert not torch.allclose(s[0], s[1])
        s0 = m.sample(lr, n=2, temperature=0.0)
        assert torch.equal(s0[0], s0[1])
        eps = m.sample_eps(lr, 0.5, torch.Generator().manual_seed(2))
        g = torch.Generator().manual_seed(2)
        ref = [torch.randn(sh, generator=g) * 0.5 for sh in m.latent_shapes((3, 2), 2)]  # deepest first, in draw order
        for a, b in zip(eps, ref): assert torch.equal(a, b)


def test_nll_trains():
    "Gradients reach every trainable parameter group through the straight-through quantiser; the NLL is finite."
    m = tiny("sr").train()
    hr = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(9))
    lr = F.avg_pool2d(hr, 4)
    nll = m.nll(hr, lr, generator=torch.Generator().manual_seed(0))
    assert nll.shape == (2,) and torch.isfinite(nll).all()
    nll.mean().backward()
    for name in ["flow.layers.1.affine.f.conv1.weight", "flow.level0_condFlow.conv_first.weight", "flow.level1_condFlow.f.weight"]:
        grad = dict(m.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    torch.testing.assert_close(m.nll(hr, lr, generator=torch.Generator().manual_seed(0)), nll)
    # reverse pass with gradients (for an L1 loss on samples, HCFlow+)
    m.zero_grad()
    m.decode(lr, temperature=0.0).abs().mean().backward()
    assert m.flow.level1_condFlow.f.weight.grad.abs().sum() > 0


def test_initialize_and_config_roundtrip():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        m = HCFlow(HCFlowConfig.sr_tiny_4x())
    assert not any(bool(n.initialized) for n in m.actnorms())
    hr = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(10))
    m.initialize(hr)
    assert all(bool(n.initialized) for n in m.actnorms())
    with torch.no_grad():
        z, _ = m.flow.layers[0](hr)
        y, _ = m.flow.layers[1].actnorm(z)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(12), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(12), atol=1e-3, rtol=0)
    for p in ["sr_div2k_4x", "sr_celeba_8x", "rescaling_div2k_4x", "sr_small_4x", "rescaling_small_4x"]:
        cfg = getattr(HCFlowConfig, p)()
        assert HCFlowConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_quantize8_ste():
    x = torch.tensor([-0.2, 0.31, 1.4], requires_grad=True)
    q = quantize8_ste(x)
    q.sum().backward()
    assert torch.equal(q.detach(), torch.tensor([0.0, 79 / 255, 1.0])) and torch.equal(x.grad, torch.ones(3))


# ---------------------------------------------------------------- fast sampling (LR-only work cached)
from dataclasses import replace as _replace

from srflow_nb.hcflow import HCFlowNet
from srflow_nb.hcflow_train import HCFlowTask, _clip_finite, hcflow_options, hcflow_paper_rescaling, hcflow_paper_sr, load_hcflow
from srflow_nb.checkpoints import export_model
from srflow_nb.train import PatchCache, Trainer, Updater


@pytest.mark.parametrize("cfg", [HCFlowConfig.sr_tiny_4x(), HCFlowConfig.rescaling_tiny_4x(),
                                 _replace(HCFlowConfig.sr_tiny_4x(), K=(4, 4, 4), after_flowstep=(2, 2, 2))],
                         ids=["sr", "rescaling", "sr8x"])
def test_decode_cached_equals_decode(cfg):
    """float64: the cache is exact up to rounding (1e-10; a stale or mis-split cache is off by orders more). float32: the
    cached decode stays within 4x of the plain decode's own rounding floor (the same draws decoded as one batch of 2
    against one by one: only the summation order differs), the tolerance `benchmarks/hcflow_sample_speed.py` applies."""
    torch.manual_seed(0)
    net = perturbed(HCFlowNet(cfg), 0.05, 0).eval()
    g = torch.Generator().manual_seed(1)
    lr = torch.rand(2, 3, 3, 5, generator=g)
    eps = [torch.randn(s, generator=g) * 0.9 for s in net.latent_shapes((3, 5), 2)]
    with torch.no_grad():
        cache = net.lr_cache(lr)
        plain = net.decode(lr, eps)
        diff = (net.decode_cached(cache, eps) - plain).abs().max().item()
        other = (net.decode_cached(cache, [e * 0 for e in eps]) - plain).abs().max().item()
        one_by_one = torch.cat([net.decode(lr[i:i + 1], [e[i:i + 1] for e in eps]) for i in range(2)])
        floor = (one_by_one - plain).abs().max().item()
        net64, lr64, eps64 = copy.deepcopy(net).double(), lr.double(), [e.double() for e in eps]
        diff64 = (net64.decode_cached(net64.lr_cache(lr64), eps64) - net64.decode(lr64, eps64)).abs().max().item()
    assert diff64 <= 1e-10
    assert diff <= 4 * max(floor, 1e-7)      # floor 0 when both orders happen to round alike: then one float32 ulp scale
    assert other > 1e-3          # the cached decode does use the latents


def test_cached_decode_fails_on_a_wrong_cache():
    "The float64 check catches cache bugs: a cache of another LR, or a split convolution without its bias, is far off."
    net = perturbed(HCFlowNet(HCFlowConfig.sr_tiny_4x()), 0.05, 0).eval().double()
    g = torch.Generator().manual_seed(1)
    lr = torch.rand(1, 3, 3, 5, generator=g, dtype=torch.float64)
    eps = [torch.randn(s, generator=g, dtype=torch.float64) * 0.9 for s in net.latent_shapes((3, 5), 1)]
    with torch.no_grad():
        plain, good = net.decode(lr, eps), net.lr_cache(lr)
        stale = net.lr_cache(lr + 0.05)
        no_bias = _replace(good, first_conv={l: v - net.cond_flow(l).conv_first.bias[:, None, None] for l, v in good.first_conv.items()})
        assert (net.decode_cached(good, eps) - plain).abs().max().item() <= 1e-10
        for bad in (_replace(stale, lr=lr), no_bias):
            assert (net.decode_cached(bad, eps) - plain).abs().max().item() > 1e-6


def test_sample_default_batch_is_the_engines(monkeypatch):
    "batch_size=None decodes `core.default_batch_size` samples at a time (not all n at once: slower on CPU at full size)."
    from srflow_nb.core import default_batch_size
    m, sizes = tiny("sr"), []
    real = type(m.flow).decode_cached
    monkeypatch.setattr(type(m.flow), "decode_cached", lambda self, cache, eps: sizes.append(eps[0].shape[0]) or real(self, cache, eps))
    lr = torch.rand(1, 3, 2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(): m.sample(lr, 5, 0.8, torch.Generator().manual_seed(1))
    k = default_batch_size(lr.device)
    assert k < 5 and sizes == [k] * (5 // k) + ([5 % k] if 5 % k else [])


def test_sample_uses_the_same_draws_as_plain_decode():
    m = tiny("sr")
    lr = torch.rand(1, 3, 2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        s = m.sample(lr, n=3, temperature=0.8, generator=torch.Generator().manual_seed(5))
        g = torch.Generator().manual_seed(5)
        plain = torch.stack([m.decode(lr, None, 0.8, g).clamp(0, 1) for _ in range(3)])
    assert s.shape == (3, 1, 3, 8, 12)
    assert (s - plain).abs().max().item() <= 1e-5
    assert (s[0] - s[1]).abs().max().item() > 1e-4     # n different samples


# ---------------------------------------------------------------- training
def _one_image_cache():
    img = F.interpolate(torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(3)), size=32, mode="bilinear", align_corners=False)[0]
    return PatchCache.from_hr([img], 4, 32, augment=False, downscale=lambda h, s: F.avg_pool2d(h[None], s)[0])


def _run(tmp_path, kind, steps, options=None, out="run", until=None, **kw):
    cfg = hcflow_paper_sr(iterations=steps, batch_size=2, patch_size=32, learning_rate=1e-3, log_every=1, ckpt_every_steps=2,
                          val_every=None, out_dir=str(tmp_path / out), options=options or {}, **kw)
    torch.manual_seed(0)
    task = HCFlowTask(HCFlow(getattr(HCFlowConfig, f"{kind}_tiny_4x")()), cfg)
    return Trainer(task, cfg, _one_image_cache(), progress=False).fit(until)


@pytest.mark.parametrize("kind,options", [("sr", {}), ("sr", dict(pixel_weight_hr=1.0)), ("rescaling", dict(pixel_weight_hr=1.0))],
                         ids=["hcflow", "hcflow+", "rescaling"])
def test_tasks_overfit_one_image(tmp_path, kind, options):
    tr = _run(tmp_path, kind, 12, options)
    losses = [r["loss"] for r in tr.history]
    assert tr.skipped == 0 and all(math.isfinite(v) for v in losses)
    assert all(torch.isfinite(p).all() for p in tr.model.parameters())
    assert sum(losses[-3:]) < 0.9 * sum(losses[:3]), losses
    want = {"loss_lr", "loss_z", "loss_hr"} if kind == "rescaling" else {"nll_bpd", "l1"} if options else {"nll_bpd"}
    assert want <= set(tr.history[-1])


def _single_step(options, record=None):
    cfg = hcflow_paper_sr(iterations=1, batch_size=2, patch_size=32, val_every=None, options=options)
    torch.manual_seed(0)
    m = HCFlow(HCFlowConfig.sr_tiny_4x())
    if record is not None:
        plain = m.decode
        m.decode = lambda lr, eps=None, *a, **k: record.append(eps) or plain(lr, eps, *a, **k)
    task = HCFlowTask(m, cfg)
    task.update = Updater(task.optimizers, cfg, torch.device("cpu"), 1)
    batch = task.prepare_batch(*_one_image_cache().sample(2, torch.Generator().manual_seed(0)), torch.Generator().manual_seed(1))
    task.initialize(batch)
    out = task.training_step(batch, 0)
    if out["loss"].requires_grad: task.update(out["loss"], "model")
    return m, out


def test_hcflow_plus_l1_update_changes_the_weights():
    m_nll, out_nll = _single_step(dict(nll_weight=2e-3))
    eps_seen = []
    m_plus, out_plus = _single_step(dict(nll_weight=2e-3, pixel_weight_hr=1.0), eps_seen)
    assert len(eps_seen) == 1 and all(not e.any() for e in eps_seen[0])     # the L1 reverse pass runs at temperature 0
    assert "l1" in out_plus and "l1" not in out_nll
    torch.testing.assert_close(out_plus["nll_bpd"], out_nll["nll_bpd"])   # same NLL step first
    assert max((a - b).abs().max().item() for a, b in zip(m_nll.parameters(), m_plus.parameters())) > 1e-6


def test_rescaling_losses_hand_checked():
    "Stubbed flow: LR estimate, latents and reverse pass known, so every loss term is written down by hand."
    torch.manual_seed(0)
    m = HCFlow(HCFlowConfig.rescaling_tiny_4x())
    cfg = hcflow_paper_rescaling(options=dict(pixel_weight_lr=2.0, weight_z=3.0, pixel_weight_hr=0.5, reverse_temperature=0.5))
    task = HCFlowTask(m, cfg)
    lr_est = torch.full((1, 3, 2, 2), 0.31); lr_est[0, 0, 0, 0] = 1.7          # clamped to 1 before the losses
    z = [torch.full((1, 2, 2, 2), 2.0), torch.full((1, 6, 4, 4), 1.0)]        # mean z^2 = (8*4 + 96*1) / 104
    m.encode = lambda hr: (lr_est, z, torch.zeros(1))
    seen = {}
    def fake_decode(lr, eps):
        seen["lr"], seen["eps"] = lr, eps
        return F.interpolate(lr, scale_factor=4, mode="nearest") - 0.5             # some pixels < 0: clamped
    m.flow.decode = fake_decode
    hr, lr = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 2, 2), 0.21)
    eps = [torch.ones(1, 2, 2, 2), torch.ones(1, 6, 4, 4)]
    parts = task.rescaling_losses(hr, lr, eps)
    q = 79 / 255                                                               # round(0.31 * 255) / 255
    assert torch.equal(seen["lr"][0, 1], torch.full((2, 2), q)) and seen["lr"][0, 0, 0, 0] == 1.0   # 8-bit LR reaches the reverse pass
    assert all(torch.equal(e, torch.full_like(e, 0.5)) for e in seen["eps"])  # draws x reverse temperature
    mse = (11 * (0.31 - 0.21) ** 2 + (1.0 - 0.21) ** 2) / 12
    assert math.isclose(parts["lr"].item(), 2.0 * mse, rel_tol=1e-5)
    assert math.isclose(parts["z"].item(), 3.0 * (8 * 4 + 96 * 1) / 104, rel_tol=1e-6)
    hr_l1 = 16 * (1.0 - 0.5) / (3 * 64)                                        # only the one saturated LR pixel's 4x4 block is > 0.5
    assert math.isclose(parts["hr"].item(), 0.5 * hr_l1, rel_tol=1e-5)


def test_actnorm_data_init_on_step0_input_and_kept_when_loaded():
    cfg = hcflow_paper_sr(iterations=1, batch_size=2, patch_size=32)
    torch.manual_seed(0)
    m = HCFlow(HCFlowConfig.sr_tiny_4x())
    task = HCFlowTask(m, cfg)
    hr, lr = _one_image_cache().sample(2, torch.Generator().manual_seed(0))
    batch = task.prepare_batch(hr, lr, torch.Generator().manual_seed(1))
    task.initialize(batch)
    assert all(bool(a.initialized) for a in m.actnorms())
    first = m.flow.layers[1].actnorm                                          # the first ActNorm sees squeeze(hr + noise / quant)
    x = m.flow.layers[0](hr + batch[2] / m.config.quant)[0]
    y = first(x)[0]
    torch.testing.assert_close(y.mean((0, 2, 3)), torch.zeros(12), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std((0, 2, 3), unbiased=False), torch.ones(12), atol=1e-3, rtol=0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    HCFlowTask(m, cfg).initialize(task.prepare_batch(hr.flip(-1), lr.flip(-1), torch.Generator().manual_seed(2)))
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # initialised ActNorms are never re-initialised


def test_grad_value_clip_keeps_nonfinite_for_the_guard():
    g = torch.tensor([-9.0, 0.5, 7.0, float("inf"), float("nan")])
    out = _clip_finite(5.0, g)
    assert out[:3].tolist() == [-5.0, 0.5, 5.0] and math.isinf(out[3]) and math.isnan(out[4])
    torch.manual_seed(0)
    m = HCFlow(HCFlowConfig.sr_tiny_4x())
    HCFlowTask(m, hcflow_paper_sr())
    (1e6 * sum(p.sum() for p in m.parameters() if p.requires_grad)).backward()
    assert max(p.grad.abs().max().item() for p in m.parameters() if p.grad is not None) == 5.0
    fails_with(lambda: hcflow_options(hcflow_paper_sr(options=dict(nll_wieght=1))), contains="unknown HCFlow option")


@pytest.mark.parametrize("kind", ["sr", "rescaling"])
def test_exact_resume_through_the_trainer(tmp_path, kind):
    opts = dict(pixel_weight_hr=1.0)
    a = _run(tmp_path, kind, 4, opts, out="a")
    _run(tmp_path, kind, 4, opts, out="b", until=2)
    b = _run(tmp_path, kind, 4, opts, out="b")
    assert b.resumed_from.name == "step_00000002.pt"
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    assert all(torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    back = load_hcflow(export_model(sorted((tmp_path / "b/checkpoints").glob("step_*.pt"))[-1], tmp_path / "m.safetensors"))
    assert all(torch.equal(p, q) for p, q in zip(back.state_dict().values(), b.model.state_dict().values()))


@pytest.mark.parametrize("kind", ["sr", "rescaling"])
def test_validate_keys_and_values(kind):
    torch.manual_seed(0)
    m = HCFlow(getattr(HCFlowConfig, f"{kind}_tiny_4x")()).eval()
    task = HCFlowTask(m, (hcflow_paper_rescaling if kind == "rescaling" else hcflow_paper_sr)())
    hr = F.interpolate(torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0)), size=16, mode="bilinear")[0]
    lr = F.interpolate(hr[None], scale_factor=0.25, mode="bicubic", antialias=True)[0]   # not the untrained rescaling flow's 4x4 mean
    with torch.no_grad(): metrics, rows = task.validate([(hr, lr), (hr.flip(-1), lr.flip(-1))])
    temps = ("t0", "t0.9") if kind == "sr" else ("t0", "t1")
    want = {"bicubic_psnr", *(f"{t}_psnr" for t in temps)} | ({"lr_psnr_vs_bicubic"} if kind == "rescaling" else {f"{t}_lr_psnr" for t in temps})
    want |= {f"{t}_diverged" for t in temps}                               # diverged samples per temperature: none here
    assert set(metrics) == want and all(math.isfinite(v) for v in metrics.values()) and all(metrics[f"{t}_diverged"] == 0 for t in temps)
    assert len(rows) == 2 and len(rows[0]) == 2 + len(temps) and rows[0][-1].shape == (3, 16, 16)


# ---------------------------------------------------------------- fast sampling (the LR-only work once, batched)
@pytest.mark.parametrize("kind", ["sr", "rescaling"])
def test_cached_batched_sample_equals_plain_decode(kind):
    "Same draws -> the same samples as n plain `decode` calls, for every batch size (incl. a partial last chunk), two different LRs."
    m = tiny(kind).double()
    lr = torch.rand(2, 3, 3, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        plain = torch.stack([m.decode(lr, None, 0.8, g).clamp(0, 1) for _ in range(3)])
        cache = m.flow.lr_cache(lr)
        for bs in (None, 1, 2):
            fast = m.sample(lr, 3, 0.8, torch.Generator().manual_seed(7), cache=cache, batch_size=bs)
            assert fast.shape == (3, 2, 3, 12, 20)
            assert (fast - plain).abs().max().item() <= 1e-10, bs          # float64: exact up to rounding
        m32, g32 = tiny(kind), torch.Generator().manual_seed(7)             # float32: equal up to float rounding
        plain32 = torch.stack([m32.decode(lr.float(), None, 0.8, g32).clamp(0, 1) for _ in range(3)])
        assert (m32.sample(lr.float(), 3, 0.8, torch.Generator().manual_seed(7), batch_size=2) - plain32).abs().max().item() <= 1e-5
    fails_with(lambda: m.sample(lr[:1], 2, cache=cache), contains="the cache is of an lr")
    fails_with(lambda: m.sample(lr, 0), contains="n must be an int >= 1")


def test_sample_reports_nonfinite():
    "Diverged samples (an absurd temperature) are reported, as for SRFlow: raise, warn (kept), clamp (kept saturated)."
    from srflow_nb.core import NonFiniteSampleError
    m, lr = tiny("sr"), torch.rand(1, 3, 3, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with pytest.raises(NonFiniteSampleError, match="diverged"): m.sample(lr, 2, 1e30, on_nonfinite="raise")
        with pytest.warns(RuntimeWarning, match="diverged"): assert not torch.isfinite(m.sample(lr, 2, 1e30)).all()
        with pytest.warns(RuntimeWarning, match="diverged"): assert torch.isfinite(m.sample(lr, 2, 1e30, on_nonfinite="clamp")).all()
        assert torch.isfinite(m.sample(lr, 2, 0.8, on_nonfinite="raise")).all()


def test_hcflowsr_reuses_the_lr_cache(monkeypatch):
    "HCFlowSR: one LR feature pass for a temperature sweep of one LR; a new LR or new weights recompute it; same samples as HCFlow.sample."
    from srflow_nb.superresolvers import HCFlowSR, load_superresolver
    from srflow_nb.core import sample_generators
    m = tiny("sr")
    calls = []
    real = type(m.flow).lr_cache
    monkeypatch.setattr(type(m.flow), "lr_cache", lambda self, lr: calls.append(1) or real(self, lr))
    s, lr = HCFlowSR(m, batch_size=2), torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    out = [s.sample(lr, n=3, temperature=t, seed=5) for t in (0.0, 0.5, 0.9)]
    assert len(calls) == 1
    s.sample(lr + 0.01, temperature=0.5)
    assert len(calls) == 2
    with torch.no_grad(): m.flow.cond_flow(1).f.bias.add_(0.1)
    s.sample(lr + 0.01, temperature=0.5)
    assert len(calls) == 3
    with torch.no_grad(): m.flow.cond_flow(1).f.bias.sub_(0.1); ref = m.sample(lr, 3, 0.9, sample_generators(5, 3))   # the seed rule

    assert (out[-1] - ref).abs().max() <= 1e-6 and not torch.equal(out[0], out[-1])


def test_hcflow_superresolver_default_is_the_bundle():
    "`hcflow` alone is the bundled demo-4x-hcflow, or one line saying it is not installed."
    from srflow_nb.checkpoints import PRETRAINED, pretrained_dir
    from srflow_nb.superresolvers import load_superresolver
    if (pretrained_dir() / PRETRAINED["demo-4x-hcflow"]).exists(): assert load_superresolver("hcflow", "cpu").scale == 4
    else: fails_with(lambda: load_superresolver("hcflow", "cpu"), contains="demo-4x-hcflow model is not installed")


# ---------------------------------------------------------------- srflow rescale
def _run_of(model) -> dict:
    "A trainer checkpoint of an HCFlow run holding `model`."
    from srflow_nb.testing import trainer_checkpoint
    return trainer_checkpoint(HCFlowTask(model, (hcflow_paper_rescaling if model.config.kind == "rescaling" else hcflow_paper_sr)()))


def _save(model, path):
    "`model` as the file `export_model` makes of a run of it."
    return str(export_model(_run_of(model), path))


@pytest.fixture
def rescale_setup(tmp_path):
    from srflow_nb.images import save_image
    g = torch.Generator().manual_seed(0)
    (tmp_path / "hr").mkdir()
    for i in range(2):
        save_image(tmp_path / f"hr/im{i}.png", F.interpolate(torch.rand(1, 3, 4, 6, generator=g), size=(16, 24), mode="bilinear"))
    return tmp_path, _save(tiny("rescaling"), tmp_path / "resc.safetensors"), _save(tiny("sr"), tmp_path / "sr.safetensors")


def test_rescale_cli_modes(rescale_setup, capsys):
    "`srflow rescale`: down writes the model's 8-bit LR, up its HR, roundtrip both + PSNRs that match a recomputation."
    import pandas as pd
    from srflow_nb.cli import main
    from srflow_nb.hcflow_train import load_rescaling_model, rescale_roundtrip
    from srflow_nb.images import load_image, to_tensor
    from srflow_nb.metrics import psnr
    from srflow_nb.resize import downscale
    tmp, resc, _ = rescale_setup
    assert main(["rescale", "roundtrip", str(tmp / "hr"), "-o", str(tmp / "rt"), "--checkpoint", resc, "--quiet"]) == 0
    assert sorted(p.name for p in (tmp / "rt").iterdir()) == ["im0_hr.png", "im0_lr.png", "im1_hr.png", "im1_lr.png", "roundtrip.csv"]
    m, x = load_rescaling_model(resc, "cpu"), to_tensor(load_image(tmp / "hr/im1.png"))
    with torch.no_grad(): lr8, back = rescale_roundtrip(m, x)
    assert torch.equal(to_tensor(load_image(tmp / "rt/im1_lr.png")), lr8)
    assert torch.equal(to_tensor(load_image(tmp / "rt/im1_hr.png")), to_tensor(load_image(tmp / "rt/im1_hr.png")))
    row = pd.read_csv(tmp / "rt/roundtrip.csv").set_index("image").loc["im1.png"]
    assert row.hr_psnr == pytest.approx(float(psnr(back[0], x[0])), abs=1e-9)
    assert row.lr_psnr_vs_bicubic == pytest.approx(float(psnr(lr8[0], downscale(x[0], 4))), abs=1e-9)
    assert main(["rescale", "down", str(tmp / "hr/im1.png"), "-o", str(tmp / "d"), "--checkpoint", resc, "--quiet"]) == 0
    assert main(["rescale", "up", str(tmp / "d/im1_lr.png"), "-o", str(tmp / "u"), "--checkpoint", resc, "--quiet"]) == 0
    assert torch.equal(to_tensor(load_image(tmp / "d/im1_lr.png")), lr8)
    assert torch.equal(to_tensor(load_image(tmp / "u/im1_lr_hr.png")), to_tensor(load_image(tmp / "rt/im1_hr.png")))
    # temperature > 0 is seeded: same seed, same image; another seed, another image
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        main(["rescale", "up", str(tmp / "d/im1_lr.png"), "-o", str(tmp / name), "--checkpoint", resc, "--temperature", "0.9", "--seed", str(seed), "--quiet"])
    a, b, c = (to_tensor(load_image(tmp / f"{n}/im1_lr_hr.png")) for n in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("case,expect", [
    ("sr_model", "an HCFlow sr model; rescale needs a rescaling model"),
    ("missing", "nope.png: no such file"),
    ("indivisible", "odd.png (18x24)"),
    ("overwrite", "im0_lr.png exists already"),
    ("same_name", "same output im0_lr.png"),
    ("temperature", "--temperature must be a number >= 0"),
    ("not_hcflow", "not an HCFlow model"),
    ("nonfinite", "output has NaN/Inf values"),
])
def test_rescale_cli_bad_input_is_one_line(rescale_setup, capsys, case, expect):
    import shutil
    from srflow_nb.cli import main
    from srflow_nb.checkpoints import save_model
    from srflow_nb.images import save_image
    from srflow_nb.model import SRFlow, SRFlowConfig
    tmp, resc, sr = rescale_setup
    args = {"sr_model": ["down", str(tmp / "hr"), "--checkpoint", sr],
            "missing": ["down", str(tmp / "nope.png"), "--checkpoint", resc],
            "indivisible": ["roundtrip", str(tmp / "odd.png"), "--checkpoint", resc],
            "overwrite": ["down", str(tmp / "hr"), "--checkpoint", resc],
            "same_name": ["down", str(tmp / "hr"), str(tmp / "hr2"), "--checkpoint", resc],
            "temperature": ["up", str(tmp / "hr"), "--checkpoint", resc, "--temperature", "-1"],
            "not_hcflow": ["down", str(tmp / "hr"), "--checkpoint", str(tmp / "srflow.safetensors")],
            "nonfinite": ["down", str(tmp / "hr"), "--checkpoint", str(tmp / "nan.pt")]}[case]
    broken = tiny("rescaling")
    with torch.no_grad(): broken.flow.layers[1].affine.f.conv5.bias.fill_(float("nan"))   # a diverged model: no silent NaN/black image
    torch.save(_run_of(broken), tmp / "nan.pt")                    # export_model refuses it; a run's checkpoint loads
    save_image(tmp / "odd.png", torch.rand(3, 18, 24, generator=torch.Generator().manual_seed(0)))
    shutil.copytree(tmp / "hr", tmp / "hr2")
    if case == "overwrite": (tmp / "out").mkdir(); (tmp / "out/im0_lr.png").write_bytes(b"old")
    torch.manual_seed(0); save_model(SRFlow(SRFlowConfig.tiny_4x()), tmp / "srflow.safetensors")
    capsys.readouterr()
    assert main(["rescale", *args, "-o", str(tmp / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expect in err, err
    if case == "overwrite": assert (tmp / "out/im0_lr.png").read_bytes() == b"old" and len(list((tmp / "out").iterdir())) == 1
    elif case != "nonfinite": assert not (tmp / "out").exists()   # refused before writing anything
    else: assert not list((tmp / "out").iterdir())


# ---------------------------------------------------------------- bundling: export + model card
def _export_demo():
    import importlib.util
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("export_demo", root / "tools" / "export_demo.py")
    ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
    return ex


def _fake_run(path, kind):
    "A run folder as `srflow train --family hcflow` leaves it (tiny model): checkpoints, best.pt, config/model_config/metrics/val files."
    import pandas as pd
    from srflow_nb.checkpoints import save_checkpoint
    from srflow_nb.hcflow_train import hcflow_demo_rescaling, hcflow_demo_sr
    m = tiny(kind)
    cfg = (hcflow_demo_rescaling if kind == "rescaling" else hcflow_demo_sr)(out_dir=str(path)).to_dict()
    mc = {"model": "hcflow", "L": m.config.L, **json.loads(json.dumps(m.config.to_dict()))}
    path.mkdir()
    for step, file in ((1000, "best.pt"), (2000, "checkpoints/step_00002000.pt")):
        save_checkpoint(path / file, dict(modules={"model": m.state_dict()}, optimizers={}, config=cfg, model_config=mc, step=step, cpu_time=0.9 * step))
    (path / "config.json").write_text(json.dumps(cfg)); (path / "model_config.json").write_text(json.dumps(mc))
    pd.DataFrame(dict(step=[1000, 2000], loss=[1.0, 0.5], skipped=[0, 3], cpu_time_s=[900.0, 1800.0])).to_csv(path / "metrics.csv", index=False)
    val = (dict(step=[1000, 2000], lr_psnr_vs_bicubic=[30.5, 31.25], bicubic_psnr=[25.0, 25.0], t0_psnr=[27.125, 26.5], t1_psnr=[24.0, 24.5])
           if kind == "rescaling" else
           dict(step=[1000, 2000], bicubic_psnr=[25.0, 25.0], t0_psnr=[23.375, 22.5], t0_lr_psnr=[40.0, 41.0], **{"t0.9_psnr": [21.0, 21.5], "t0.9_lr_psnr": [35.0, 36.0]}))
    pd.DataFrame(val).to_csv(path / "val.csv", index=False)
    return m


@pytest.mark.parametrize("kind", ["sr", "rescaling"])
def test_bundle_and_card(tmp_path, kind):
    "`export_demo.bundle_hcflow` (what `tools/train_hcflow.sh export` runs): model + run files under the bundled name; the card reads them."
    ex = _export_demo()
    name = "demo-4x-hcflow-rescaling" if kind == "rescaling" else "demo-4x-hcflow"
    m = _fake_run(tmp_path / "run", kind)
    out = tmp_path / "bundle"
    assert ex.hcflow_card(out, 17) == ""                                       # nothing bundled: no section
    dest = ex.bundle_hcflow(tmp_path / "run", out)                              # the name from the model kind; best.pt by default
    assert dest.name == ex.PRETRAINED[name]
    assert all(torch.equal(a, b) for a, b in zip(load_hcflow(dest).state_dict().values(), m.state_dict().values()))
    for f in ex.HCFLOW_FILES: assert (out / f"{name}.{f}").read_bytes() == (tmp_path / "run" / f).read_bytes()
    card = ex.hcflow_card(out, 17)
    assert card.startswith(f"## `{name}`") and card.count("## `") == 1
    assert f"| `{name}` | `{dest.name}` | {sum(p.numel() for p in m.parameters()):,} | 1000 | 0.25 | 2000 | 0.50 | 3 |" in card   # best.pt's step/CPU-h, run's
    assert "is **not** the best on the val split: t0_psnr" not in card and "bundled step 1000 (not the last validated step) is the best" in card
    assert "| iterations | " + str(500_000 if kind == "rescaling" else 300_000) + " | " in card and "| training data |" in card
    if kind == "rescaling": assert "HR PSNR 27.12 dB at step 1000 -> 26.50 dB at step 2000 (best 27.12 dB at step 1000" in card and "31.25 dB" in card
    else: assert "23.38 dB at step 1000 -> 22.50 dB at step 2000 (best 23.38 dB at step 1000)" in card and "temperature 0.9 21.50 dB" in card
    # another checkpoint by request; a wrong name for the kind, a run without val.csv: refused
    ex.bundle_hcflow(tmp_path / "run", out, name, tmp_path / "run/checkpoints/step_00002000.pt")
    assert "| 2000 | 0.50 | 2000 | 0.50 |" in ex.hcflow_card(out, 17) and "(the last validated step) is **not** the best" in ex.hcflow_card(out, 17)
    other = "demo-4x-hcflow" if kind == "rescaling" else "demo-4x-hcflow-rescaling"
    with pytest.raises(SystemExit, match="is not the bundled"): ex.bundle_hcflow(tmp_path / "run", out, other)
    (tmp_path / "run/val.csv").unlink()
    with pytest.raises(SystemExit, match="lacks val.csv"): ex.bundle_hcflow(tmp_path / "run", out)
    assert "| training data | DF2K (DIV2K + Flickr2K) | the demo train split (17 images) |" in ex.hcflow_card(out, 17)
    (out / f"{name}.data.json").write_text(json.dumps(dict(stage="hcflow", train="data/cache/trainset/train", train_images=77,
                                                           manifest="data/trainset/manifest.json")))   # what `campaign.py bundle` writes
    card = ex.hcflow_card(out, 17)
    assert "| training data | DF2K (DIV2K + Flickr2K) | the built training set (77 images) |" in card
    assert "stage `hcflow`" in card and "77 images in data/cache/trainset/train" in card


def test_model_card_hcflow_sections_from_files():
    "MODEL_CARD.md's HCFlow sections are what `tools/export_demo.py` renders from the bundled files (none before the campaigns are bundled)."
    from pathlib import Path
    from srflow_nb.datasets import demo_images
    ex, root = _export_demo(), Path(__file__).resolve().parents[1]
    pre = root / "srflow_nb/pretrained"
    card = ex.hcflow_card(pre, len(demo_images("train")))
    text = (pre / "MODEL_CARD.md").read_text()
    if not card: assert "## `demo-4x-hcflow" not in text; return
    assert card.replace(str(root) + "/", "") in text, "run `python tools/export_demo.py --card_only`"
