"""`tools/campaign.py`, the resumable training campaign (issue 24), on its smoke settings (4 steps a stage, the demo images).

What a campaign must not get wrong: a stage that starts from another's `best.pt`, the budget snapshots (one per
milestone passed, never twice, each a loadable checkpoint), `DONE`, a resumed stage continuing its step count, and the
held-out evaluation reading those files."""
import importlib.util, json, os, re, subprocess, sys
from pathlib import Path

import pytest
import torch

from srflow_nb.checkpoints import list_checkpoints, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def campaign():
    spec = importlib.util.spec_from_file_location("campaign", ROOT / "tools" / "campaign.py")
    mod = sys.modules["campaign"] = importlib.util.module_from_spec(spec)   # registered first: its dataclasses look it up
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def campaign_eval():
    "tools/campaign_eval.py as a module (its folder on sys.path while it imports, as when run as a script)."
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        spec = importlib.util.spec_from_file_location("campaign_eval_mod", ROOT / "tools" / "campaign_eval.py")
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    finally: sys.path.remove(str(ROOT / "tools"))
    return mod


def _run(runs, *args):
    env = {**os.environ, "SMOKE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "tools/campaign.py"), "run", "--runs", str(runs), *args],
                          env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    "The rrdb and srflow stages on their smoke settings, with two tiny budget milestones and one never reached."
    runs = tmp_path_factory.mktemp("campaign")
    r = _run(runs, "--stage", "rrdb", "srflow", "--milestones", "1e-9", "2e-9", "1000")
    assert r.returncode == 0, r.stderr[-2000:]
    (runs / "stdout.log").write_text(r.stdout)
    return runs


def test_progress_lines_count_diverged_samples(smoke_runs):
    "The line after each chunk has the validation's metrics and its diverged-sample counts (ints, which a float-only filter dropped)."
    lines = [l for l in (smoke_runs / "stdout.log").read_text().splitlines() if l.startswith("[srflow] step ")]
    assert lines and all(re.search(r" t0_psnr=[\d.]+ .* t0\.9_diverged=\d+\b", l) for l in lines), lines


def test_smoke_rrdb_then_srflow_with_budget_snapshots(smoke_runs):
    tmp_path = smoke_runs
    for stage in ("rrdb", "srflow"):
        out = tmp_path / stage
        assert json.loads((out / "DONE").read_text())["step"] == 4
        rows = [json.loads(l) for l in (out / "budget" / "budget.jsonl").read_text().splitlines()]
        assert [x["milestone_h"] for x in rows] == [1e-9, 2e-9]                 # each passed milestone once; 1000 h not reached
        for x in rows:
            ck = load_checkpoint(out / "budget" / x["file"])
            assert ck["step"] == x["step"] and ck["cpu_time"] <= x["cpu_s"] + 1
    flow = load_checkpoint(list_checkpoints(tmp_path / "srflow" / "checkpoints")[-1])
    assert flow["config"]["init_from"] == str(tmp_path / "rrdb" / "best.pt")   # srflow starts from the rrdb stage
    again = _run(tmp_path, "--stage", "rrdb", "srflow")                           # finished stages are not re-run
    assert again.returncode == 0 and "step" not in again.stdout


def test_esrgan_8x_fine_tunes_the_8x_rrdb(tmp_path, campaign):
    "Table 2's 8x ESRGAN: an 8x generator (HR patches of 128) that starts from exactly the rrdb_8x stage's best.pt, and trains."
    r = _run(tmp_path, "--stage", "rrdb_8x")
    assert r.returncode == 0, r.stderr[-2000:]
    stage = campaign.stages(tmp_path)["esrgan_8x"]
    assert stage.after == ("rrdb_8x",) and stage.bundle == "demo-8x-esrgan"
    task, cfg = stage.make(campaign._overrides(stage, smoke=True))
    assert cfg.scale == 8 and cfg.patch_size == 128 and task.generator.scale == 8
    rrdb = load_checkpoint(tmp_path / "rrdb_8x" / "best.pt")["modules"]["model"]
    g = task.generator.state_dict()
    assert {f"encoder.{k}" for k in g} <= set(rrdb)
    assert all(torch.equal(v, rrdb[f"encoder.{k}"]) for k, v in g.items())     # the L1 generator's weights, bit for bit
    r = _run(tmp_path, "--stage", "esrgan_8x")
    assert r.returncode == 0 and json.loads((tmp_path / "esrgan_8x" / "DONE").read_text())["step"] == 4, r.stderr[-2000:]


def test_a_stopped_stage_resumes_where_it_stopped(tmp_path, campaign):
    stage = campaign.stages(tmp_path)["rrdb"]
    make = stage.make
    short = campaign.Stage(stage.name, stage.bundle, lambda over: make({**over, "iterations": 2}))
    tr = campaign.run_stage(short, tmp_path, smoke=True, chunk=1, milestones=(1e-9,))
    assert tr.step == 2 and (tmp_path / "rrdb" / "DONE").exists()
    (tmp_path / "rrdb" / "DONE").unlink()
    tr = campaign.run_stage(stage, tmp_path, smoke=True, chunk=1, milestones=(1e-9, 2e-9))
    assert tr.resumed_from is not None and tr.resumed_from.name == "step_00000002.pt" and tr.step == 4
    rows = [json.loads(l) for l in (tmp_path / "rrdb" / "budget" / "budget.jsonl").read_text().splitlines()]
    assert [x["milestone_h"] for x in rows] == [1e-9, 2e-9]                     # the first milestone is not taken again


def test_flow_stages_carry_their_dequantisation_noise(tmp_path, campaign):
    "srflow_8x trains with the paper's noise (uniform, 8 grey levels wide: std 4/sqrt(3) levels, App. A); the 4x flow stage keeps the one level it was trained with."
    st = campaign.stages(tmp_path)
    assert st["srflow_8x"].make({})[1].dequant_scale == 8 / 256
    assert st["srflow"].make({})[1].dequant_scale == 1 / 256


def _weights(out):
    return load_checkpoint(list_checkpoints(out / "checkpoints")[-1])["modules"]["model"]


def test_carried_state_resumes_on_a_new_machine_bit_for_bit(tmp_path, campaign, monkeypatch):
    """`carry` then `restore` into an empty runs folder (a new machine): the stage goes on from the carried step and ends
    with the weights of an uninterrupted run; carrying again changes nothing; local state is never overwritten."""
    run_task = campaign.run_task
    with monkeypatch.context() as m:                                                   # the session ends at step 2 of 4
        m.setattr(campaign, "run_task", lambda *a, **k: run_task(*a, **k, until=2))
        campaign.run_stage(campaign.stages(tmp_path / "a")["rrdb"], tmp_path / "a", smoke=True, chunk=1, milestones=(1e-9,))
    assert not (tmp_path / "a" / "rrdb" / "DONE").exists()
    said = campaign.carry(tmp_path / "a", tmp_path / "carried", ["rrdb", "srflow"])   # srflow never started: nothing of it
    assert len(said) == 1 and "step 2" in said[0] and not (tmp_path / "carried" / "srflow").exists()
    assert campaign.carry(tmp_path / "a", tmp_path / "carried", ["rrdb"]) == []       # nothing new
    info = json.loads((tmp_path / "carried" / "rrdb" / "carried.json").read_text())
    assert info["checkpoint"] == "step_00000002.pt" and info["best_is_last"] and not (tmp_path / "carried" / "rrdb" / "best.pt").exists()
    assert (tmp_path / "carried" / "rrdb" / "budget" / "budget.jsonl").exists() and not (tmp_path / "carried" / "rrdb" / "DONE").exists()

    new = tmp_path / "new"
    assert len(campaign.restore(new, tmp_path / "carried", ["rrdb", "srflow"])) == 1
    assert campaign.restore(new, tmp_path / "carried", ["rrdb"]) == []                # local state now: never overwritten
    assert campaign._same_weights(load_checkpoint(new / "rrdb" / "best.pt"), load_checkpoint(tmp_path / "a" / "rrdb" / "best.pt"))
    tr = campaign.run_stage(campaign.stages(new)["rrdb"], new, smoke=True, chunk=1, milestones=(1e-9, 2e-9))
    assert tr.resumed_from.name == "step_00000002.pt" and tr.step == 4
    rows = [json.loads(l)["milestone_h"] for l in (new / "rrdb" / "budget" / "budget.jsonl").read_text().splitlines()]
    assert rows == [1e-9, 2e-9]                                                         # the carried milestone is not taken again
    campaign.carry(new, tmp_path / "carried", ["rrdb"])                                 # best.pt carried as a file or as last.pt
    campaign.restore(tmp_path / "new2", tmp_path / "carried", ["rrdb"])
    assert campaign._same_weights(load_checkpoint(tmp_path / "new2" / "rrdb" / "best.pt"), load_checkpoint(new / "rrdb" / "best.pt"))

    for smoke, restored in (("1", False), ("0", True)):                              # `status` restores too, but never in a smoke run
        monkeypatch.setenv("SMOKE", smoke)
        assert campaign.main(["status", "--runs", str(tmp_path / smoke), "--carried", str(tmp_path / "carried")]) == 0
        assert bool(list((tmp_path / smoke / "rrdb" / "checkpoints").glob("step_*.pt"))) == restored

    campaign.run_stage(campaign.stages(tmp_path / "b")["rrdb"], tmp_path / "b", smoke=True, chunk=1, milestones=())
    ref, got = _weights(tmp_path / "b" / "rrdb"), _weights(new / "rrdb")
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)   # = an uninterrupted run

    campaign.carry(tmp_path / "b", tmp_path / "carried_b", ["rrdb"])                    # finished: weights without optimizer state
    done = load_checkpoint(tmp_path / "carried_b" / "rrdb" / "last.pt")
    info = json.loads((tmp_path / "carried_b" / "rrdb" / "carried.json").read_text())
    assert done["optimizers"] == {} and info["done"] and not info["optimizer_state"]
    assert campaign._same_weights(done, load_checkpoint(list_checkpoints(tmp_path / "b" / "rrdb" / "checkpoints")[-1]))
    assert campaign.restore(tmp_path / "b2", tmp_path / "carried_b", ["rrdb"]) and (tmp_path / "b2" / "rrdb" / "DONE").exists()
    monkeypatch.setenv("SMOKE", "1")                                                     # (no training set needed) a finished stage is not run again
    assert (tmp_path / "b2" / "rrdb" / "best.pt").exists() and campaign.main(["run", "--runs", str(tmp_path / "b2"), "--stage", "rrdb"]) == 0
    assert list_checkpoints(tmp_path / "b2" / "rrdb" / "checkpoints")[-1].name == "step_00000004.pt"


