"Paper configurations: parameter counts, official key lists, round trips; bad input and bad checkpoints."
from pathlib import Path

import pytest
import torch
from fastcore.test import test_fail as fails_with

from srflow_nb.checkpoints import (infer_official_config, load_official, official_key_map, official_state_dict,
                                   read_official_key_list)
from srflow_nb.model import SRFlow, SRFlowConfig
from srflow_nb.testing import check_logdet, perturb_zero_params, tiny_inputs, tiny_model

KEYS = Path(__file__).parent / "fixtures" / "official_keys"
torch.set_num_threads(2)


def n_params(m): return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("preset,n", [("div2k_4x", 39_541_811), ("celeba_8x", 40_030_531)])
def test_param_count(preset, n):
    with torch.device("meta"): m = SRFlow(getattr(SRFlowConfig, preset)())
    assert n_params(m) == n


@pytest.mark.parametrize("preset,fname", [("div2k_4x", "keys_DF2K_4X.txt"), ("celeba_8x", "keys_CelebA_8X.txt")])
def test_official_keys_and_shapes(preset, fname):
    ref = read_official_key_list(KEYS / fname)
    with torch.device("meta"): m = SRFlow(getattr(SRFlowConfig, preset)())
    sd = m.state_dict()
    ours = {off: tuple(sd[k].shape) for k, off in official_key_map(m).items()}
    assert ours == ref
    assert infer_official_config({k: torch.empty(s, device="meta") for k, s in ref.items()}) == getattr(SRFlowConfig, preset)()


def test_div2k_8x_structure():
    with torch.device("meta"): m = SRFlow(SRFlowConfig.div2k_8x())
    keys = set(official_key_map(m).values())
    assert "RRDB.upconv3.weight" in keys and "flowUpsamplerNet.layers.77.affine.fFeatures.4.logs" in keys
    assert "flowUpsamplerNet.layers.19.conv.weight" in keys and "flowUpsamplerNet.layers.39.conv.weight" in keys


@pytest.mark.parametrize("preset", ["div2k_4x", "celeba_8x"])
def test_round_trip_paper_configs(preset):
    cfg = getattr(SRFlowConfig, preset)()
    with torch.random.fork_rng():
        torch.manual_seed(0); m = SRFlow(cfg).eval()
    with torch.inference_mode(): m.initialize(*tiny_inputs(4, (32, 32), scale=cfg.scale, seed=2))  # enough pixels per channel at the deepest level
    hr, lr = tiny_inputs(1, (32, 32), scale=cfg.scale, seed=1)
    perturb_zero_params(m, 0.01, torch.Generator().manual_seed(0))
    with torch.no_grad():
        latents, logdet = m.encode(hr, lr)
        hr2 = m.decode(latents, lr)
        other = m.decode(latents, lr.flip(-1))
    assert (hr2 - hr).abs().max() <= 1e-4
    assert torch.isfinite(logdet).all()
    assert (hr2 - other).abs().max() > 1e-3  # conditioning matters once zero-init params are perturbed


def test_whole_model_logdet_float64():
    "Exact float64 Jacobian of the whole model, with non-orthogonal 1x1 convolutions (an orthogonal W has log|det| 0,"
    "so a wrong 1x1 log-det, e.g. halved, would go unnoticed with the default initialisation)."
    m = tiny_model().eval()
    g = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for mod in m.modules():
            if hasattr(mod, "inverse_weight"): mod.weight.add_(0.2 * torch.randn(mod.weight.shape, generator=g))
    dets = [torch.linalg.slogdet(mod.weight)[1].abs().item() for mod in m.modules() if hasattr(mod, "inverse_weight")]
    assert min(dets) > 1e-3   # every 1x1 log-det matters
    hr, lr = tiny_inputs(1, (8, 8), seed=3)
    assert check_logdet(lambda v, c: m.double().encode(v, c), hr, lr) <= 1e-6


def test_bad_input():
    m = tiny_model().eval()
    hr, lr = tiny_inputs(2, (16, 16))
    fails_with(lambda: m.encode(hr, lr[:, :, :2]), contains="size mismatch")
    fails_with(lambda: m.encode(hr[:, :, :12], lr[:, :, :3]), contains="not divisible by 2^L")
    fails_with(lambda: m.encode(hr[:, :1], lr), contains="channels")
    fails_with(lambda: m.encode(hr, lr[:, :2]), contains="channels")
    fails_with(lambda: m.nll(hr * float("nan"), lr), contains="NaN")
    fails_with(lambda: m.sample(lr * float("nan")), contains="NaN")
    fails_with(lambda: m.encode(hr[0], lr), contains="(B, C, H, W)")
    fails_with(lambda: m.latent_shapes((12, 16)), contains="not divisible by 2^L")


def test_bad_checkpoints():
    off = official_state_dict(tiny_model(perturb_std=0))
    bad = dict(off); del bad["flowUpsamplerNet.layers.8.affine.fFeatures.2.actnorm.logs"]
    fails_with(lambda: load_official(bad), contains="flowUpsamplerNet.layers.8.affine.fFeatures.2.actnorm.logs")
    bad = dict(off); bad["RRDB.extra.weight"] = torch.zeros(1)
    fails_with(lambda: load_official(bad), contains="RRDB.extra.weight")
    bad = dict(off); bad["flowUpsamplerNet.layers.4.conv.logs"] = torch.zeros(12, 1, 2)
    fails_with(lambda: load_official(bad), contains="flowUpsamplerNet.layers.4.conv.logs")
    with pytest.raises(KeyError): load_official(dict(off, **{"x": torch.zeros(1)}))
    with pytest.raises(ValueError): load_official(dict(off, **{"RRDB.conv_last.bias": torch.zeros(4)}))
    fails_with(lambda: load_official({"foo": torch.zeros(1)}), contains="not an official SRFlow state dict")
    fails_with(lambda: load_official("/nonexistent/SRFlow_DF2K_4X.pth"), contains="not found")
