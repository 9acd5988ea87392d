"""ESRGAN baseline (srflow_nb.esrgan): losses against hand-computed values, the discriminator layout, the perceptual
loss, network interpolation, official-key loading, GAN steps and exact resume."""
import copy, json, math

import pytest
import torch
import torch.nn.functional as F

from srflow_nb.core import InputError
from srflow_nb.encoder import RRDBEncoder
from srflow_nb.esrgan import (ESRGANConfig, ESRGANTask, FeatureLoss, VGGStyleDiscriminator, export_esrgan, fit_esrgan,
                              interpolate, interpolate_generators, load_official_esrgan, official_rrdb_shapes,
                              ragan_discriminator_loss, ragan_generator_loss)


def softplus(t): return math.log1p(math.exp(t))


# --- relativistic average GAN -------------------------------------------------------------------------------------
def test_ragan_hand_computed():
    real, fake = torch.tensor([[2.0], [0.0]]), torch.tensor([[1.0], [-1.0]])
    # relativistic logits: real - mean(fake) = (2, 0), fake - mean(real) = (0, -2); BCE(t, 1) = softplus(-t)
    d = ((softplus(-2) + softplus(0)) / 2 + (softplus(0) + softplus(-2)) / 2) / 2
    g = ((softplus(2) + softplus(0)) / 2 + (softplus(0) + softplus(2)) / 2) / 2
    assert ragan_discriminator_loss(real, fake).item() == pytest.approx(d, rel=1e-6)
    assert ragan_generator_loss(real, fake).item() == pytest.approx(g, rel=1e-6)


def test_ragan_unequal_batches_and_asymmetry():
    real, fake = torch.tensor([[1.0], [3.0], [-1.0]]), torch.tensor([[0.5], [-0.5]])
    mr, mf = 1.0, 0.0
    d = (sum(softplus(-(r - mf)) for r in (1, 3, -1)) / 3 + sum(softplus(f - mr) for f in (0.5, -0.5)) / 2) / 2
    g = (sum(softplus(r - mf) for r in (1, 3, -1)) / 3 + sum(softplus(-(f - mr)) for f in (0.5, -0.5)) / 2) / 2
    assert ragan_discriminator_loss(real, fake).item() == pytest.approx(d, rel=1e-6)
    assert ragan_generator_loss(real, fake).item() == pytest.approx(g, rel=1e-6)
    # relativistic: a common shift of all logits changes nothing; a gap between real and fake does
    assert ragan_discriminator_loss(real + 5, fake + 5).item() == pytest.approx(d, rel=1e-6)
    assert ragan_discriminator_loss(real + 5, fake).item() < d < ragan_generator_loss(real + 5, fake).item()


def test_ragan_generator_gets_gradient_from_real_term():
    real = torch.tensor([[1.0], [2.0]])
    fake = torch.tensor([[0.0], [0.5]], requires_grad=True)
    ragan_generator_loss(real, fake).backward()
    # d/dfake of the real term alone (through mean(fake)) is non-zero: the generator learns from real images too
    fake2 = fake.detach().clone().requires_grad_(True)
    (F.binary_cross_entropy_with_logits(real - fake2.mean(), torch.zeros_like(real)) / 2).backward()
    assert fake2.grad.abs().sum() > 0 and fake.grad.abs().sum() > 0


# --- discriminator ----------------------------------------------------------------------------------------------------
def test_discriminator_vgg128_layout():
    D = VGGStyleDiscriminator(3, 64, 128)
    assert D(torch.rand(2, 3, 128, 128)).shape == (2, 1)
    widths = [64, 128, 256, 512, 512]
    n = 3 * 64 * 9 + 64                                   # conv0_0 (with bias)
    c_in = 64
    for i, w in enumerate(widths):
        if i > 0: n += c_in * w * 9 + 2 * w              # conv{i}_0 (no bias) + bn{i}_0
        n += w * w * 16 + 2 * w                           # conv{i}_1 4x4 stride 2 + bn{i}_1
        c_in = w
    n += 512 * 4 * 4 * 100 + 100 + 100 + 1               # linear1, linear2
    assert sum(p.numel() for p in D.parameters()) == n
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in D.modules()) == 9


def test_discriminator_demo_size_and_errors():
    D = VGGStyleDiscriminator(3, 8, 96)
    assert D(torch.rand(3, 3, 96, 96)).shape == (3, 1)
    assert D.linear1.in_features == 8 * 8 * 3 * 3
    with pytest.raises(InputError, match="96x96"): D(torch.rand(1, 3, 64, 64))
    with pytest.raises(InputError, match="multiple of 32"): VGGStyleDiscriminator(3, 8, 100)


# --- perceptual loss ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def alex():
    return FeatureLoss("alexnet")


def test_feature_loss_zero_identical_positive_otherwise(alex):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g)
    assert alex(x, x).item() == 0.0
    assert alex(x + 0.05 * torch.randn(x.shape, generator=g), x).item() > 0
    assert alex(x.flip(-1), x).item() > alex(x + 0.01, x).item() > 0


