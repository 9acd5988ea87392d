"SR3 (srflow_nb.sr3): closed-form forward noising, schedule re-spacing, the oracle sampler, overfitting, seeded bugs."
import json, math
from pathlib import Path

import pytest
import torch

from srflow_nb import sr3, sr3_train
from srflow_nb.core import InputError
from srflow_nb.sr3 import (SR3, SR3Config, ancestral_sample, beta_schedule, marginal_drift, noise_levels, overfit_tiny,
                           q_sample, respace, sample_gammas)

G_INF = noise_levels(beta_schedule("linear", 100, 1e-4, 0.1))
G_TRAIN = noise_levels(beta_schedule("linear", 2000, 1e-6, 1e-2))


def gen(seed): return torch.Generator().manual_seed(seed)


def oracle(y0):
    return lambda y, sg: (y - sg.reshape(-1, 1, 1, 1) * y0) / (1 - sg.reshape(-1, 1, 1, 1) ** 2).sqrt()


def test_schedule_values():
    b = beta_schedule("linear", 2000, 1e-6, 1e-2)
    assert b[0].item() == pytest.approx(1e-6) and b[-1].item() == pytest.approx(1e-2) and b.dtype == torch.float64
    # gamma_t = prod (1 - beta_s), checked against a plain loop
    acc, ref = 1.0, []
    for v in b.tolist(): acc *= 1 - v; ref.append(acc)
    torch.testing.assert_close(noise_levels(b), torch.tensor(ref, dtype=torch.float64), rtol=1e-12, atol=0)


def closed_form_ok(q, gamma, n=40_000):
    "Empirical mean and variance of q(y0, gamma, noise) over n draws equal sqrt(gamma) y0 and 1 - gamma (4 standard errors)."
    y0 = torch.linspace(-1, 1, 24).reshape(1, 3, 2, 4)
    draws = q(y0.expand(n, -1, -1, -1), torch.full((n,), gamma), torch.randn(n, 3, 2, 4, generator=gen(0)))
    tol = 4 / math.sqrt(n)
    return (torch.allclose(draws.mean(0), math.sqrt(gamma) * y0[0], atol=tol, rtol=0)
            and torch.allclose(draws.var(0), torch.full_like(y0[0], 1 - gamma), atol=8 * tol, rtol=0))


@pytest.mark.parametrize("gamma", [0.05, 0.5, 0.97])
def test_forward_noising_closed_form(gamma):
    assert closed_form_ok(q_sample, gamma)


def test_training_levels_piecewise_uniform():
    s = sample_gammas(G_TRAIN, 400_000, gen(1))
    prev = torch.cat([torch.ones(1, dtype=torch.float64), G_TRAIN[:-1]])
    assert s.min() >= G_TRAIN[-1] and s.max() <= 1
    assert s.mean().item() == pytest.approx(((prev + G_TRAIN) / 2).mean().item(), abs=2e-3)
    # CDF at a grid point: P(gamma <= gamma_t) = (T - t) / T exactly for the piecewise-uniform draw
    t = 500
    assert (s <= G_TRAIN[t - 1]).double().mean().item() == pytest.approx((2000 - (t - 1)) / 2000, abs=3e-3)
    # continuous: uniform *inside* its interval (a draw on the grid points only would give u in {0, 1})
    asc = torch.cat([G_TRAIN.flip(0), torch.ones(1, dtype=torch.float64)])
    k = torch.searchsorted(asc, s).clamp(1, len(asc) - 1)
    u = (s - asc[k - 1]) / (asc[k] - asc[k - 1])
    assert u.mean().item() == pytest.approx(0.5, abs=5e-3) and u.var().item() == pytest.approx(1 / 12, abs=3e-3)
    # within one interval [0.2, 1]: uniform in gamma has mean 0.6; uniform in sqrt(gamma) has mean (a^2 + ab + b^2) / 3
    one = torch.tensor([0.2], dtype=torch.float64)
    assert sample_gammas(one, 200_000, gen(2)).mean().item() == pytest.approx(0.6, abs=3e-3)
    a = math.sqrt(0.2)
    assert sample_gammas(one, 200_000, gen(2), mode="sqrt_gamma").mean().item() == pytest.approx((a * a + a + 1) / 3, abs=3e-3)
    with pytest.raises(InputError, match="level_sampling"): sample_gammas(one, 2, gen(2), mode="gamma2")