def test_status_tells_running_crashed_and_killed_apart(tmp_path, campaign, monkeypatch):
    "A stage that died of an exception says CRASHED with it (not 'paused'); one whose process vanished says so; a clean stop is 'paused'."
    stage = campaign.stages(tmp_path)["rrdb"]
    def boom(*a, **k): raise ValueError("to_uint8: image has NaN or Inf values")
    monkeypatch.setattr(campaign, "run_task", boom)
    with pytest.raises(ValueError): campaign.run_stage(stage, tmp_path, smoke=True, chunk=1)
    out = tmp_path / "rrdb"
    assert campaign.liveness(out).startswith("CRASHED: ") and "ValueError: to_uint8" in campaign.liveness(out)
    assert not (out / "RUNNING").exists()
    (out / "CRASHED").unlink(); (out / "RUNNING").write_text(json.dumps(dict(pid=os.getpid())))
    assert campaign.liveness(out) == f"running (pid {os.getpid()})"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (out / "RUNNING").write_text(json.dumps(dict(pid=int(dead))))
    assert campaign.liveness(out) == f"stopped (pid {dead} is gone)"
    (out / "RUNNING").unlink(); assert campaign.liveness(out) == "paused"


def test_unknown_stage_is_one_line(tmp_path):
    r = _run(tmp_path, "--stage", "nope")
    assert r.returncode != 0 and "unknown stage" in r.stderr and "Traceback" not in r.stderr