def test_feature_loss_is_lpips_alexnet_before_relu(alex):
    from srflow_nb.metrics import lpips_model
    conv5 = alex.features[-1]
    assert isinstance(conv5, torch.nn.Conv2d) and conv5.out_channels == 256 and len(alex.features) == 11
    lp = lpips_model("alex", "cpu")
    lp_convs = [m for m in lp.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert torch.equal(lp_convs[-1].weight, conv5.weight)   # the weights the project ships offline
    x = torch.rand(1, 3, 64, 64)
    assert (alex.features(x) < 0).any()                      # pre-activation: negative values survive


def test_feature_loss_vgg19_path(tmp_path):
    import torchvision
    torch.manual_seed(0)
    feats = torchvision.models.vgg19().features
    path = tmp_path / "vgg19.pth"
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, path)   # torchvision key names
    fl = FeatureLoss("vgg19", weights=path)
    assert len(fl.features) == 35 and isinstance(fl.features[-1], torch.nn.Conv2d)  # conv5_4, before its ReLU
    assert torch.equal(fl.features[34].weight, feats[34].weight)
    x = torch.rand(1, 3, 32, 32)
    assert fl(x, x).item() == 0.0
    with pytest.raises(InputError, match="needs the VGG19 weights"): FeatureLoss("vgg19")
    with pytest.raises(InputError, match="does not exist"): FeatureLoss("vgg19", weights=tmp_path / "missing.pth")


# --- interpolation ------------------------------------------------------------------------------------------------------
def test_interpolation_endpoints_and_midpoint():
    torch.manual_seed(0)
    a, b = RRDBEncoder(nf=8, nb=2, gc=4, stack_blocks=(0, 1)), RRDBEncoder(nf=8, nb=2, gc=4, stack_blocks=(0, 1))
    lr = torch.rand(2, 3, 6, 6)
    with torch.inference_mode():
        assert torch.equal(interpolate_generators(a, b, 0).sr(lr), a.sr(lr))
        assert torch.equal(interpolate_generators(a, b, 1).sr(lr), b.sr(lr))
        mid = interpolate_generators(a, b, 0.3).sr(lr)
        assert not torch.equal(mid, a.sr(lr)) and not torch.equal(mid, b.sr(lr))
    sd = interpolate(a.state_dict(), b.state_dict(), 0.3)
    for k, v in sd.items():
        torch.testing.assert_close(v, 0.7 * a.state_dict()[k] + 0.3 * b.state_dict()[k])
    with pytest.raises(InputError, match="different keys"): interpolate(a.state_dict(), {"x": torch.zeros(1)}, 0.5)


# --- official weights ----------------------------------------------------------------------------------------------------
def test_official_rrdb_shapes_names():
    s = official_rrdb_shapes()
    assert len(s) == 702 and next(iter(s)) == "conv_first.weight"
    assert s["conv_first.weight"] == (64, 3, 3, 3)
    assert s["RRDB_trunk.0.RDB1.conv1.weight"] == (32, 64, 3, 3)
    assert s["RRDB_trunk.0.RDB1.conv4.weight"] == (32, 160, 3, 3)
    assert s["RRDB_trunk.22.RDB3.conv5.weight"] == (64, 192, 3, 3)
    for k in ("trunk_conv", "upconv1", "upconv2", "HRconv"): assert s[f"{k}.weight"] == (64, 64, 3, 3)
    assert s["conv_last.weight"] == (3, 64, 3, 3) and "upconv3.weight" not in s and "RRDB_trunk.23.RDB1.conv1.weight" not in s


def test_official_esrgan_x4_synthetic_state_dict_loads():
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) * 0.01 for k, s in official_rrdb_shapes().items()}   # RRDB_ESRGAN_x4.pth layout
    net = load_official_esrgan(sd)
    assert (net.nf, len(net.RRDB_trunk), net.scale) == (64, 23, 4)
    own = net.state_dict()
    assert set(own) == set(sd) and all(torch.equal(own[k], v) for k, v in sd.items())
    with torch.inference_mode(): assert net.sr(torch.rand(1, 3, 4, 4)).shape == (1, 3, 16, 16)
    bad = dict(sd); bad["HRconv.weight"] = torch.zeros(64, 32, 3, 3)
    with pytest.raises(ValueError, match="HRconv.weight"): load_official_esrgan(bad)


# --- training -----------------------------------------------------------------------------------------------------------
def tiny_task(alex, seed=0, **kw):
    torch.manual_seed(seed)
    cfg = ESRGANConfig.demo(**{**dict(iterations=4, batch_size=2, patch_size=64, disc_features=8, amp=None, milestones=(2,)), **kw})
    return ESRGANTask(RRDBEncoder(nf=8, nb=1, gc=4, stack_blocks=(0,)), cfg, feature_loss=alex)


def batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    hr = torch.rand(2, 3, 64, 64, generator=g)
    return hr, F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)


