"The SRFlow engine (`engine`: folded, cached reverse pass) against the plain reverse pass `SRFlow.decode`."
import dataclasses

import pytest
import torch

from srflow_nb import engine as E
from srflow_nb.model import SRFlowConfig
from srflow_nb.testing import tiny_model, tiny_inputs

torch.set_num_threads(1)   # tiny tensors: one thread is faster, and much faster on a busy CPU


def test_fast_equals_plain_without_channels_last(tiny):
    model, lr = tiny
    g = torch.Generator().manual_seed(3)
    lat = [torch.randn(s, generator=g) * 0.8 for s in model.latent_shapes((32, 32), 1)]
    with torch.inference_mode():
        plain = model.decode(lat, lr)
        for cl in (False, True):
            sm = E.FastSampler(model, channels_last=cl)
            d = (sm.decode(lat, sm.condition(lr)) - plain).abs().max()
            assert d <= 1e-4, (cl, d)
    assert all(dataclasses.is_dataclass(lv) for lv in sm.levels)   # named, frozen fields: no dicts of string keys
    with pytest.raises(dataclasses.FrozenInstanceError): sm.levels[0].steps[0].eps = 0.0


def test_model_sample_goes_through_the_engine(tiny):
    "`SRFlow.sample` = the engine fed the generator's draws in the official order; `decode` stays the plain pass."
    model, lr = tiny
    E._SAMPLERS.pop(model, None)
    with torch.inference_mode():
        sr = model.sample(lr, n=3, temperature=0.7, generator=torch.Generator().manual_seed(5))
        g = torch.Generator().manual_seed(5)
        plain = torch.stack([model.decode(model.sample_latents((32, 32), 1, 0.7, g), lr) for _ in range(3)])
        from_cond = model.sample(cond=model.conditioning(lr), n=3, temperature=0.7, generator=torch.Generator().manual_seed(5))
    assert model in E._SAMPLERS
    assert (sr - plain).abs().max() <= 1e-4 and (sr[0] - sr[1]).abs().max() > 1e-3
    torch.testing.assert_close(from_cond, sr)


# --- several flow steps per level: the per-step cache must pair step k with its own conditioning --------------------
@pytest.fixture(scope="module")
def deep():
    "K=3 conditional steps per level, L=3 levels (one split): every engine-vs-plain test above uses K=1."
    cfg = SRFlowConfig.tiny_4x(K=3, L=3, nf=16, gc=8, hidden_channels=16, include_unused_official_params=False)
    model = tiny_model(seed=3, perturb_std=0.02, config=cfg).eval()   # 0.05 makes this untrained reverse pass blow up
    _, lr = tiny_inputs(2, (32, 32), 4, seed=5)
    return model, lr


@pytest.mark.parametrize("temperature", [0.0, 0.5, 0.9, 1.2])
def test_engine_equals_plain_reverse_with_several_steps_per_level(deep, temperature):
    "An off-by-one in the engine's per-step cache (step k reversed with the conditioning of step k +- 1) fails here."
    model, lr = deep
    assert model.config.K >= 3 and model.config.L >= 2 and len(model.flow.levels[0].steps) == model.config.K
    E._SAMPLERS.pop(model, None)
    with torch.inference_mode():
        eng = model.sample(lr, n=2, temperature=temperature, generator=torch.Generator().manual_seed(7))   # the engine
        g = torch.Generator().manual_seed(7)
        plain = torch.stack([model.decode(model.sample_latents((32, 32), 2, temperature, g), lr) for _ in range(2)])
        assert torch.isfinite(plain).all() and plain.std() > 0.05
        torch.testing.assert_close(eng, plain, rtol=0, atol=1e-5)
        lat = model.sample_latents((32, 32), 2, temperature, torch.Generator().manual_seed(8))
        ref = model.decode(lat, lr)
        for spc in (1, 2, 8):   # first convs over the conditioning: one per step, chunks of 2 (steps 0-1, 2), one per level
            sm = E.FastSampler(model, steps_per_conv=spc)
            torch.testing.assert_close(sm.decode(lat, sm.condition(lr)), ref, rtol=0, atol=1e-5,
                                       msg=lambda m: f"steps_per_conv={spc}, temperature {temperature}: engine != plain reverse\n{m}")