def test_campaign_eval_reads_every_snapshot_and_the_bundled_reference(smoke_runs, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "tools/campaign_eval.py"), "--runs", str(smoke_runs), "--stage", "rrdb", "--limit", "1", "--out", str(tmp_path)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    import pandas as pd
    df = pd.read_csv(tmp_path / "campaign_eval.csv")
    rrdb = df[df.method == "rrdb"]
    assert sorted(rrdb.snapshot) == sorted(["rrdb:demo-4x-rrdb-v1", "cpu_1e-09h.pt", "cpu_2e-09h.pt", "step_00000004.pt"])
    assert (df[df.method == "bicubic"].psnr.nunique() == 1) and rrdb.images.eq(1).all() and rrdb.psnr.notna().all()
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)              # done rows are not redone
    assert again.returncode == 0 and again.stdout.strip() == "" and len(pd.read_csv(tmp_path / "campaign_eval.csv")) == len(df)


def test_campaign_eval_retires_a_retrained_stage_and_skips_lost_snapshots(tmp_path, campaign_eval, capsys):
    "--redo moves a retrained stage's old rows to campaign_eval_retired.csv (with the reason; other stages kept); a snapshot not carried is skipped, said."
    import pandas as pd
    out, runs = tmp_path / "out", tmp_path / "runs"
    out.mkdir(); (runs / "rrdb_8x" / "budget").mkdir(parents=True)
    pd.DataFrame([dict(stage="rrdb_8x", snapshot="cpu_0.125h.pt", method="rrdb_8x", psnr=26.06),
                  dict(stage="rrdb", snapshot="step_00020000.pt", method="rrdb", psnr=29.9)]).to_csv(out / "campaign_eval.csv", index=False)
    (runs / "rrdb_8x" / "budget" / "budget.jsonl").write_text(json.dumps(dict(milestone_h=0.125, step=3000, cpu_s=600.0, file="cpu_0.125h.pt")) + "\n")
    args = ["--runs", str(runs), "--out", str(out), "--stage", "rrdb_8x", "--threads", str(torch.get_num_threads()), "--redo", "rrdb_8x"]
    with pytest.raises(SystemExit, match="needs --why"): campaign_eval.main(args)
    for _ in range(2):                                                                  # twice: nothing is retired twice
        assert campaign_eval.main(args + ["--why", "retrained on a new machine"]) == 0
        kept, retired = pd.read_csv(out / "campaign_eval.csv"), pd.read_csv(out / "campaign_eval_retired.csv")
        assert list(kept.stage) == ["rrdb"] and list(retired.stage) == ["rrdb_8x"] and retired.psnr[0] == 26.06
        assert retired.retired_why[0] == "retrained on a new machine"
    assert "cpu_0.125h.pt is gone (not carried to this machine): skipped" in capsys.readouterr().out


