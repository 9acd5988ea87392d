"""Full-mode dry run of the reproduction set-up on a tiny fake DIV2K layout and a fake official checkpoint:
paths, the run record, the CSV schema and per-image resumption (no GPU, no real data needed)."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from srflow_nb.checkpoints import official_state_dict
from srflow_nb.demo import repro_setup, srflow_sampler
from srflow_nb.findings import table2
from srflow_nb.evaluate import evaluate
from srflow_nb.testing import tiny_model

METRICS = ["psnr", "ssim", "lpips", "lr_psnr", "diversity"]


@pytest.fixture
def fake_full(tmp_path, monkeypatch):
    hr_dir = tmp_path / "DIV2K" / "DIV2K_valid_HR"
    hr_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):                       # odd sizes: the loader crops to the scale
        Image.fromarray((rng.random((34 + 4 * i, 37, 3)) * 255).astype(np.uint8)).save(hr_dir / f"08{i + 1:02d}.png")
    (hr_dir / "notes.txt").write_text("not an image")
    torch.save(official_state_dict(tiny_model(seed=0)), tmp_path / "SRFlow_fake_4X.pth")
    for k in ("SRFLOW_IMAGES", "SRFLOW_CHECKPOINT", "SRFLOW_RRDB_CHECKPOINT", "SRFLOW_OFFICIAL_RRDB", "SRFLOW_LIMIT"): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("SRFLOW_FULL", "1")
    monkeypatch.setenv("SRFLOW_DIV2K", str(tmp_path / "DIV2K"))
    monkeypatch.setenv("SRFLOW_OFFICIAL", str(tmp_path / "SRFlow_fake_4X.pth"))
    monkeypatch.setenv("SRFLOW_DEVICE", "cpu")
    return tmp_path


def _run(R, temps=(0.0, 0.9)):
    calls = []
    f = srflow_sampler(R.model)
    def counting(lr, n, t, g):
        calls.append(t); return f(lr, n, t, g)
    df = evaluate(counting, R.dataset, R.scale, list(temps), 2, metrics=METRICS, out_csv=R.out / "evaluation.csv",
                  seed=R.seed, baselines=R.baselines, device=R.device, resume=R.resume, progress=False)
    return df, calls


def test_full_mode_paths_schema_and_resume(fake_full):
    R = repro_setup("20_repro.table2", results_root=fake_full / "results", temperatures=[0.0, 0.9])
    assert R.full and R.resume and R.device.type == "cpu"
    assert R.out == fake_full / "results" / "20_repro.table2" / "full"
    assert [d["name"] for d in R.dataset] == ["0801", "0802", "0803"]            # sorted, the .txt skipped
    assert all(d["hr"].shape[-2] % 4 == 0 and d["hr"].shape[-1] % 4 == 0 for d in R.dataset)
    run = json.loads((R.out / "run.json").read_text())
    assert run["full"] is True and run["checkpoint"].endswith("SRFlow_fake_4X.pth") and run["seed"] == 0
    assert {"git_sha", "torch", "device"} <= set(run)

    df, calls = _run(R)
    assert len(calls) == 3 * 2
    csv = pd.read_csv(R.out / "evaluation.csv")
    assert list(csv.columns) == ["image", "method", "temperature", "sample", "seed", "diverged", *METRICS]
    assert len(csv) == 3 * (2 + 2 * 2)                                        # 2 baselines + 2 temps x 2 samples
    assert set(csv.method) == {"bicubic", "rrdb", "srflow"}
    assert csv[csv.method == "srflow"].lr_psnr.notna().all()
    assert list(table2(csv).index) == ["Bicubic", "RRDB", "SRFlow τ=0", "SRFlow τ=0.9"]


def _resume(R, root):
    df, calls = _run(R)
    assert len(calls) == 3 * 2
    csv = pd.read_csv(R.out / "evaluation.csv", dtype={"image": str})
    # resumption: a partial CSV (as after a crash) is completed without redoing the finished images
    last = sorted(csv.image.astype(str))[-1]
    keep = csv[csv.image.astype(str) != last]
    keep.to_csv(R.out / "evaluation.csv", index=False)
    R2 = repro_setup(R.out.parent.name, results_root=root, temperatures=[0.0, 0.9])
    df2, calls2 = _run(R2)
    assert len(calls2) == 2                                                  # only 0803's two temperatures
    pd.testing.assert_frame_equal(df2.sort_values(["image", "method", "temperature", "sample"]).reset_index(drop=True),
                                  df.sort_values(["image", "method", "temperature", "sample"]).reset_index(drop=True),
                                  check_dtype=False, atol=1e-6)
    # a changed configuration is refused instead of silently mixed
    with pytest.raises(ValueError, match="different configuration"):
        _run(R2, temps=(0.0, 0.8))


# regression: evaluate() once read resumed CSVs without dtype={"image": str}, so DIV2K names "0801" came back as 801
def test_full_mode_resume_div2k_names(fake_full):
    _resume(repro_setup("20_repro.table2", results_root=fake_full / "results"), fake_full / "results")


def test_full_mode_resume(fake_full, monkeypatch):
    src, dst = fake_full / "DIV2K" / "DIV2K_valid_HR", fake_full / "named"
    dst.mkdir()
    for p in sorted(src.glob("*.png")): (dst / f"img_{p.name}").write_bytes(p.read_bytes())
    monkeypatch.setenv("SRFLOW_IMAGES", str(dst))
    R = repro_setup("20_repro.table2", results_root=fake_full / "results")
    assert [d["name"] for d in R.dataset] == ["img_0801", "img_0802", "img_0803"]
    _resume(R, fake_full / "results")


def test_full_mode_errors(fake_full, monkeypatch):
    monkeypatch.delenv("SRFLOW_OFFICIAL")
    with pytest.raises(KeyError, match="SRFLOW_OFFICIAL"):
        repro_setup("x", results_root=fake_full / "results")
    monkeypatch.delenv("SRFLOW_DIV2K")
    with pytest.raises(KeyError, match="SRFLOW_DIV2K"):
        repro_setup("x", results_root=fake_full / "results")
    monkeypatch.setenv("SRFLOW_DIV2K", str(fake_full / "nope"))
    monkeypatch.setenv("SRFLOW_OFFICIAL", str(fake_full / "SRFlow_fake_4X.pth"))
    with pytest.raises(FileNotFoundError, match="DIV2K_valid_HR"):
        repro_setup("x", results_root=fake_full / "results")


def test_full_mode_limit(fake_full, monkeypatch):
    monkeypatch.setenv("SRFLOW_LIMIT", "2")
    R = repro_setup("x", results_root=fake_full / "results")
    assert len(R.dataset) == 2
