"""ESRGAN baseline (srflow_nb.esrgan): losses against hand-computed values, the discriminator layout, the perceptual
loss, network interpolation, official-key loading, GAN steps and exact resume."""
import copy, json, math

import pytest
import torch
import torch.nn.functional as F

from srflow_nb.core import InputError
from srflow_nb.encoder import RRDBEncoder
from srflow_nb.esrgan import (ESRGANTask, FeatureLoss, VGGStyleDiscriminator, esrgan_demo, esrgan_generator, esrgan_options,
                              esrgan_paper, interpolate, interpolate_generators, load_official_esrgan,
                              official_rrdb_shapes, ragan_discriminator_loss, ragan_generator_loss)
from srflow_nb.train import PatchCache, Trainer, learning_rate_at, task_class


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


def test_interpolation_curve_endpoints():
    from srflow_nb.esrgan import interpolation_curve
    from srflow_nb.metrics import psnr
    torch.manual_seed(0)
    a, b = RRDBEncoder(nf=8, nb=2, gc=4, stack_blocks=(0, 1)), RRDBEncoder(nf=8, nb=2, gc=4, stack_blocks=(0, 1))
    hr = torch.rand(1, 3, 32, 32)
    lr = (F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1) * 255).round() / 255
    curve = interpolation_curve(a, b, [(hr, lr)], alphas=(0.0, 1.0), lpips=False)
    with torch.inference_mode():
        assert curve.psnr[0] == pytest.approx(float(psnr(a.sr(lr).clamp(0, 1), hr)[0]))
        assert curve.psnr[1] == pytest.approx(float(psnr(b.sr(lr).clamp(0, 1), hr)[0]))
    assert curve.psnr[0] != curve.psnr[1]


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


# --- training (through the shared trainer) ----------------------------------------------------------------------------
def down(h, s): return F.interpolate(h[None], scale_factor=1 / s, mode="bicubic", antialias=True)[0]


def patches():
    g = torch.Generator().manual_seed(3)
    return PatchCache.from_hr([torch.rand(3, 80, 80, generator=g) for _ in range(2)], 4, 64, downscale=down)


def tiny_cfg(out, **options):
    return esrgan_demo(iterations=4, batch_size=2, patch_size=64, amp=None, milestones=(0.5,), log_every=1, ckpt_every_steps=2,
                       val_every=2, out_dir=str(out), options=dict(feature_net="alexnet", disc_features=8, **options))


def tiny_task(alex, cfg, seed=0):
    torch.manual_seed(seed)
    return ESRGANTask(RRDBEncoder(nf=8, nb=1, gc=4, stack_blocks=(0,)), cfg, feature_loss=alex)


def val_pairs():
    g = torch.Generator().manual_seed(9)
    hr = torch.rand(3, 64, 64, generator=g)
    return [(hr, ((down(hr, 4).clamp(0, 1) * 255).round() / 255))]


def test_registered_task_and_options():
    assert task_class("esrgan") is ESRGANTask
    o = esrgan_options(esrgan_paper())
    assert (o["pixel_weight"], o["perceptual_weight"], o["gan_weight"], o["feature_net"]) == (1e-2, 1.0, 5e-3, "vgg19")
    c = esrgan_paper()
    assert (c.iterations, c.batch_size, c.patch_size, c.learning_rate, c.betas, c.gamma) == (400_000, 16, 128, 1e-4, (0.9, 0.99), 0.5)
    assert [s for s in range(1, 400_001) if learning_rate_at(s, c) != learning_rate_at(s - 1, c)] == [50_000, 100_000, 200_000, 300_000]
    with pytest.raises(InputError, match="unknown ESRGAN option"): esrgan_options(esrgan_paper(options=dict(gan_wieght=1.0)))
    with pytest.raises(InputError, match="multiple of 32"): esrgan_options(esrgan_paper(patch_size=100))
    with pytest.raises(InputError, match="feature_net"): esrgan_options(esrgan_paper(options=dict(feature_net="vgg16")))


def test_gan_steps_change_both_nets_no_nan(alex, tmp_path):
    task = tiny_task(alex, tiny_cfg(tmp_path / "run"))
    before = {k: copy.deepcopy(m.state_dict()) for k, m in task.modules.items()}
    tr = Trainer(task, task.cfg, patches(), progress=False).fit(3)
    assert tr.step == 3 and tr.skipped == 0
    assert [r["learning_rate_generator"] for r in tr.history] == [1e-4, 1e-4, 5e-5]
    assert [r["learning_rate_discriminator"] for r in tr.history] == [1e-4, 1e-4, 5e-5]
    assert all(math.isfinite(r[k]) for r in tr.history for k in ("loss", "pixel", "perceptual", "gan", "d_loss", "d_real", "d_fake"))
    for name, m in task.modules.items():
        after = m.state_dict()
        assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
        assert any(not torch.equal(before[name][k], after[k]) for k in after if after[k].is_floating_point()), name