def test_scale_study_images_axis_is_nested_and_starts_with_the_demo_set():
    "`tools/scale_study.py --images N`: the first N of one fixed order, so a larger subset contains every smaller one."
    spec = importlib.util.spec_from_file_location("scale_study_mod", ROOT / "tools" / "scale_study.py")
    sys.path.insert(0, str(ROOT / "tools"))
    try: mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    finally: sys.path.remove(str(ROOT / "tools"))
    names = [f"/x/{n}.png" for n in ("zeta", "demo-b", "alpha", "demo-a", "mid", "demo-c", "beta")]
    order = mod.image_order(names)
    assert sorted(order) == list(range(len(names)))                              # a permutation: nothing lost, nothing twice
    assert [names[i] for i in order[:3]] == ["/x/demo-a.png", "/x/demo-b.png", "/x/demo-c.png"]   # the demo set first, sorted
    assert order == mod.image_order(list(names))                                 # deterministic (seeded), not the global RNG
    shuffled = names[::-1]                                                        # independent of the listing order
    assert [shuffled[i] for i in mod.image_order(shuffled)] == [names[i] for i in order]


def test_bundle_keeps_the_replaced_model_as_v1_and_never_overwrites_it(smoke_runs, tmp_path):
    "`campaign.py bundle`: the finished stages' checkpoints become the bundled files; what they replace moves to *-v1 unchanged."
    import hashlib
    from srflow_nb.checkpoints import PRETRAINED, load_model_any, pretrained_dir
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()          # noqa: E731
    out = tmp_path / "pretrained"; out.mkdir()
    for n in ("demo-4x-rrdb", "demo-4x"):                               # a copy of today's bundle: weights and logs
        (out / PRETRAINED[n]).write_bytes((pretrained_dir() / PRETRAINED[n]).read_bytes())
        (out / f"{n}.metrics.csv").write_text((pretrained_dir() / f"{n}.metrics.csv").read_text())
    before = {n: sha(out / PRETRAINED[n]) for n in ("demo-4x-rrdb", "demo-4x")}
    env = {**os.environ, "SMOKE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "tools/campaign.py"), "bundle", "--stage", "rrdb", "srflow", "--runs", str(smoke_runs), "--out", str(out)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    for n, stage in (("demo-4x-rrdb", "rrdb"), ("demo-4x", "srflow")):
        old = out / PRETRAINED[n].replace(".safetensors", "_v1.safetensors")
        assert sha(old) == before[n] and sha(out / PRETRAINED[n]) != before[n]        # moved unchanged; replaced
        assert (out / f"{n}-v1.metrics.csv").read_text() == (pretrained_dir() / f"{n}.metrics.csv").read_text()
        assert (out / f"{n}.metrics.csv").read_text() == (smoke_runs / stage / "metrics.csv").read_text()
        data = json.loads((out / f"{n}.data.json").read_text())                    # what the model card will say it was trained on
        assert data["stage"] == stage and data["train"] == "data/demo/train" and data["train_images"] == len(list((ROOT / "data/demo/train").glob("*.png")))
    src = load_checkpoint(smoke_runs / "rrdb" / "best.pt")
    got = load_model_any(str(out / PRETRAINED["demo-4x-rrdb"]))
    assert all(torch_equal(v, src["modules"]["model"][f"encoder.{k}"]) for k, v in got.state_dict().items())   # the RRDB's best.pt, bit for bit
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)   # the same checkpoints: nothing moves
    assert again.returncode == 0 and "already holds" in again.stdout and sha(out / PRETRAINED["demo-4x"].replace(".safetensors", "_v1.safetensors")) == before["demo-4x"]
    (out / PRETRAINED["demo-4x"]).write_bytes((pretrained_dir() / PRETRAINED["demo-4x"]).read_bytes())   # another model there now
    third = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert third.returncode != 0 and "refusing to overwrite" in third.stderr and "Traceback" not in third.stderr
    assert sha(out / PRETRAINED["demo-4x"].replace(".safetensors", "_v1.safetensors")) == before["demo-4x"]


