"""The command line as a user meets it: every command `srflow --help` lists runs (`--help` and a short real run on the
bundled data), every `srflow ...` line of the README runs, expected errors are one line naming the file or option
(exit 1; usage errors exit 2), and restoration with the bundled checkpoint beats its noisy input."""
import json, os, re, shlex, shutil, subprocess, sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from srflow_nb.cli import COMMANDS, main, parser, resolve

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "data" / "results"
ENV = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
ENV.pop("SRFLOW_DEBUG", None)


def srflow(*args, cwd=None, timeout=600):
    "Run `srflow ARGS` as a user would (the console script's `main`, in a fresh interpreter): CompletedProcess."
    cmd = [sys.executable, "-m", "srflow_nb.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd or ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def one_line_error(r, command, *needles):
    "Exit 1, stderr is exactly one `srflow <command>: error: ...` line containing every needle, no traceback."
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith(f"srflow {command}: error: "), r.stderr[-2000:]
    for n in needles: assert str(n) in lines[0], (n, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    "A folder with the inputs the README's placeholders name: a small LR `in.png`, a noisy `noisy.png` (+ its clean image)."
    from srflow_nb.datasets import demo_images
    from srflow_nb.srdata import add_gaussian_noise
    from srflow_nb.images import load_image, quantize8, save_image, to_tensor
    d = tmp_path_factory.mktemp("cli")
    clean = to_tensor(load_image(demo_images("test")[0]))           # chelsea, 256x256: image 0 of 25_repro.restoration
    save_image(d / "in.png", clean[0, :, 96:128, 96:128])           # a 32x32 LR input: seconds to super-resolve
    noisy = quantize8(add_gaussian_noise(clean, 20 / 255, generator=torch.Generator().manual_seed(0)), keep_dtype=True)
    save_image(d / "clean.png", clean[0]); save_image(d / "noisy.png", noisy[0])
    (d / "data").symlink_to(ROOT / "data")                           # README paths such as data/demo/test
    (d / "small").mkdir()
    for p in demo_images("test")[:2]: save_image(d / "small" / p.name, to_tensor(load_image(p))[0, :, :64, :64])
    return d


# ---------------------------------------------------------------- the registry and the help

def test_help_lists_exactly_the_registry(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert main(["--help"]) == 0 and capsys.readouterr().out == out
    listed = [re.split(r"\s{2,}", l.strip())[0] for l in out.splitlines() if l.startswith("  ")]
    assert listed == list(COMMANDS)


@pytest.mark.parametrize("group", sorted({k.split()[0] for k in COMMANDS if len(k.split()) > 1}))
def test_every_command_group_answers_help(group, capsys):
    "`srflow data --help` (a group of sub-commands) lists its commands and exits 0; bare `srflow data` is a usage error."
    assert main([group, "--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"srflow {k}" in out for k in COMMANDS if k.split()[0] == group)
    assert main([group]) == 2


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_exists_and_has_help(command, capsys):
    fn = resolve(command)                                             # importable: never "not available"
    assert callable(fn) and fn.__doc__
    with pytest.raises(SystemExit) as e: main([*command.split(), "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"srflow {command}" in out or "usage:" in out
    import inspect                                                    # generated from the signature: every parameter is an option
    opts = {o for a in parser(command)._actions for o in a.option_strings} | {a.dest for a in parser(command)._actions}
    for name in inspect.signature(fn).parameters:
        assert name in opts or f"--{name}" in opts or f"--no-{name}" in opts, (command, name)


def test_import_is_light():
    r = subprocess.run([sys.executable, "-c", "import sys, srflow_nb.cli; print('torch' in sys.modules)"],
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "False", r.stderr


# ---------------------------------------------------------------- a real short run of every command

SMOKE = {   # command -> (args run in the work folder, files it must write)
    "info": ([], []),
    "sample": (["in.png", "--scale", "4", "--temperature", "0.8", "--n", "2", "--seed", "7", "-o", "s_out/"], ["s_out/in_t0.80_000.png"]),
    "restore": (["noisy.png", "-o", "r.png", "--seed", "0"], ["r.png"]),
    "train": (["--preset", "demo_rrdb", "--data", "data/demo/train", "--out", "t_run", "--iterations", "2",
               "--set", "batch_size=2", "patch_size=32", "log_every=1", "--no-progress"], ["t_run/model_config.json"]),
    "evaluate": (["small", "--model", "demo-4x", "--baselines", "bicubic,rrdb", "--temperatures", "0,0.9", "--n_samples", "2",
                  "--metrics", "psnr,lpips,diversity", "-o", "e.csv", "--no-progress"], ["e.csv", "e.run.json"]),
    "demo": (["--quick", "--images", "small", "--temperatures", "0,0.9", "-o", "d_out", "--no-progress"],
             ["d_out/evaluation.csv", "d_out/table2.csv", "d_out/figures/comparison.png"]),
    "data build-demo": (["--verify_only"], []),                      # a full rebuild downloads the registry packages
    "data build-train": (["--manifest_only"], []),                   # the committed manifests and held-out crops; a build downloads
    "assets": (["--verify_only"], []),                                # no download: the cached assets are verified
    "rescale": (["roundtrip", "clean.png", "-o", "rs_out"], ["rs_out/clean_lr.png", "rs_out/clean_hr.png", "rs_out/roundtrip.csv"]),
    "export": (["run.pt", "--out", "x_run.safetensors"], ["x_run.safetensors"]),
}


def _trainer_checkpoint(work) -> Path:
    "`run.pt`: a trainer checkpoint (a tiny HCFlow SR run) for `srflow export` to read."
    from srflow_nb.checkpoints import save_checkpoint
    from srflow_nb.hcflow_train import HCFlowTask, hcflow_demo_sr
    from srflow_nb.testing import trainer_checkpoint
    if not (work / "run.pt").exists(): save_checkpoint(work / "run.pt", trainer_checkpoint(HCFlowTask.create(hcflow_demo_sr(), "sr_tiny_4x")))
    return work / "run.pt"


def _rescale_checkpoint(work) -> list[str]:
    "The bundled rescaling model when it is installed, else a tiny random-weight one: the command runs either way."
    from srflow_nb.checkpoints import PRETRAINED, export_model, pretrained_dir
    if (pretrained_dir() / PRETRAINED["demo-4x-hcflow-rescaling"]).exists(): return []
    from srflow_nb.hcflow_train import HCFlowTask, hcflow_demo_rescaling
    from srflow_nb.testing import trainer_checkpoint
    export_model(trainer_checkpoint(HCFlowTask.create(hcflow_demo_rescaling(), "rescaling_tiny_4x")), work / "resc_tiny.safetensors")
    return ["--checkpoint", "resc_tiny.safetensors"]


def test_smoke_table_covers_the_registry():
    assert set(SMOKE) == set(COMMANDS)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_runs(command, work):
    if command == "assets":
        from srflow_nb.assets import ASSETS, cache_dir
        if not all((cache_dir() / ASSETS[n]["file"]).exists() for n in ("lpips_alex", "niqe", "brisque")):
            pytest.skip("metric assets not fetched on this machine (tools/setup_assets.sh)")
    args, files = SMOKE[command]
    if command == "rescale": args = args + _rescale_checkpoint(work)
    if command == "export": _trainer_checkpoint(work)
    r = srflow(*command.split(), *args, cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    for f in files: assert (work / f).exists(), (command, f)
    if command == "info": assert json.loads(r.stdout)["srflow_nb"]
    if command == "evaluate":
        df = pd.read_csv(work / "e.csv")
        assert len(df) == 2 * (2 + 2 * 2) and set(df.method) == {"bicubic", "rrdb", "srflow"}


# ---------------------------------------------------------------- every README command line

def readme_commands() -> list[str]:
    lines, block = [], False
    for l in (ROOT / "README.md").read_text().splitlines():
        if l.startswith("```"): block = not block; continue
        if block and l.startswith("srflow"): lines.append(l.split("  #")[0].strip())
    return lines

FAST = {   # README command -> options appended so that CI runs it in seconds (later options override earlier ones)
    "train": ["--iterations", "1", "--set", "batch_size=2", "patch_size=32", "--no-progress"],
    "evaluate": ["--limit", "1", "--metrics", "psnr,lpips", "--no-progress"],
    "demo": ["--images", "small", "--temperatures", "0,0.9", "--no-progress"],
    "data build-demo": ["--verify_only"],
    "data build-train": ["--manifest_only"],
    "assets": ["--verify_only"],
    "rescale": [],                  # + the bundled rescaling model, else a tiny one (`_rescale_checkpoint`)
    "export": ["--overwrite"],      # run.pt: a tiny trainer checkpoint (`_trainer_checkpoint`)
}


def test_readme_lists_every_command():
    named = {" ".join(shlex.split(c)[1:3]) if shlex.split(c)[1:2] == ["data"] else (shlex.split(c) + [""])[1] for c in readme_commands()}
    assert set(COMMANDS) <= named, set(COMMANDS) - named


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_runs(line, work):
    args = shlex.split(line)[1:]
    key = next((k for k in sorted(FAST, key=len, reverse=True) if args[:len(k.split())] == k.split()), None)
    if key == "assets":
        from srflow_nb.assets import ASSETS, cache_dir
        if not all((cache_dir() / ASSETS[n]["file"]).exists() for n in ("lpips_alex", "niqe", "brisque")):
            pytest.skip("metric assets not fetched on this machine")
    extra = _rescale_checkpoint(work) if key == "rescale" else []
    if key == "export": _trainer_checkpoint(work)
    r = srflow(*args, *FAST.get(key, []), *extra, cwd=work)
    assert r.returncode == 0, (line, r.stderr[-3000:])


# ---------------------------------------------------------------- restoration must restore (issue 14's seeded bug)

def _psnr(a, b):
    from srflow_nb.metrics import psnr
    return float(psnr(a, b)[0])


def test_restore_beats_the_noisy_input(work):
    "The committed Table 5 analog gains +4.13 dB on chelsea (image 0); a no-op restore gains 0 and fails."
    from srflow_nb.images import load_image, to_tensor
    committed = pd.read_csv(RESULTS / "25_repro.restoration" / "quick" / "per_image.csv")
    row = committed[committed.image == 0].set_index("method").PSNR
    gain_committed = row["Restored"] - row["Original"]
    assert gain_committed > 2
    r = srflow("restore", "noisy.png", "-o", "restored_check.png", "--seed", "0", "--temperature", "0.8", cwd=work)
    assert r.returncode == 0, r.stderr[-2000:]
    clean, noisy, restored = (to_tensor(load_image(work / f)) for f in ("clean.png", "noisy.png", "restored_check.png"))
    p_noisy, p_restored = _psnr(noisy, clean), _psnr(restored, clean)
    assert abs(p_noisy - row["Original"]) < 1e-3                      # the same noisy image as the committed run
    assert p_restored - p_noisy >= gain_committed / 2, (p_restored, p_noisy, gain_committed)


def test_table5_reproduces_the_committed_row():
    "table5 on image 0 gives the committed per-image numbers (same seed, same draws)."
    from srflow_nb.checkpoints import load_pretrained
    from srflow_nb.demo import demo_dataset
    from srflow_nb.restore import table5
    committed = pd.read_csv(RESULTS / "25_repro.restoration" / "quick" / "per_image.csv")
    model = load_pretrained("demo-4x").eval()
    got = table5(model, [demo_dataset("test", None, 1, 16)[0]["hr"]], seed=0).attrs["per_image"]
    want = committed[committed.image == 0].reset_index(drop=True)
    np.testing.assert_allclose(got[["PSNR", "SSIM", "LPIPS"]].values, want[["PSNR", "SSIM", "LPIPS"]].values, atol=2e-4)


# ---------------------------------------------------------------- bad input: one line, the right exit code

@pytest.fixture(scope="module")
def bad(work):
    d = work / "bad"; d.mkdir()
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    (d / "random.pth").write_bytes(bytes(range(256)) * 16)   # not a pickle, not a zip: "is not a PyTorch checkpoint"
    (d / "empty.pth").write_bytes(b"")
    (d / "file.txt").write_text("x")
    from srflow_nb.checkpoints import pretrained_dir
    (d / "trunc.safetensors").write_bytes((pretrained_dir() / "demo_4x.safetensors").read_bytes()[:5000])
    return d


@pytest.mark.parametrize("args, needles", [
    (["restore", "bad/missing.png"], ["bad/missing.png"]),
    (["restore", "bad/corrupt.png"], ["bad/corrupt.png"]),
    (["restore", "noisy.png", "--temperature", "-1"], ["--temperature", "-1"]),
    (["restore", "noisy.png", "--strategies", "spatial,foo"], ["--strategies", "spatial,foo"]),
    (["restore", "noisy.png", "--temperature_is", "tau"], ["--temperature_is"]),
    (["restore", "noisy.png", "-o", "bad"], ["--output", "is a folder"]),
    (["restore", "noisy.png", "-o", "bad/file.txt/out.png"], ["--output", "is not a folder"]),
    (["restore", "noisy.png", "-o", "out.jpg"], ["--output", "only .png"]),
    (["restore", "noisy.png", "--checkpoint", "bad/random.pth"], ["bad/random.pth", "is not a PyTorch checkpoint"]),
    (["restore", "noisy.png", "--checkpoint", "bad/empty.pth"], ["bad/empty.pth"]),
    (["restore", "noisy.png", "--checkpoint", "bad/trunc.safetensors"], ["bad/trunc.safetensors"]),
    (["restore", "noisy.png", "--checkpoint", "no-such-model"], ["no-such-model"]),
    (["evaluate", "bad/none"], ["bad/none", "not a folder"]),
    (["evaluate", "small", "--model", "bicubic", "--baselines", "", "-o", "bad"], ["bad"]),
    (["evaluate", "small", "--model", "bicubic", "--baselines", "", "--metrics", "fid"], ["unknown metrics"]),
    (["evaluate", "small", "--temperatures", "hot"], ["--temperatures"]),
    (["demo", "-o", "bad/file.txt"], ["bad/file.txt", "is a file"]),
    (["demo", "--images", "bad/none"], ["--images", "bad/none"]),
    (["sample", "in.png", "--model", "esrgan", "--n", "2"], ["--n", "esrgan is deterministic", "<stem>_esrgan.png"]),
    (["sample", "in.png", "--model", "esrgan", "--temperature", "0.5"], ["--temperature", "esrgan has no temperature"]),
    (["sample", "in.png", "--model", "sr3:none.pt", "--temperature", "0.5"], ["--temperature", "sr3 has no temperature", "--steps"]),
    (["sample", "in.png", "--model", "hcflow:none.pt", "--steps", "5"], ["--steps", "hcflow has no sampling steps"]),
    (["sample", "in.png", "--steps", "5"], ["--steps", "srflow has no sampling steps"]),
    (["sample", "in.png", "--model", "rrdb", "--tile", "16"], ["--tile is an srflow option", "rrdb"]),
    (["sample", "in.png", "--model", "bicubic", "--precision", "bf16"], ["--precision is an srflow option"]),
    (["sample", "in.png", "--model", "hcflow:none.pt", "--temperature", "[0.9,0.8]"], ["--temperature", "srflow only"]),
    (["sample", "in.png", "--model", "gan"], ["--model gan", "unknown model", "esrgan"]),
    (["sample", "in.png", "--model", "sr3:bad/none.pt"], ["bad/none.pt", "not found"]),
    (["sample", "in.png", "--model", "esrgan:bad/random.pth"], ["bad/random.pth"]),
    (["sample", "in.png", "--model", "esrgan:a.pt", "--checkpoint", "b.pt"], ["two checkpoints"]),
])
def test_expected_errors_are_one_line(args, needles, work, bad, monkeypatch, capsys):
    monkeypatch.chdir(work)                                            # in-process `main` (the console script's function)
    rc = main(args)
    r = subprocess.CompletedProcess(args, rc, *capsys.readouterr())
    line = one_line_error(r, args[0], *needles)
    assert "weights_only" not in line and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, option", [
    (["restore", "noisy.png", "--temperature", "abc"], "--temperature"),
    (["evaluate", "small", "--n_samples", "two"], "--n_samples"),
    (["restore", "noisy.png", "--no-such-option"], "--no-such-option"),
])
def test_usage_errors_exit_2_naming_the_option(args, option, work, monkeypatch, capsys):
    monkeypatch.chdir(work)
    with pytest.raises(SystemExit) as e: main(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and option in err and "Traceback" not in err, err


def test_debug_shows_the_traceback(work):
    r = subprocess.run([sys.executable, "-m", "srflow_nb.cli", "restore", "bad/missing.png"], cwd=work,
                       env={**ENV, "SRFLOW_DEBUG": "1"}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_bugs_keep_their_traceback(monkeypatch, capsys):
    import srflow_nb.cli as cli
    def broken(x: int = 1):
        "A command with a bug."
        return 1 / 0
    monkeypatch.setitem(cli.COMMANDS, "broken", ("tests_broken:broken", "a bug"))
    monkeypatch.setattr(cli, "resolve", lambda c: broken)
    with pytest.raises(ZeroDivisionError): main(["broken"])


# ---------------------------------------------------------------- srflow sample --model: every family

@pytest.fixture(scope="module")
def tiny_families(tmp_path_factory):
    "Tiny random-weight HCFlow (an exported file) and SR3 (a trainer checkpoint) models: their bundles do not exist yet."
    from srflow_nb.checkpoints import export_model, save_checkpoint
    from srflow_nb.hcflow_train import HCFlowTask, hcflow_demo_sr
    from srflow_nb.sr3_train import SR3Task, sr3_demo
    from srflow_nb.testing import trainer_checkpoint
    d = tmp_path_factory.mktemp("families")
    hc_run = trainer_checkpoint(HCFlowTask.create(hcflow_demo_sr(), "sr_tiny_4x"))
    s3_run = trainer_checkpoint(SR3Task.create(sr3_demo(), "tiny"))
    return {"hcflow": export_model(hc_run, d / "hcflow_tiny.safetensors"), "sr3": save_checkpoint(d / "sr3_tiny.pt", s3_run)}


FAMILIES = {   # --model -> (extra options, files written for in.png with --n 2 where the family samples)
    "srflow": ([], ["in_t0.80_000.png", "in_t0.80_001.png"]),
    "esrgan": ([], ["in_esrgan.png"]),
    "rrdb": ([], ["in_rrdb.png"]),
    "bicubic": ([], ["in_bicubic.png"]),
    "hcflow": (["--temperature", "0.8"], ["in_hcflow_t0.80_000.png", "in_hcflow_t0.80_001.png"]),
    "sr3": (["--steps", "3"], ["in_sr3_s3_000.png", "in_sr3_s3_001.png"]),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_sample_every_model_family(family, work, tiny_families):
    "`srflow sample --model F` writes finite, non-constant images of 4x the input's size, named as documented; samples differ."
    from srflow_nb.images import load_image, to_tensor
    from srflow_nb.superresolvers import load_superresolver
    extra, files = FAMILIES[family]
    spec = f"{family}:{tiny_families[family]}" if family in tiny_families else family
    out = work / f"fam_{family}"
    r = srflow("sample", "in.png", "--model", spec, *extra, *(["--n", "2"] if len(files) == 2 else []), "--seed", "3",
               "--device", "cpu", "--quiet", "-o", out, cwd=work)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == files
    lr = to_tensor(load_image(work / "in.png"))
    ims = [to_tensor(load_image(out / f)) for f in files]
    for im in ims:
        assert im.shape == (1, 3, 4 * lr.shape[-2], 4 * lr.shape[-1]) and torch.isfinite(im).all() and im.std() > 0.01
    if len(ims) == 2: assert not torch.equal(*ims)                     # two seeds, two samples
    else:                                                              # deterministic: the protocol's image, 8-bit
        with torch.inference_mode(): want = load_superresolver(spec, "cpu").sample(lr)[0]
        assert (ims[0] - want).abs().max() <= 1 / 255 + 1e-6


def test_sample_diverged_hcflow_is_refused(work, tiny_families):
    "A diverged HCFlow sample (temperature 1e38: Inf latents) is not written: one line, exit 1; --keep_nonfinite writes it."
    spec = f"hcflow:{tiny_families['hcflow']}"
    r = srflow("sample", "in.png", "--model", spec, "--temperature", "1e38", "--device", "cpu", "--quiet", "-o", "hc_bad", cwd=work)
    one_line_error(r, "sample", "diverged", "in_hcflow_t", "--keep_nonfinite")
    assert not list((work / "hc_bad").glob("*.png"))
    r = srflow("sample", "in.png", "--model", spec, "--temperature", "1e38", "--device", "cpu", "--quiet", "--keep_nonfinite", "-o", "hc_kept", cwd=work)
    assert r.returncode == 0 and len(list((work / "hc_kept").glob("*.png"))) == 1, r.stderr[-2000:]


def test_sample_index_alone_reproduces_the_run(work, tiny_families):
    "Sample 1 of an HCFlow run, regenerated alone with --first_index 1 --n 1, is the same image (as for SRFlow)."
    from srflow_nb.images import load_image
    spec = f"hcflow:{tiny_families['hcflow']}"
    for args, out in ((["--n", "2"], "hc_run"), (["--first_index", "1"], "hc_one")):
        r = srflow("sample", "in.png", "--model", spec, "--seed", "3", "--device", "cpu", "--quiet", *args, "-o", out, cwd=work)
        assert r.returncode == 0, r.stderr[-3000:]
    np.testing.assert_array_equal(load_image(work / "hc_one" / "in_hcflow_t0.80_001.png"), load_image(work / "hc_run" / "in_hcflow_t0.80_001.png"))
    assert not np.array_equal(load_image(work / "hc_run" / "in_hcflow_t0.80_000.png"), load_image(work / "hc_run" / "in_hcflow_t0.80_001.png"))


# ---------------------------------------------------------------- the README's "Library in ten lines"
def test_readme_library_snippet_runs(tmp_path, monkeypatch):
    "The README's library snippet runs as written, on a tiny official-format `SRFlow_DF2K_4X.pth`, and its comments hold."
    import torch
    from srflow_nb.checkpoints import official_state_dict
    from srflow_nb.model import SRFlow, SRFlowConfig
    text = (ROOT / "README.md").read_text()
    block = text.split("## Library in ten lines", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    assert 'load_official("SRFlow_DF2K_4X.pth")' in block
    torch.manual_seed(0)
    cfg = SRFlowConfig(scale=4, nf=8, nb=4, gc=4, stack_blocks=(0, 1, 2, 3), L=3, K=2, n_transition=1, hidden_channels=8)
    torch.save(official_state_dict(SRFlow(cfg).mark_initialized()), tmp_path / "SRFlow_DF2K_4X.pth")
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec(compile(block, "README.md", "exec"), ns)
    assert ns["srs"].shape == (4, 1, 3, 256, 256) and ns["nll"].shape == (1,) and callable(ns["sample"])
    with torch.inference_mode():
        torch.testing.assert_close(ns["model"].decode(ns["latents"], ns["lr"]), ns["srs"][0], rtol=1e-4, atol=1e-4)


_NO_LATENTS = "a hcflow model cannot do 'latents' (families that can: srflow)"

@pytest.mark.parametrize("args,expected", [
    (["sample", "in.png", "--model", "srflow", "--checkpoint", "demo-4x-hcflow", "-o", "out_wrong_family"], _NO_LATENTS),
    (["restore", "noisy.png", "--checkpoint", "demo-4x-hcflow", "-o", "restored_wrong_family.png"], _NO_LATENTS),
    (["evaluate", "small", "--model", "srflow:demo-4x-hcflow", "--out", "wrong_family.csv"], "a hcflow model, where a srflow model is needed")])
def test_a_checkpoint_of_another_family_is_one_line(args, expected, work):
    "An HCFlow file where an SRFlow model (or its latents) is needed: one line naming both, nothing written (issue 26's three cases)."
    from srflow_nb.checkpoints import PRETRAINED, pretrained_dir
    if not (pretrained_dir() / PRETRAINED["demo-4x-hcflow"]).exists(): pytest.fail("the bundled demo-4x-hcflow is missing")
    before = sorted(p.name for p in work.iterdir())
    one_line_error(srflow(*args, cwd=work), args[0], expected)
    assert sorted(p.name for p in work.iterdir()) == before