def one_step_moves_generator(alex, tmp_path, **weights):
    task = tiny_task(alex, tiny_cfg(tmp_path, **weights))
    w = task.generator.conv_last.weight.detach().clone()
    Trainer(task, task.cfg, patches(), progress=False).fit(1)
    return not torch.equal(w, task.generator.conv_last.weight)


def test_generator_gets_the_adversarial_gradient(alex, tmp_path):
    # the GAN term alone moves the generator (its gradient reaches G through D); with every weight 0 nothing does
    assert one_step_moves_generator(alex, tmp_path / "a", pixel_weight=0.0, perceptual_weight=0.0)
    assert not one_step_moves_generator(alex, tmp_path / "b", pixel_weight=0.0, perceptual_weight=0.0, gan_weight=0.0)


def test_nonfinite_sr_is_skipped_before_the_discriminator(alex, tmp_path):
    task = tiny_task(alex, tiny_cfg(tmp_path / "run"))
    with torch.no_grad(): task.generator.conv_last.bias.fill_(float("nan"))
    snap = copy.deepcopy(task.discriminator.state_dict())
    tr = Trainer(task, task.cfg, patches(), progress=False)
    r = tr.train_step()
    assert r["ok"] is False and tr.skipped == 1
    assert all(torch.equal(snap[k], v) for k, v in task.discriminator.state_dict().items())   # BatchNorm statistics included


def test_resume_is_exact_validation_and_export(alex, tmp_path):
    data, val = patches(), val_pairs()
    full = tiny_task(alex, tiny_cfg(tmp_path / "full"))
    Trainer(full, full.cfg, data, val_data=val, progress=False).fit()
    part = tiny_task(alex, tiny_cfg(tmp_path / "part"))
    Trainer(part, part.cfg, data, val_data=val, progress=False).fit(2)
    resumed = tiny_task(alex, tiny_cfg(tmp_path / "part"), seed=123)   # other initial weights: all must come from the checkpoint
    tr = Trainer(resumed, resumed.cfg, data, val_data=val, progress=False)
    assert tr.step == 2 and tr.resumed_from.name == "step_00000002.pt"
    tr.fit()
    for n in ("generator", "discriminator"):
        a, b = full.modules[n].state_dict(), resumed.modules[n].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), n
    v = tr.val_history
    assert [r["step"] for r in v] == [2, 4] and all(math.isfinite(r[k]) for r in v for k in ("esrgan_psnr", "esrgan_lr_psnr", "bicubic_psnr"))
    from srflow_nb.checkpoints import load_model
    from srflow_nb.train_commands import export                                 # `srflow export`: the generator as an RRDB file
    g = load_model(export(str(tmp_path / "full/checkpoints/step_00000004.pt"), str(tmp_path / "esrgan.safetensors")))
    assert isinstance(g, RRDBEncoder) and all(torch.equal(g.state_dict()[k], v) for k, v in full.generator.state_dict().items())
    with pytest.raises(InputError, match="not an ESRGAN trainer checkpoint"):
        ck = torch.load(tmp_path / "full/checkpoints/step_00000004.pt", weights_only=True)
        ck["config"]["stage"] = "rrdb"
        esrgan_generator(ck)


def test_create_from_bundled_rrdb_and_bad_model():
    cfg = esrgan_demo(out_dir="unused")
    task = ESRGANTask.create(cfg, "demo-4x-rrdb")
    from srflow_nb.checkpoints import load_pretrained
    ref = load_pretrained("demo-4x-rrdb").state_dict()
    assert all(torch.equal(ref[k], v) for k, v in task.generator.state_dict().items())   # starts from the L1 RRDB
    assert task.discriminator.input_size == cfg.patch_size == 96 and task.feature_loss.net_name == "alexnet"
    assert task.model_config()["kind"] == "rrdb" and task.model_config()["nf"] == ref["conv_first.weight"].shape[0]
    with pytest.raises(InputError, match="L1 generator"): ESRGANTask.create(cfg, "no-such-model.pth")
