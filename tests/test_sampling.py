"Regression tests of sampling (`sample`, sweeps, regions, tiles, the memory budget, diverged samples) against the official SRFlow fixture."
import copy, warnings

import pytest
import torch

from srflow_nb import sampling as S
from srflow_nb import commands as C
from srflow_nb.checkpoints import load_official, save_model
from srflow_nb.core import InputError, MemoryBudgetError, NonFiniteSampleError, TileTooLargeError, nonfinite_samples
from srflow_nb.latent import resample_latents
from srflow_nb.model import SRFlow, SRFlowConfig
from srflow_nb.testing import official_fixture

torch.set_num_threads(1)   # tiny tensors: one thread is faster, and much faster on a busy CPU


@pytest.fixture(scope="module")
def official():
    sd, fx = official_fixture()
    return load_official(sd), fx


def _blown(model):
    "A copy whose coupling scales sit at a floor of 1e-30: its reverse pass (x / scale per step) overflows to Inf/NaN."
    m = copy.deepcopy(model)
    with torch.no_grad():
        for lv in m.flow.levels:
            for st in lv.steps: st.coupling.net[4].bias[1::2] -= 200.0; st.coupling.eps = 1e-30
    return m


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


def test_nonfinite_samples_are_reported(tiny):
    model, lr = tiny
    blown = _blown(model)
    with pytest.warns(RuntimeWarning, match=r"\d+ of 2 samples diverged .* temperature 3.0"):
        sr = S.sample(blown, lr, n=2, temperature=3.0, seed=0)
    assert nonfinite_samples(sr).any()
    with pytest.raises(NonFiniteSampleError, match="diverged") as e: blown.sample(lr, temperature=3.0, on_nonfinite="raise")
    assert isinstance(e.value, InputError)
    with pytest.warns(RuntimeWarning, match="diverged"):
        assert torch.isfinite(S.sample(blown, lr, n=2, temperature=3.0, seed=0, on_nonfinite="clamp", clamp=True)).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a healthy model at a normal temperature: no warning
        assert torch.isfinite(S.sample(model, lr, n=2, temperature=0.8, seed=0)).all()


