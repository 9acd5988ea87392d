"Paper configurations: parameter counts, official key lists, round trips; bad input and bad checkpoints."
import copy
from pathlib import Path

import pytest
import torch
from fastcore.test import test_fail as fails_with

from srflow_nb.checkpoints import (infer_official_config, load_official, official_key_map, official_state_dict,
                                   read_official_key_list)
from srflow_nb.flow import FlowLevel
from srflow_nb.layers import ActNorm, AffineInjector, ConditionalAffineCoupling, FlowStep, InvConv1x1, Squeeze
from srflow_nb.model import SRFlow, SRFlowConfig
from srflow_nb.testing import check_inverse, check_logdet, perturb_zero_params, tiny_inputs, tiny_model

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


# --- every flow layer: reverse log-det = -forward log-det, and both equal the exact float64 Jacobian log|det| -------
def _wobbled(layer, seed, std=0.1):
    "`layer` with every parameter moved by `std * randn`: zero-init convs (ZeroConv) and ActNorms act, the 1x1 conv is"
    "no longer orthogonal (an orthogonal W has log|det| 0, which would hide a sign error), so no log-det is trivially 0."
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters(): p.add_(std * torch.randn(p.shape, generator=g))
    return layer.eval()

def _xc(c=4, hw=4, cond=3, seed=0):
    "A batch of 2 small inputs (c, hw, hw) and a conditioning tensor (cond, hw, hw); 64 dims: a 64x64 Jacobian."
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, c, hw, hw, generator=g), (torch.randn(2, cond, hw, hw, generator=g) if cond else None)

FLOW_LAYERS = {   # name -> (layer, x, cond), each layer type of srflow_nb.layers with the flow-layer contract
    "actnorm": lambda: (_wobbled(ActNorm(4), 1, 0.3), *_xc(cond=0)),
    "invconv1x1": lambda: (_wobbled(InvConv1x1(4, torch.Generator().manual_seed(0)), 2, 0.3), *_xc(cond=0)),
    "squeeze": lambda: (Squeeze(), *_xc(cond=0)),
    "affine_injector": lambda: (_wobbled(AffineInjector(4, 3, hidden_channels=8), 3), *_xc()),
    "coupling": lambda: (_wobbled(ConditionalAffineCoupling(4, 3, hidden_channels=8), 4), *_xc()),
    "flow_step": lambda: (_wobbled(FlowStep(4, 3, hidden_channels=8), 5), *_xc()),
    "transition_step": lambda: (_wobbled(FlowStep(4, coupling=False), 6, 0.3), *_xc(cond=0)),
}


@pytest.mark.parametrize("name", list(FLOW_LAYERS))
def test_flow_layer_logdets_exact_in_both_directions(name):
    "A flipped reverse log-det (e.g. the coupling's reverse returning +J) fails here; the notebooks used to be the only check."
    torch.manual_seed(0)
    layer, x, cond = FLOW_LAYERS[name]()
    check_inverse(layer, x, cond)                       # reverse(forward(x)) == x and logdet_rev == -logdet_fwd (rel 1e-5)
    with torch.no_grad():
        y, ld_f = layer(x, cond=cond)
        _, ld_r = layer(y, cond=cond, reverse=True)
    torch.testing.assert_close(ld_r, -ld_f, rtol=1e-5, atol=1e-5, msg=lambda m: f"{name}: reverse logdet != -forward logdet\n{m}")
    if name != "squeeze": assert ld_f.abs().min() > 0.05, f"{name}: log-det {ld_f.tolist()} too small to catch a sign error"
    assert check_logdet(layer, x, cond, rtol=1e-8) <= 1e-8            # forward: float64 slogdet of the autograd Jacobian
    m = copy.deepcopy(layer).double()
    assert check_logdet(lambda v, c: m(v, cond=c, reverse=True), y, cond, rtol=1e-8) <= 1e-8   # reverse, at y = f(x)


@pytest.mark.parametrize("split_conditional", [False, True])
def test_flow_level_with_split_logdets_exact_in_both_directions(split_conditional):
    "A whole level: squeeze, a transition, K=2 conditional steps and the split's standardisation (encode: x -> [h, eps])."
    torch.manual_seed(0)
    lv = _wobbled(FlowLevel(1, K=2, n_transition=1, cond_channels=3, hidden_channels=8, split=True,
                            split_conditional=split_conditional), 7).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    cond = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    n = lv.split.n_pass
    enc = lambda v, c: (lambda h, e, ld: ((h, e), ld))(*lv.encode(v, c))
    dec = lambda v, c: lv.decode(v[:, :n], c, v[:, n:])
    h, eps, ld_f = lv.encode(x, cond)
    x2, ld_r = dec(torch.cat([h, eps], 1), cond)
    torch.testing.assert_close(x2, x)
    torch.testing.assert_close(ld_r, -ld_f, msg=lambda m: f"level decode logdet != -encode logdet\n{m}")
    assert ld_f.abs().min() > 0.05
    assert check_logdet(enc, x, cond, rtol=1e-8) <= 1e-8
    assert check_logdet(dec, torch.cat([h, eps], 1), cond, rtol=1e-8) <= 1e-8


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
