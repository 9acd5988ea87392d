"Regression tests of the fast sampling engine against the official SRFlow fixture and the plain reverse pass."
import pytest
import torch

from srflow_nb import sampling as S
from srflow_nb.checkpoints import load_official
from srflow_nb.testing import official_fixture, tiny_model, tiny_inputs

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def official():
    sd, fx = official_fixture()
    return load_official(sd), fx


@pytest.mark.parametrize("temperature", ["0.9", "0"])
def test_fast_decode_matches_official_reverse(official, temperature):
    "The engine, fed the official unit latents times the temperature, reproduces the official SR images."
    model, fx = official
    t = float(temperature)
    lat = [fx["rev.u.0"] * t, fx["rev.u.1"] * t]
    sr = S.sample(model, fx["input.lr"], latents=[u[None] for u in lat], device="cpu")[0]
    torch.testing.assert_close(sr, fx[f"rev.sr.heat{temperature}"], rtol=1e-4, atol=1e-5)


def test_fast_roundtrip_official(official):
    model, fx = official
    lat = [fx["enc.latent.0"][None], fx["enc.latent.1"][None]]
    sr = S.sample(model, fx["input.lr"], latents=lat, device="cpu")[0]
    torch.testing.assert_close(sr, fx["rev.roundtrip"], rtol=1e-4, atol=1e-5)


def test_fast_equals_plain_without_channels_last():
    model = tiny_model(seed=2, perturb_std=0.02).eval()
    _, lr = tiny_inputs(1, (32, 32), 4, seed=4)
    lat = [torch.randn(s) * 0.8 for s in model.latent_shapes((32, 32), 1)]
    with torch.inference_mode():
        for cl in (False, True):
            sm = S.FastSampler(model, channels_last=cl)
            d = (sm.decode(lat, sm.condition(lr)) - model.decode(lat, lr)).abs().max()
            assert d <= 1e-4, (cl, d)


def test_tile_budget_error_and_bad_inputs():
    model = tiny_model(seed=2).eval()
    _, lr = tiny_inputs(1, (32, 32), 4, seed=4)
    with pytest.raises(S.TileTooLargeError, match="budget"):
        S.super_resolve_tiled(model, lr, tile=8, overlap=2, max_memory=10 * 2**20)
    with pytest.raises(ValueError, match=">= 0"): S.sample(model, lr, temperature=-0.5)
    with pytest.raises(ValueError, match="n must be"): S.sample(model, lr, n=0)
    with pytest.raises(ValueError, match="temperatures"): S.temperature_sweep(model, lr, [])