def torch_equal(a, b):
    import torch
    return a.dtype == b.dtype and torch.equal(a, b)


def test_bundle_refuses_to_orphan_the_replaced_model(smoke_runs, tmp_path, campaign):
    "A bundle whose replaced model has no registered `<name>-v1` stops before anything moves: the old file would load by no name."
    import hashlib
    from srflow_nb.checkpoints import PRETRAINED, pretrained_dir
    from srflow_nb.core import InputError
    name = "demo-4x-sr3"                                               # no campaign stage replaced it: no `-v1` name registered
    assert f"{name}-v1" not in PRETRAINED
    out = tmp_path / "pretrained"; out.mkdir()
    (out / PRETRAINED[name]).write_bytes((pretrained_dir() / PRETRAINED[name]).read_bytes())
    before = hashlib.sha256((out / PRETRAINED[name]).read_bytes()).hexdigest()
    stage = campaign.Stage("rrdb", name, make=None)                   # a finished run under a name whose v1 is unregistered
    sys.path.insert(0, str(ROOT / "tools"))                            # bundle imports export_demo from its own folder
    try:
        with pytest.raises(InputError, match=f"`{name}-v1` is not registered"): campaign.bundle(stage, smoke_runs, out, smoke=True)
    finally: sys.path.remove(str(ROOT / "tools"))
    assert sorted(p.name for p in out.iterdir()) == [PRETRAINED[name]]   # nothing exported, nothing moved
    assert hashlib.sha256((out / PRETRAINED[name]).read_bytes()).hexdigest() == before