def test_respacing_keeps_marginal_levels():
    for steps in (1, 2, 10, 37, 100):
        r = respace(G_INF, steps)
        assert len(r) == steps and r[-1] == G_INF[-1]
        idx = [int((G_INF == v).nonzero()) for v in r]
        assert idx == sorted(set(idx))
        torch.testing.assert_close(noise_levels(sr3.betas_of(r)), r, rtol=1e-12, atol=0)
    torch.testing.assert_close(respace(G_INF, 100), G_INF)
    with pytest.raises(InputError, match="steps must be an int"): respace(G_INF, 0)


@pytest.mark.parametrize("steps", [100, 10, 2])
def test_oracle_sampler_returns_the_image(steps):
    y0 = torch.rand(2, 3, 8, 8, generator=gen(0)) * 2 - 1
    out = ancestral_sample(oracle(y0), torch.randn(y0.shape, generator=gen(1)), respace(G_INF, steps), gen(2))
    torch.testing.assert_close(out, y0, atol=1e-5, rtol=0)


def test_oracle_chain_stays_on_forward_marginals():
    for steps in (100, 7):
        assert max(marginal_drift(respace(G_INF, steps))) < 0.06


def _with_bug(monkeypatch, bug):
    "Re-define ancestral_sample with one line broken (a seeded bug), as a programmer might."
    import inspect, textwrap
    src = textwrap.dedent(inspect.getsource(sr3.ancestral_sample))
    old, new = bug
    assert old in src, old
    ns = dict(vars(sr3))
    exec(src.replace(old, new), ns)
    monkeypatch.setattr(sr3, "ancestral_sample", ns["ancestral_sample"])
    return ns


@pytest.mark.parametrize("bug", [
    ("var = beta * (1 - g_prev) / (1 - g)", "var = beta"),                                   # DDPM's sigma^2 = beta instead of the posterior variance
    ("(math.sqrt(g_prev) * beta / (1 - g))", "(g_prev * beta / (1 - g))"),                 # a dropped sqrt in the posterior mean
    ("y0 = (y - math.sqrt(1 - g) * eps) / math.sqrt(g)", "y0 = (y - (1 - g) * eps) / math.sqrt(g)"),  # dropped sqrt in x0
])
def test_seeded_sampler_bugs_fail(monkeypatch, bug):
    _with_bug(monkeypatch, bug)
    y0 = torch.rand(2, 3, 8, 8, generator=gen(0)) * 2 - 1
    exact = torch.allclose(sr3.ancestral_sample(oracle(y0), torch.randn(y0.shape, generator=gen(1)), respace(G_INF, 10), gen(2)), y0, atol=1e-5)
    drift_ok = max(sr3.marginal_drift(respace(G_INF, 10), n=2000)) < 0.06
    assert not (exact and drift_ok)


@pytest.mark.parametrize("bad", [
    lambda y0, g, e: g.reshape(-1, 1, 1, 1) * y0 + (1 - g.reshape(-1, 1, 1, 1)).sqrt() * e,      # dropped sqrt on gamma
    lambda y0, g, e: g.reshape(-1, 1, 1, 1).sqrt() * y0 + (1 - g.reshape(-1, 1, 1, 1)) * e,      # dropped sqrt on 1 - gamma
])
def test_seeded_forward_bug_fails(bad):
    assert not closed_form_ok(bad, 0.5)


def test_sample_api_shapes_seeds_and_range():
    torch.manual_seed(0)
    m = SR3(SR3Config.tiny()).eval()
    lr = torch.rand(2, 3, 5, 7, generator=gen(0))          # 20x28: odd LR sizes are padded inside and cropped back
    a = m.sample(lr, n=3, steps=3, generator=gen(5))
    assert a.shape == (3, 2, 3, 20, 28) and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, m.sample(lr, n=3, steps=3, generator=gen(5)), rtol=0, atol=0)
    assert (a[0] - a[1]).abs().mean() > 1e-3 and (a[0] - m.sample(lr, n=1, steps=3, generator=gen(6))[0]).abs().mean() > 1e-3
    # batched = one by one: image b's first sample uses the same network but its own noise -> only check shapes per image
    one = m.sample(lr[:1], n=2, steps=3, generator=gen(5))
    assert one.shape == (2, 1, 3, 20, 28)
    with pytest.raises(InputError, match="n must be a positive int"): m.sample(lr, n=0)
    with pytest.raises(InputError, match="lr must be"): m.sample(lr[0])


