"The explorer's model dropdown (nbs/18) over `superresolvers.available()`: the bundled HCFlow with a temperature slider, SR3 from an explicit checkpoint with a steps slider, models that are not installed absent."
import pytest
import torch

import srflow_nb.checkpoints as C
from srflow_nb.datasets import demo_images
from srflow_nb.explorer import Explorer
from srflow_nb.hcflow import HCFlowNet
from srflow_nb.sr3 import SR3, SR3Config, export_sr3
from srflow_nb.superresolvers import available
from srflow_nb.testing import tiny_model

REAL_DIR = C.pretrained_dir()
BUNDLED_HCFLOW = (REAL_DIR / C.PRETRAINED["demo-4x-hcflow"]).exists()


def _explorer(**kw):
    return Explorer(tiny_model(seed=0), images=demo_images("test")[:1], crop=32, n=2, lpips=False, **kw)


@pytest.fixture
def lr_work(monkeypatch):
    calls, real = [], HCFlowNet.lr_cache
    monkeypatch.setattr(HCFlowNet, "lr_cache", lambda self, lr: calls.append(tuple(lr.shape)) or real(self, lr))
    return calls


@pytest.mark.skipif(not BUNDLED_HCFLOW, reason="demo-4x-hcflow is not bundled")
def test_bundled_hcflow_in_the_dropdown_with_a_temperature_slider(lr_work):
    "The default dropdown lists the bundled HCFlow; choosing it samples through HCFlowSR: the LR work once for every temperature and seed."
    assert available()["hcflow"] == "hcflow:demo-4x-hcflow"
    ex = _explorer()
    assert "hcflow" in ex.model_select.options
    ex.model_select.value = "hcflow"
    assert ex.chosen == "hcflow" and not ex.error, ex.status.value
    assert not ex.temperature.disabled and ex.steps.disabled and not ex.n.disabled and ex.resample_button.disabled
    first = ex.samples.clone()
    assert first.shape == (2, 3, 32, 32) and torch.isfinite(first).all() and not torch.equal(first[0], first[1])
    ex.temperature.value = 0.0
    assert "HCFlow τ=0" in ex.metrics and not torch.equal(ex.samples, first)
    assert torch.equal(ex.samples[0], ex.samples[1])                         # τ=0: the same (mean) image for every seed
    ex.seed.value = 5
    assert lr_work == [(1, 3, 8, 8)]                                         # one LR cache for every re-sample of the image


def test_sr3_from_an_explicit_checkpoint_gets_a_steps_slider(tmp_path, monkeypatch):
    "`available(sr3=<file>)` adds SR3 before it is bundled; its steps slider drives `SR3.sample(steps=)`; the temperature is off."
    torch.manual_seed(0)
    s3 = SR3(SR3Config.tiny())
    f = export_sr3(dict(modules={"model": s3.state_dict()}, optimizers={}, step=1, config={"stage": "sr3"},
                        model_config={"kind": "sr3", **s3.config.to_dict()}), tmp_path / "sr3.safetensors")
    models = available(sr3=str(f))
    assert models["sr3"] == f"sr3:{f}"
    ex = _explorer(models=models)
    assert "sr3" in ex.model_select.options and ex.steps.layout.display is None
    seen, real = [], SR3.sample
    monkeypatch.setattr(SR3, "sample", lambda self, lr, n=1, steps=None, **kw: seen.append(steps) or real(self, lr, n=n, steps=steps, **kw))
    ex.model_select.value = "sr3"
    assert ex.chosen == "sr3" and not ex.error, ex.status.value
    assert ex.temperature.disabled and not ex.steps.disabled and ex.steps.max == len(s3.sample_gammas)
    ex.steps.value = 2
    assert seen[-1] == 2 and "SR3 2 steps" in ex.metrics and ex.samples.shape == (2, 3, 32, 32)


def test_models_not_installed_are_absent(tmp_path, monkeypatch):
    "With no bundled files only bicubic is offered (and SRFlow itself); with only the HCFlow file, HCFlow and no SR3 or steps slider."
    monkeypatch.setattr(C, "pretrained_dir", lambda: tmp_path)
    assert available() == {"bicubic": "bicubic"}
    ex = _explorer()
    assert list(ex.model_select.options) == ["srflow", "bicubic"] and ex.steps.layout.display == "none"
    if not BUNDLED_HCFLOW: return
    (tmp_path / C.PRETRAINED["demo-4x-hcflow"]).symlink_to(REAL_DIR / C.PRETRAINED["demo-4x-hcflow"])
    ex = _explorer()
    assert list(ex.model_select.options) == ["srflow", "bicubic", "hcflow"] and ex.steps.layout.display == "none"
    ex.model_select.value = "hcflow"
    assert ex.chosen == "hcflow" and not ex.error, ex.status.value

