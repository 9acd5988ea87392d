"Users reach HCFlow and SR3 (issues 16, 17): `srflow sample`, `srflow evaluate`, `srflow demo --compare`, through HCFlow's fast engine."
import json

import pandas as pd
import pytest
import torch

from srflow_nb.cli import main
from srflow_nb.evaluate import DEFAULT_METRICS
from srflow_nb.checkpoints import export_model
from srflow_nb.hcflow import HCFlow, HCFlowConfig, HCFlowNet
from srflow_nb.images import save_image
from srflow_nb.sr3 import SR3, SR3Config


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    "Tiny random-weight HCFlow and SR3 files written by the project's export path, an LR image and a folder of two HR images."
    d = tmp_path_factory.mktemp("reach")
    torch.manual_seed(0)
    hc, s3 = HCFlow(HCFlowConfig.sr_tiny_4x()), SR3(SR3Config.tiny())
    hcf = export_model(dict(modules={"model": hc.state_dict()}, optimizers={}, step=1, config={"stage": "hcflow"},
                            model_config={"model": "hcflow", "L": hc.config.L, **hc.config.to_dict()}), d / "hcflow_tiny.safetensors")
    s3f = export_model(dict(modules={"model": s3.state_dict()}, optimizers={}, step=1, config={"stage": "sr3"},
                            model_config={"kind": "sr3", **s3.config.to_dict()}), d / "sr3_tiny.safetensors")
    rs = HCFlow(HCFlowConfig.rescaling_tiny_4x())
    rsf = export_model(dict(modules={"model": rs.state_dict()}, optimizers={}, step=1, config={"stage": "hcflow"},
                            model_config={"model": "hcflow", "L": rs.config.L, **rs.config.to_dict()}), d / "hcflow_rescaling_tiny.safetensors")
    g = torch.Generator().manual_seed(1)
    save_image(d / "in.png", torch.rand(3, 8, 8, generator=g))
    (d / "hr").mkdir()
    for k in ("a", "b"): save_image(d / "hr" / f"{k}.png", torch.rand(3, 32, 32, generator=g))
    return dict(dir=d, hcflow=str(hcf), sr3=str(s3f), rescaling=str(rsf), lr=str(d / "in.png"), hr=str(d / "hr"))


@pytest.fixture
def engine(monkeypatch):
    "Counts of HCFlow's LR-only work (`lr_cache`), cached decodes and plain (uncached) decodes."
    calls = {"lr_cache": 0, "decode_cached": 0, "decode": 0}
    for name in calls:
        orig = getattr(HCFlowNet, name)
        def spy(self, *a, _orig=orig, _name=name, **kw):
            calls[_name] += 1
            return _orig(self, *a, **kw)
        monkeypatch.setattr(HCFlowNet, name, spy)
    return calls