def test_loss_uses_noise_level_and_condition():
    torch.manual_seed(0)
    m = SR3(SR3Config.tiny(loss_type="l2")).eval()
    hr, lr = torch.rand(4, 3, 16, 16, generator=gen(0)), torch.rand(4, 3, 4, 4, generator=gen(1))
    gam, noise = m.draw(4, (3, 16, 16), gen(2))
    base = m.denoising_loss(hr, lr, gam, noise).item()
    assert m.denoising_loss(hr, lr.flip(-1), gam, noise).item() != base
    assert m.denoising_loss(hr, lr, gam.flip(0), noise).item() != base
    with pytest.raises(InputError, match="is not 4x LR"): m.loss(hr[..., :12], lr)


def test_tiny_model_overfits_one_image():
    before, after = overfit_tiny()
    assert before / after > 5, (before, after)


def test_config_roundtrip_and_presets():
    c = SR3Config.paper_sr_64_256()
    assert (c.channels, c.channel_mults, c.res_blocks, c.attn_levels) == (128, (1, 2, 4, 4, 8, 8), 3, (4,))
    assert c.train_schedule == ("linear", 2000, 1e-6, 1e-2) and c.sample_schedule == ("linear", 100, 1e-4, 0.1)
    assert SR3Config.from_dict(SR3Config.small().to_dict()) == SR3Config.small()
    with pytest.raises(InputError, match="unknown field"): SR3Config.from_dict({"heat": 1})


def test_task_registered_and_runs(tmp_path):
    import torch.nn.functional as F
    from srflow_nb.train import PatchCache, Trainer, task_class
    assert task_class("sr3") is sr3_train.SR3Task
    down = lambda h, s: F.interpolate(h[None], scale_factor=1 / s, mode="bicubic", antialias=True)[0]
    data = PatchCache.from_hr([torch.rand(3, 32, 32, generator=gen(i)) for i in range(2)], 4, 16, downscale=down)
    cfg = sr3_train.sr3_demo(iterations=3, batch_size=2, patch_size=16, amp=None, log_every=1, ckpt_every_steps=3, val_every=3,
                       best_metric=None, out_dir=str(tmp_path / "run"), options=dict(warmup=0, val_steps=2))
    tr = Trainer(sr3_train.SR3Task.create(cfg, "tiny"), cfg, data, val_data=[(torch.rand(3, 16, 16), torch.rand(3, 4, 4))], progress=False).fit()
    assert all(math.isfinite(r["loss"]) for r in tr.history) and math.isfinite(tr.val_history[-1]["sr3_psnr"])


def test_checkpoint_to_superresolver(tmp_path):
    import torch.nn.functional as F
    from srflow_nb.superresolvers import SuperResolver
    from srflow_nb.train import PatchCache, Trainer
    down = lambda h, s: F.interpolate(h[None], scale_factor=1 / s, mode="bicubic", antialias=True)[0]
    data = PatchCache.from_hr([torch.rand(3, 32, 32, generator=gen(0))], 4, 16, downscale=down)
    cfg = sr3_train.sr3_demo(iterations=2, batch_size=2, patch_size=16, amp=None, ckpt_every_steps=2, val_every=None, best_metric=None,
                       out_dir=str(tmp_path / "run"))
    tr = Trainer(sr3_train.SR3Task.create(cfg, "tiny"), cfg, data, progress=False).fit()
    sr = sr3_train.sr3_from(str(tmp_path / "run/checkpoints/step_00000002.pt"), device="cpu")
    assert isinstance(sr, SuperResolver) and sr.scale == 4 and sr.stochastic
    for (k, a), b in zip(sr.model.state_dict().items(), tr.task.model.state_dict().values()): assert torch.equal(a, b.cpu()), k
    lr = torch.rand(1, 3, 4, 4, generator=gen(1))
    from srflow_nb.core import sample_generators
    s3 = sr.sample(lr, n=2, steps=2, seed=3)                          # the seed rule: sample i from sample_seed(3, i)
    assert torch.equal(s3, sr.sample(lr, n=2, steps=2, seed=sample_generators(3, 2)))
    torch.testing.assert_close(s3[1], sr.sample(lr, n=1, steps=2, seed=sample_generators(3, 1, first_index=1))[0], rtol=0, atol=1e-5)   # batch size aside
    with pytest.raises(InputError, match="no temperature"): sr.sample(lr, temperature=0.9)
    with pytest.raises(InputError, match="not found"): sr3_train.sr3_from(str(tmp_path / "missing.pt"))


