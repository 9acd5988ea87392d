"""One seed rule for every command (issue 26): the same seed gives the same samples through `srflow sample`,
`srflow evaluate` and the explorer, for every stochastic family (SRFlow, HCFlow, SR3).

The rule (`srflow_nb.core`): image `name` at temperature `t` in a run seeded `s` is seeded `image_seed(s, name, t)`;
sample `i` of a call seeded `k` draws from `sample_seed(k, i)`. A command that used another rule (the run seed for every
image, one generator for all samples, a temperature-blind seed) fails here.
"""
import numpy as np
import pytest
import torch

from srflow_nb.core import image_seed
from srflow_nb.datasets import demo_images
from srflow_nb.evaluate import evaluate
from srflow_nb.explorer import Explorer
from srflow_nb.images import load_image, save_image, to_tensor
from srflow_nb.resize import downscale
from srflow_nb.commands import sample_files
from srflow_nb.superresolvers import load_superresolver

CASES = [("srflow", dict(temperature=0.8), dict(temperatures=[0.8])),
         ("hcflow", dict(temperature=0.7), dict(temperatures=[0.7])),
         ("sr3", dict(steps=3), dict(temperatures=[], steps=3))]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    "A 64x64 HR crop of a demo image and its 8-bit LR, as files and tensors."
    d = tmp_path_factory.mktemp("seed_rule")
    hr = to_tensor(load_image(demo_images("test")[0]))[..., :64, :64]
    lr = downscale(hr, 4, quantize=True)
    save_image(d / "crop.png", lr[0])
    return d, hr, to_tensor(load_image(d / "crop.png"))


def _evaluated(family, hr, lr, seed, n, kw):
    got = {}
    evaluate(load_superresolver(family, "cpu"), [dict(name="crop", hr=hr, lr=lr)], 4, kw.get("temperatures", [0.8]), n,
             metrics=["psnr"], seed=seed, method=family, device="cpu", progress=False, steps=kw.get("steps"),
             on_sample=lambda name, meth, t, sr: got.setdefault(meth, sr))
    return got[family]


@pytest.mark.parametrize("family,sample_kw,eval_kw", CASES)
def test_sample_and_evaluate_draw_the_same_samples(family, sample_kw, eval_kw, image, tmp_path):
    d, hr, lr = image
    n, seed = 2, 7
    kw = {k: (str(v) if k == "temperature" else v) for k, v in sample_kw.items()}
    files = sample_files([str(d / "crop.png")], str(tmp_path / "out"), model=family, n=n, seed=seed, quiet=True, device="cpu", **kw)
    written = torch.cat([to_tensor(load_image(f)) for f in sorted(files)])
    ev = _evaluated(family, hr, lr, seed, n, eval_kw)
    assert written.shape == ev.shape
    assert (written * 255 - (ev * 255).round()).abs().max() <= 1.0, f"{family}: srflow sample and evaluate differ for the same seed"
    other = _evaluated(family, hr, lr, seed + 1, n, eval_kw)
    assert not torch.allclose(ev, other), f"{family}: the seed has no effect"


def test_the_explorer_draws_what_evaluate_draws(image):
    d, hr, lr = image
    ex = Explorer(load_superresolver("srflow", "cpu").model, images=[d / "crop.png"], n=2, seed=5, temperature=0.8, lpips=False,
                  models={"hcflow": "hcflow"})
    ex.upload_is_hr.value = False
    for family, kw in (("srflow", dict(temperatures=[0.8])), ("hcflow", dict(temperatures=[0.8]))):
        if family != ex.chosen: ex.choose_model(family)
        ev = _evaluated(family, torch.zeros(1, 3, *(s * 4 for s in ex.lr.shape[-2:])), ex.lr, 5, 2, kw)
        torch.testing.assert_close(ex.samples, ev, rtol=0, atol=1e-5, msg=f"{family}: the explorer and evaluate differ for the same seed")