def test_sample_hcflow_sweep_uses_the_cached_engine(files, tmp_path, engine):
    "`--model hcflow --temperature 0,0.9 --n 2`: 4 files named <stem>_hcflow_t<τ>_<i>.png; the LR work once, every decode cached."
    out = tmp_path / "s"
    assert main(["sample", files["lr"], "-o", str(out), "--model", f"hcflow:{files['hcflow']}", "--temperature", "0,0.9",
                 "--n", "2", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["in_hcflow_t0.00_000.png", "in_hcflow_t0.00_001.png",
                                                      "in_hcflow_t0.90_000.png", "in_hcflow_t0.90_001.png"]
    assert engine == {"lr_cache": 1, "decode_cached": 4, "decode": 0}


def test_sample_sr3_steps_reach_the_model(files, tmp_path, monkeypatch):
    "`--model sr3:<file> --steps 2 --n 2`: files <stem>_sr3_s2_<i>.png, and every sample ran with steps=2."
    seen, real = [], SR3.sample
    monkeypatch.setattr(SR3, "sample", lambda self, lr, n=1, steps=None, **kw: seen.append(steps) or real(self, lr, n=n, steps=steps, **kw))
    out = tmp_path / "s"
    assert main(["sample", files["lr"], "-o", str(out), "--model", f"sr3:{files['sr3']}", "--steps", "2", "--n", "2", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["in_sr3_s2_000.png", "in_sr3_s2_001.png"]
    assert seen == [2, 2]


@pytest.mark.parametrize("args, msg", [
    (["--model", "HC:{hcflow}", "--steps", "3"], "--steps: hcflow has no sampling steps"),
    (["--model", "SR3:{sr3}", "--temperature", "0.5"], "--temperature: sr3 has no temperature"),
    (["--model", "HC:{hcflow}", "--tile", "16"], "--tile is an srflow option"),
    (["--model", "HC:{rescaling}"], "an HCFlow rescaling model is not a super-resolver"),   # use srflow rescale
])
def test_sample_refuses_options_in_one_line(files, tmp_path, capsys, args, msg):
    args = [a.replace("HC:", "hcflow:").replace("SR3:", "sr3:").format(**files) for a in args]
    assert main(["sample", files["lr"], "-o", str(tmp_path / "s"), *args, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1


def test_evaluate_hcflow_and_sr3_write_srflow_columns(files, tmp_path, engine, monkeypatch):
    "`srflow evaluate` of hcflow (temperatures, LR work once per image) and sr3 (--steps reaching it): SRFlow's CSV columns, diversity."
    cols = ["image", "method", "temperature", "sample", "seed", "diverged", *DEFAULT_METRICS[:2], "lr_psnr", "diversity"]
    mets = ",".join(c for c in cols[6:])
    hc = tmp_path / "hc.csv"
    assert main(["evaluate", files["hr"], "--out", str(hc), "--model", f"hcflow:{files['hcflow']}", "--temperatures", "0,0.9",
                 "--n_samples", "2", "--metrics", mets, "--no-progress"]) == 0
    d = pd.read_csv(hc)
    assert list(d.columns) == cols
    h = d[d.method == "hcflow"]
    assert len(h) == 2 * 2 * 2 and sorted(h.temperature.unique()) == [0.0, 0.9]
    assert (h[h.temperature == 0.9].diversity > 0).all() and (h[h.temperature == 0.0].diversity == 0).all()
    assert engine == {"lr_cache": 2, "decode_cached": 4, "decode": 0}     # one LR cache per image; the 2 samples of a group in one batch
    seen, real = [], SR3.sample
    monkeypatch.setattr(SR3, "sample", lambda self, lr, n=1, steps=None, **kw: seen.append((n, steps)) or real(self, lr, n=n, steps=steps, **kw))
    s3 = tmp_path / "s3.csv"
    assert main(["evaluate", files["hr"], "--out", str(s3), "--model", f"sr3:{files['sr3']}", "--steps", "2",
                 "--n_samples", "2", "--metrics", mets, "--no-progress"]) == 0
    d = pd.read_csv(s3)
    assert list(d.columns) == cols and seen == [(2, 2), (2, 2)]
    s = d[d.method == "sr3"]
    assert len(s) == 4 and s.temperature.isna().all() and (s.diversity > 0).all()
    assert json.loads((tmp_path / "s3.run.json").read_text())["config"]["steps"] == 2


def test_evaluate_refuses_the_wrong_knob(files, tmp_path, capsys):
    for args, msg in ((["--model", f"sr3:{files['sr3']}", "--temperatures", "0.5"], "--temperatures: sr3 has no temperature"),
                      (["--model", f"hcflow:{files['hcflow']}", "--steps", "2"], "--steps: hcflow has no sampling steps"),
                      (["--model", f"sr3:{files['sr3']}", "--steps", "100000"], "--steps 100000: sr3's schedule has")):
        assert main(["evaluate", files["hr"], "--out", str(tmp_path / "e.csv"), *args, "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1
    assert not (tmp_path / "e.run.json").exists()                           # refused before anything is written


def test_demo_compare_hcflow_uses_the_cached_engine(files, tmp_path, engine):
    "`run_demo(compare='hcflow:<file>')`: HCFlow's rows through HCFlowSR's LR cache (one per image), never the plain decode."
    from srflow_nb.checkpoints import save_model
    from srflow_nb.demo import run_demo
    from srflow_nb.testing import tiny_model
    save_model(tiny_model(seed=0), tmp_path / "tiny.safetensors")
    res = run_demo(tmp_path / "demo", quick=True, checkpoint=str(tmp_path / "tiny.safetensors"), images=files["hr"],
                   temperatures=[0.9], n_samples=3, progress=False, crop=32, limit=1, compare=f"hcflow:{files['hcflow']}")
    assert len(res["evaluation"].query("method == 'hcflow'")) == 3
    assert engine["lr_cache"] >= 1 and engine["decode"] == 0
    assert engine["decode_cached"] >= 1