def test_result_files_written_by_the_launcher():
    "The committed measurements the notebook's prose is computed from (tools/train_sr3.sh speed | sample_speed)."
    root = Path(__file__).resolve().parents[1] / "data/results/sr3"
    res = json.loads((root / "sample_speed.json").read_text())
    psnrs = [v["sample_psnr_db"] for m in res["bf16_accuracy"].values() for v in m.values()]
    assert len(psnrs) == 4 and min(psnrs) > 45          # bf16 samples within 8-bit-level error of float32
    assert res["small_unet_eval_s_hr256"]["bf16"] > 0 and res["git_sha"]
    sp = json.loads((root / "train_speed.json").read_text())
    assert sp["git_sha"] and sp["threads"] == 1 and sp["preset"] == sr3_train.sr3_demo().to_dict() and sp["preset_model"] == SR3Config.demo().to_dict()
    rows = {r["name"]: r for r in sp["rows"]}
    for r in rows.values():
        assert r["timed_steps"] >= 5 and r["cpu_s_per_step_median"] > 0 and r["load_average_after"] >= 0
        assert r["cpu_hours_for_preset_iterations"] == pytest.approx(r["cpu_s_per_step_median"] * sp["preset"]["iterations"] / 3600)
    demo = rows["demo (preset)"]
    assert demo["model"] == SR3Config.demo().to_dict() and demo["patch_size"] == sr3_train.sr3_demo().patch_size
    assert demo["cpu_s_per_step_median"] < rows["small, HR 64 (previous demo)"]["cpu_s_per_step_median"]


def _tiny_run(tmp_path, iterations=2):
    import torch.nn.functional as F
    from srflow_nb.train import PatchCache, Trainer
    down = lambda h, s: F.interpolate(h[None], scale_factor=1 / s, mode="bicubic", antialias=True)[0]
    data = PatchCache.from_hr([torch.rand(3, 32, 32, generator=gen(0))], 4, 16, downscale=down)
    cfg = sr3_train.sr3_demo(iterations=iterations, batch_size=2, patch_size=16, amp=None, ckpt_every_steps=iterations, val_every=None,
                       best_metric=None, out_dir=str(tmp_path / "run"))
    return Trainer(sr3_train.SR3Task.create(cfg, "tiny"), cfg, data, progress=False).fit()