def test_heldout2_means_count_diverged_samples_per_temperature(campaign_eval):
    "`campaign_eval.heldout2_means` sums `evaluate`'s per-sample `diverged` column per (method, temperature), baselines 0."
    import torch
    from srflow_nb.superresolvers import BicubicSR
    mod = campaign_eval

    class Hot(BicubicSR):                      # bicubic samples; at τ=0.9 sample 1 overflows to +Inf only (a plain clamp would hide it)
        stochastic, on_nonfinite = True, "clamp"
        def sample(self, lr, n=1, temperature=None, steps=None, seed=0):
            sr = super().sample(lr, n)
            if temperature == 0.9: sr = sr.clone(); sr[1] = float("inf")
            return sr
    sr = Hot(4); sr.name = "flow"
    m = mod.heldout2_means(sr, "flow", limit=2).set_index(["method", "temperature"], drop=False)
    assert m.loc[("flow", 0.9), "diverged"] == 2 and m.loc[("flow", 0.0), "diverged"] == 0   # 1 of 2 samples on each of 2 crops
    assert m[m.method == "bicubic"].diverged.tolist() == [0] and (m.images == 2).all()
    assert m.loc[("flow", 0.9), "psnr"] < m.loc[("flow", 0.0), "psnr"] - 3                 # scored as the white image it became
    assert sr.on_nonfinite == "clamp"


def test_a_rescaling_snapshot_is_evaluated_as_a_roundtrip(tmp_path, campaign_eval):
    "`campaign_eval.evaluate_snapshot` of an HCFlow rescaling checkpoint: its own 8-bit LR upscaled at τ=0 (no SR sampler can take it)."
    import torch
    from srflow_nb.checkpoints import save_checkpoint
    from srflow_nb.hcflow import HCFlow, HCFlowConfig
    from srflow_nb.hcflow_train import hcflow_demo_rescaling
    mod = campaign_eval
    torch.manual_seed(0)
    m = HCFlow(HCFlowConfig.rescaling_tiny_4x()).eval()
    mc = {"model": "hcflow", "L": m.config.L, **json.loads(json.dumps(m.config.to_dict()))}
    ck = tmp_path / "cpu_1h.pt"
    save_checkpoint(ck, dict(modules={"model": m.state_dict()}, optimizers={}, config=hcflow_demo_rescaling(out_dir=str(tmp_path)).to_dict(),
                             model_config=mc, step=10, cpu_time=3600.0))
    rows = mod.evaluate_snapshot(dict(stage="hcflow_rescaling", file=str(ck), milestone_h=1.0, step=10, cpu_s=3600.0), limit=2)
    assert len(rows) == 1 and rows.method.iloc[0] == "hcflow_rescaling" and rows.temperature.iloc[0] == 0.0
    assert rows.images.iloc[0] == 2 and rows.diverged.iloc[0] == 0 and rows.snapshot.iloc[0] == "cpu_1h.pt" and rows.cpu_h.iloc[0] == 1.0
    hp, lp = [], []
    for it in mod.demo_dataset("heldout2", None, 2, 16):   # the row is the mean roundtrip of the 2 crops, recomputed here
        hr = it["hr"][None]
        with torch.inference_mode(): lr8, back = mod.rescale_roundtrip(m, hr)
        hp.append(float(mod.M.psnr(back.clamp(0, 1), hr)[0])); lp.append(float(mod.M.psnr(lr8, mod.downscale(hr, 4, quantize=True))[0]))
    assert abs(rows.psnr.iloc[0] - sum(hp) / 2) < 1e-6 and abs(rows.lr_psnr.iloc[0] - sum(lp) / 2) < 1e-6 and 0 < rows.lpips.iloc[0] < 1