def test_gan_steps_change_both_nets_no_nan(alex):
    task = tiny_task(alex)
    before = {k: copy.deepcopy(m.state_dict()) for k, m in task.modules.items()}
    logs = [task.training_step(batch(s), s) for s in range(3)]
    assert all(r["ok"] for r in logs) and [r["learning_rate"] for r in logs] == [1e-4, 1e-4, 5e-5]
    assert all(math.isfinite(v) for r in logs for k, v in r.items() if k != "ok")
    for name, m in task.modules.items():
        after = m.state_dict()
        assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
        assert any(not torch.equal(before[name][k], after[k]) for k in after if after[k].is_floating_point()), name


def test_generator_update_uses_every_loss_term(alex):
    # with the GAN weight only, the generator still moves (the adversarial gradient reaches it through D)
    task = tiny_task(alex, pixel_weight=0.0, perceptual_weight=0.0)
    w = task.generator.conv_last.weight.detach().clone()
    task.training_step(batch(), 0)
    assert not torch.equal(w, task.generator.conv_last.weight)
    task = tiny_task(alex, pixel_weight=0.0, perceptual_weight=0.0, gan_weight=0.0)
    w = task.generator.conv_last.weight.detach().clone()
    task.training_step(batch(), 0)
    assert torch.equal(w, task.generator.conv_last.weight)   # all weights zero: Adam sees zero gradients, no move


def test_nonfinite_batch_is_skipped(alex):
    task = tiny_task(alex)
    snap = {k: copy.deepcopy(m.state_dict()) for k, m in task.modules.items()}
    hr, lr = batch()
    r = task.training_step((hr, lr * float("nan")), 0)
    assert r["ok"] is False
    for n, m in task.modules.items():
        assert all(torch.equal(snap[n][k], v) for k, v in m.state_dict().items())   # BatchNorm statistics included


class Patches:
    "A tiny PatchCache-like source: `sample(n, generator)`."
    def __init__(self):
        from srflow_nb.train import PatchCache
        g = torch.Generator().manual_seed(3)
        hrs = [torch.rand(3, 80, 80, generator=g) for _ in range(2)]
        self.cache = PatchCache.from_hr(hrs, 4, 64, downscale=lambda h, s: F.interpolate(h[None], scale_factor=1 / s, mode="bicubic", antialias=True)[0])
    def sample(self, n, generator): return self.cache.sample(n, generator)


def test_fit_resume_is_exact_and_export_loads(alex, tmp_path):
    data = Patches()
    val = [batch(9)[0][0], batch(9)[1][0]]
    val_pairs = [tuple(val)]
    full = fit_esrgan(tiny_task(alex), data, tmp_path / "full", val_pairs, log_every=1, val_every=2, ckpt_every=2, progress=False)
    part = tiny_task(alex)
    fit_esrgan(part, data, tmp_path / "part", val_pairs, until=2, log_every=1, val_every=2, ckpt_every=2, progress=False)
    resumed = tiny_task(alex, seed=123)   # other initial weights: everything must come from the checkpoint
    rec = fit_esrgan(resumed, data, tmp_path / "part", val_pairs, log_every=1, val_every=2, ckpt_every=2, progress=False)
    assert rec["step"] == full["step"] == 4
    from srflow_nb.train import load_checkpoint
    a = load_checkpoint(tmp_path / "full/checkpoints/step_00000004.pt")
    b = load_checkpoint(tmp_path / "part/checkpoints/step_00000004.pt")
    for n in ("generator", "discriminator"):
        assert all(torch.equal(a["model"][n][k], b["model"][n][k]) for k in a["model"][n]), n
    assert [h["g_loss"] for h in a["history"]] == [h["g_loss"] for h in b["history"]]
    assert [v["step"] for v in b["val_history"]] == [0, 2, 4] and all(math.isfinite(v["psnr"]) for v in b["val_history"])
    with pytest.raises(InputError, match="another ESRGANConfig"):
        fit_esrgan(tiny_task(alex, gan_weight=1.0), data, tmp_path / "part", progress=False)
    from srflow_nb.checkpoints import load_model
    out = export_esrgan(tmp_path / "full/checkpoints/step_00000004.pt", tmp_path / "esrgan.safetensors")
    g = load_model(out)
    assert all(torch.equal(g.state_dict()[k], v) for k, v in a["model"]["generator"].items())


def test_config_validation():
    with pytest.raises(InputError, match="multiple of 32"): ESRGANConfig(patch_size=100)
    with pytest.raises(InputError, match="feature_net"): ESRGANConfig(feature_net="vgg16")
    with pytest.raises(InputError, match="amp"): ESRGANConfig(amp="fp16")
    c = ESRGANConfig.paper()
    assert (c.iterations, c.batch_size, c.patch_size, c.milestones, c.gamma) == (400_000, 16, 128, (50_000, 100_000, 200_000, 300_000), 0.5)
    assert ESRGANConfig.demo(iterations=2400).milestones == (300, 600, 1200, 1800)
    assert ESRGANConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