def test_export_and_load_both_file_kinds(tmp_path):
    "export_model -> own-format safetensors (kind 'sr3'); load_sr3, load_model_any and sr3_from read it and the trainer checkpoint."
    from safetensors import safe_open
    from srflow_nb.checkpoints import FORMAT, export_model, load_model_any
    tr = _tiny_run(tmp_path)
    ck = tmp_path / "run/checkpoints/step_00000002.pt"
    f = export_model(ck, tmp_path / "demo_4x_sr3.safetensors")
    with safe_open(str(f), "pt") as h: meta = h.metadata()
    assert (meta["format"], meta["kind"], meta["step"]) == (FORMAT, "sr3", "2")
    assert SR3Config.from_dict(json.loads(meta["config"])) == SR3Config.tiny()
    ref = tr.task.model.state_dict()
    for m in (sr3_train.load_sr3(f), sr3_train.load_sr3(ck), load_model_any(f), load_model_any(ck), sr3_train.sr3_from(str(f), device="cpu").model):
        assert isinstance(m, SR3) and not m.training and m.config == SR3Config.tiny()
        assert all(torch.equal(m.state_dict()[k], v) for k, v in ref.items())
    bad = torch.load(ck, weights_only=True); bad["config"]["stage"] = "hcflow"; torch.save(bad, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not an SR3 trainer checkpoint"): sr3_train.load_sr3(tmp_path / "other.pt")
    with pytest.raises(InputError, match="other.pt: model_config model None is not 'hcflow'"): export_model(tmp_path / "other.pt", tmp_path / "x.safetensors")
    from srflow_nb.checkpoints import pretrained_dir
    with pytest.raises(InputError, match="not an SR3 model file"): sr3_train.load_sr3(pretrained_dir() / "demo_4x_rrdb.safetensors")


def test_sr3_from_defaults_to_the_bundled_model(tmp_path, monkeypatch):
    import srflow_nb.checkpoints as C
    monkeypatch.setattr(C, "pretrained_dir", lambda: tmp_path)
    with pytest.raises(InputError, match="demo-4x-sr3 is not bundled yet"): sr3_train.sr3_from()
    _tiny_run(tmp_path)
    C.export_model(tmp_path / "run/checkpoints/step_00000002.pt", tmp_path / C.PRETRAINED["demo-4x-sr3"])
    for s in (sr3_train.sr3_from(device="cpu"), sr3_train.sr3_from("demo-4x-sr3", device="cpu")):
        assert s.model.config == SR3Config.tiny() and s.scale == 4
    assert isinstance(C.load_pretrained("demo-4x-sr3"), SR3)


def _bicubic_oracle(m):
    "Make `m` a perfect denoiser of the clean image = its conditioning (the bicubic LR): every sample must be that image."
    def eps(y, cond, sg, bf16=False):
        g = sg.reshape(-1, 1, 1, 1) ** 2
        return (y - g.sqrt() * cond) / (1 - g).sqrt()
    m.predict_eps = eps
    return m


def test_chunked_sampling_under_a_memory_budget():
    import torch.nn.functional as F
    torch.manual_seed(0)
    m = SR3(SR3Config.tiny()).eval()
    lr = torch.rand(2, 3, 5, 6, generator=gen(0))
    per_row = sr3._row_bytes(m, (20, 24))
    fixed = 4 * (6 * 3 * 20 * 24 * 2 + sum(p.numel() for p in m.parameters())) + 2 ** 27
    assert [m.sample_rows((5, 6), 6, fixed + k * per_row) for k in (1, 2, 4, 100)] == [1, 2, 4, 6]
    whole = m.sample(lr, n=3, steps=3, generator=gen(1))
    for rows in (1, 4):                      # chunks of 1 and of 4 + 2 rows: the same samples up to float32 rounding
        torch.testing.assert_close(m.sample(lr, n=3, steps=3, generator=gen(1), max_memory=fixed + rows * per_row), whole, atol=1e-4, rtol=0)
    # every row keeps its own image's conditioning through the chunking: with the oracle of "clean = bicubic", row i*B+b is image b's bicubic
    _bicubic_oracle(m)
    ref = ((F.interpolate(lr * 2 - 1, scale_factor=4, mode="bicubic", align_corners=False) + 1) / 2).clamp(0, 1)
    for rows in (1, 4, 6):
        out = m.sample(lr, n=3, steps=3, generator=gen(1), max_memory=fixed + rows * per_row)
        torch.testing.assert_close(out, ref.expand(3, -1, -1, -1, -1), atol=1e-5, rtol=0)


def test_sampling_that_cannot_fit_is_refused_before_any_work():
    from srflow_nb.core import MemoryBudgetError
    m = SR3(SR3Config.demo()).eval()
    def never(*a, **k): raise AssertionError("the U-Net ran before the memory check")
    m.predict_eps = never
    with pytest.raises(MemoryBudgetError, match=r"need about .* GiB even one at a time, over the memory budget") as e:
        m.sample(torch.rand(1, 3, 512, 512), steps=2)             # HR 2048: the attention scores alone exceed any CPU budget here
    assert "\n" not in str(e.value)
    with pytest.raises(MemoryBudgetError): m.sample(torch.rand(1, 3, 16, 16), steps=2, max_memory=2 ** 20)
    with pytest.raises(InputError, match="max_memory must be"): m.sample(torch.rand(1, 3, 16, 16), steps=2, max_memory=-1)


def test_loss_feeds_the_network_the_closed_form_input():
    "The network sees [bicubic LR in [-1, 1], sqrt(g) y0 + sqrt(1-g) eps] and sqrt(gamma), and the loss is L1/L2 of eps."
    import torch.nn.functional as F
    torch.manual_seed(0)
    m = SR3(SR3Config.tiny(loss_type="l2"))
    hr, lr = torch.rand(3, 3, 16, 16, generator=gen(0)), torch.rand(3, 3, 4, 4, generator=gen(1))
    gam, noise = m.draw(3, (3, 16, 16), gen(2))
    seen = {}
    def net(x, sg): seen.update(x=x, sg=sg); return torch.zeros_like(x[:, 3:])
    m.net.forward = net
    loss = m.denoising_loss(hr, lr, gam, noise)
    y0 = hr * 2 - 1
    torch.testing.assert_close(seen["x"][:, 3:], gam.sqrt()[:, None, None, None] * y0 + (1 - gam)[:, None, None, None].sqrt() * noise)
    torch.testing.assert_close(seen["x"][:, :3], F.interpolate(lr * 2 - 1, scale_factor=4, mode="bicubic", align_corners=False))
    torch.testing.assert_close(seen["sg"], gam.sqrt())
    torch.testing.assert_close(loss, noise.pow(2).mean())
    m2 = SR3(SR3Config.tiny(loss_type="l1")); m2.net.forward = net
    torch.testing.assert_close(m2.denoising_loss(hr, lr, gam, noise), noise.abs().mean())