def test_model_card_says_what_a_bundled_model_was_trained_on(tmp_path):
    "`export_demo.trained_on`: a campaign model's `<name>.data.json` (written by `bundle`) names the built training set; without one, the demo split."
    spec = importlib.util.spec_from_file_location("export_demo_mod", ROOT / "tools" / "export_demo.py")
    ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
    old = ex.trained_on(tmp_path, "demo-4x", 17, "bash tools/train_demo.sh")
    assert (old["n"], old["folder"], old["how"]) == (17, "data/demo/train", "`bash tools/train_demo.sh`")
    (tmp_path / "demo-4x.data.json").write_text(json.dumps(dict(stage="srflow", train="data/cache/trainset/train", train_images=77,
                                                                manifest="data/trainset/manifest.json")))
    new = ex.trained_on(tmp_path, "demo-4x", 17, "bash tools/train_demo.sh")
    assert new["n"] == 77 and "data/trainset/manifest.json" in new["folder"] and "stage `srflow`" in new["how"]


def test_eightx_card_section_comes_from_the_bundled_files(tmp_path, monkeypatch):
    "`export_demo.eightx_card`: '' with no 8x file; with one, its row, selection sentence and the test-split table come from the files there."
    import pandas as pd
    spec = importlib.util.spec_from_file_location("export_demo_8x", ROOT / "tools" / "export_demo.py")
    ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
    monkeypatch.setattr(ex, "PRETRAINED", {**ex.PRETRAINED, "demo-8x-rrdb": "demo_8x_rrdb.safetensors", "demo-8x": "demo_8x.safetensors"})
    out, t2 = tmp_path / "pretrained", tmp_path / "table2.csv"; out.mkdir()
    assert ex.eightx_card(out, 17, t2) == ""                                    # nothing bundled: no section
    (out / "demo_8x_rrdb.safetensors").write_bytes(b"\0" * 3 * 2 ** 20)          # 3 MB of "weights"
    assert ex.eightx_card(out, 17, t2) == ""                                    # weights without their training log: not a bundle
    pd.DataFrame(dict(step=[7000, 15000], cpu_time_s=[1000.0, 2959.2], skipped=[1, 2])).to_csv(out / "demo-8x-rrdb.metrics.csv", index=False)
    (out / "demo-8x-rrdb.config.json").write_text(json.dumps(dict(patch_size=128, scale=8)))
    pd.DataFrame(dict(step=[14000, 15000], rrdb_psnr=[23.50, 23.42])).to_csv(out / "demo-8x-rrdb.val.csv", index=False)
    (out / "demo-8x-rrdb.data.json").write_text(json.dumps(dict(stage="rrdb_8x", train="data/cache/trainset/train", train_images=77,
                                                                manifest="data/trainset/manifest.json")))
    card = ex.eightx_card(out, 17, t2)
    assert "| `demo-8x-rrdb` | RRDB (L1) | `demo_8x_rrdb.safetensors` | 15000 | 0.82 | 3 | 128 | 77 | 3.0 MB |" in card
    assert "| `demo-8x` |" not in card                                          # not bundled: no row, no config line
    assert "bundled step 15000 (the last validated step) is **not** the best" in card and "23.500 at step 14000" in card
    assert '`demo-8x-rrdb`: `{"patch_size": 128, "scale": 8}`' in card and "Held-out **test** split" not in card
    pd.DataFrame(dict(psnr=[27.1], ssim=[0.71234], lpips=[0.37412], lr_psnr=[44.61]), index=pd.Index(["RRDB"], name="method")).to_csv(t2)
    assert "| RRDB | 27.10 | 0.7123 | 0.3741 | 44.61 |" in ex.eightx_card(out, 17, t2)