def test_memory_budget_refuses_before_running(tiny):
    model, lr = tiny
    with pytest.raises(MemoryBudgetError, match="over the budget") as e: S.sample(model, lr, max_memory=2**20)
    assert isinstance(e.value, InputError)
    with torch.device("meta"): big = SRFlow(SRFlowConfig.div2k_4x())
    est = S.estimate_memory(big, (500, 500))["total"]
    t = S.plan_tile(big, (500, 500), max_memory=est // 3)
    assert t is not None and S.estimate_memory(big, (t, t))["total"] <= est // 3
    with pytest.raises(MemoryBudgetError, match=f"the largest tile that fits is {t}"):
        S.check_memory(big, (500, 500), max_memory=est // 3)
    assert S.plan_tile(big, (500, 500), max_memory=est) is None


def test_tile_budget_error_and_bad_inputs(tiny):
    model, lr = tiny
    with pytest.raises(TileTooLargeError, match="budget"):
        S.super_resolve_tiled(model, lr, tile=8, overlap=2, max_memory=10 * 2**20)
    with pytest.raises(ValueError, match=">= 0"): S.sample(model, lr, temperature=-0.5)
    with pytest.raises(ValueError, match="n must be"): S.sample(model, lr, n=0)
    with pytest.raises(ValueError, match="temperatures"): S.temperature_sweep(model, lr, [])


def test_region_resampling_is_latent_resample_latents(tiny):
    model, lr = tiny
    sr0, lat0 = S.sample(model, lr, n=2, temperature=0.8, seed=1, return_latents=True)
    mask = torch.zeros(8, 8, dtype=torch.bool); mask[:2, :2] = True          # LR coordinates: top-left 8x8 HR
    sr1, lat1 = S.resample_region(model, lr, lat0, mask, temperature=0.8, seed=2, return_latents=True)
    unit, _ = S.draw_unit_latents(model, (32, 32), 1, 2, seed=2)
    hrmask = mask.repeat_interleave(4, 0).repeat_interleave(4, 1)
    want = resample_latents([z.flatten(0, 1) for z in lat0], hrmask, fresh=[u.flatten(0, 1) * 0.8 for u in unit])
    for a, b in zip(lat1, want): torch.testing.assert_close(a.flatten(0, 1), b)
    assert torch.equal(lat1[-1][..., 1:, :], lat0[-1][..., 1:, :]) and not torch.equal(lat1[-1], lat0[-1])
    d = (sr1 - sr0).abs()[..., :8, :8].max()
    assert d > 0.05


def _write_lr(path, lr):
    from srflow_nb.images import save_image
    save_image(path, lr[0])


def test_sample_files_errors_and_diverged_samples(tiny, tmp_path):
    model, lr = tiny
    _write_lr(tmp_path / "a.png", lr)
    ok, bad = save_model(model, tmp_path / "ok.safetensors"), save_model(_blown(model), tmp_path / "blown.safetensors")
    kw = dict(quiet=True, device="cpu", seed=0)
    written = C.sample_files([str(tmp_path / "a.png")], str(tmp_path / "out"), checkpoint=str(ok), n=2, **kw)
    assert [p.name for p in written] == ["a_t0.80_000.png", "a_t0.80_001.png"] and all(p.exists() for p in written)
    (tmp_path / "file").write_text("x"); (tmp_path / "corrupt.png").write_bytes(b"nope")
    for args, match in [(([str(tmp_path / "missing.png")], str(tmp_path / "o2")), "missing.png: no such file"),
                        (([str(tmp_path / "corrupt.png")], str(tmp_path / "o2")), "corrupt.png: cannot read"),
                        (([str(tmp_path / "a.png")], str(tmp_path / "file")), "is not a folder")]:
        with pytest.raises(InputError, match=match): C.sample_files(*args, checkpoint=str(ok), **kw)
    for temp, match in [("abc", "--temperature: 'abc'"), ("-1", ">= 0")]:
        with pytest.raises(InputError, match=match): C.sample_files([str(tmp_path / "a.png")], str(tmp_path / "o3"), checkpoint=str(ok), temperature=temp, **kw)
    with pytest.raises(MemoryBudgetError, match="no tile fits"):
        C.sample_files([str(tmp_path / "a.png")], str(tmp_path / "o4"), checkpoint=str(ok), max_memory=1e-4, **kw)
    assert not (tmp_path / "o4").exists() or not any((tmp_path / "o4").iterdir())
    with pytest.raises(NonFiniteSampleError, match="not written"):
        C.sample_files([str(tmp_path / "a.png")], str(tmp_path / "o5"), checkpoint=str(bad), temperature="3", n=2, **kw)
    assert not any((tmp_path / "o5").glob("*.png"))   # a diverged sample is never written silently
    with pytest.warns(RuntimeWarning, match="diverged"):
        kept = C.sample_files([str(tmp_path / "a.png")], str(tmp_path / "o6"), checkpoint=str(bad), temperature="3", n=2,
                              keep_nonfinite=True, **kw)
    assert len(kept) == 2


def test_sample_files_other_models_never_write_diverged_samples(tiny, tmp_path, monkeypatch):
    "`--model hcflow`: a sample with NaN is not written (the run fails naming it) unless --keep_nonfinite; finite ones are."
    model, lr = tiny
    _write_lr(tmp_path / "a.png", lr)

    class Diverging:                                    # a stochastic super-resolver whose sample 1 diverges
        name, scale, stochastic = "hcflow", 4, True
        def sample(self, lr, n=1, temperature=None, steps=None, seed=0):
            out = torch.full((n, *lr.shape[:2], 4 * lr.shape[-2], 4 * lr.shape[-1]), 0.5)
            diverges = seed[0].initial_seed() == S.sample_seed(S.image_seed(0, "a", 0.8), 1)   # the seed rule's sample 1 of image a
            return out.fill_(float("nan")) if diverges else out
    monkeypatch.setattr(C.superresolvers, "load_superresolver", lambda spec, device="auto": Diverging())
    kw = dict(model="hcflow:x.pt", n=2, quiet=True, device="cpu")
    with pytest.raises(NonFiniteSampleError, match=r"1 sample.*not written \(a_hcflow_t0.80_001.png\)"):
        C.sample_files([str(tmp_path / "a.png")], str(tmp_path / "o"), **kw)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a_hcflow_t0.80_000.png"]
    kept = C.sample_files([str(tmp_path / "a.png")], str(tmp_path / "k"), keep_nonfinite=True, **kw)
    assert [p.name for p in kept] == ["a_hcflow_t0.80_000.png", "a_hcflow_t0.80_001.png"]
