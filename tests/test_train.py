"""Trainer integration tests: 2-process DDP (gloo, CPU) vs single process, and a torchrun launch of the CLI.

The model is a really small SRFlow (tiny_4x with 16 features), as in nbs/13_train.ipynb."""
import json, math, os, socket, subprocess, sys, tempfile
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from srflow_nb.model import SRFlow, SRFlowConfig
from srflow_nb.train import PatchCache, TrainConfig, Trainer, list_checkpoints, load_checkpoint


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return SRFlow(SRFlowConfig.tiny_4x(nf=16, gc=8, hidden_channels=16, include_unused_official_params=False))

def tiny_data(patch=16, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    imgs = [F.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(48, 48), mode="bicubic", align_corners=False)[0].clamp(0, 1)
            + 0.02 * torch.rand(3, 48, 48, generator=g) for _ in range(n)]
    return PatchCache.from_hr([i.clamp(0, 1) for i in imgs], scale=4, patch_size=patch)

def tiny_cfg(d, **kw):
    return TrainConfig(**{**dict(stage="flow", iterations=20, batch_size=4, patch_size=16, learning_rate=2e-3, log_every=1, val_every=None,
                                 ckpt_every_steps=None, ckpt_every_s=None, keep_last=10, out_dir=str(d)), **kw})


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def _run(out, world, rank=0, port=0, iterations=4):
    "Train `iterations` steps (encoder frozen for the first half) and return grads/params/losses after each step."
    torch.set_num_threads(1)
    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    cfg = tiny_cfg(out, iterations=iterations, freeze_encoder=0.5, batch_size=4)
    tr = Trainer(tiny_model(0), cfg, tiny_data(), progress=False, device="cpu")
    rec = []
    for _ in range(iterations):
        before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}   # the parameters the step's loss is computed at
        r = tr.train_step()
        rec.append(dict(loss=r["loss"], params=before, grads={n: p.grad.clone() for n, p in tr.model.named_parameters() if p.grad is not None}))
    tr.save()
    params = {k: v.clone() for k, v in tr.model.state_dict().items()}
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()
    return rec, params


def _worker(rank, world, port, out, result_path):
    rec, params = _run(out, world, rank, port)
    if rank == 0: torch.save(dict(rec=rec, params=params), result_path)


def test_ddp_two_processes_match_single_process(tmp_path):
    port = _free_port()
    mp.spawn(_worker, args=(2, port, str(tmp_path / "ddp"), str(tmp_path / "ddp.pt")), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    rec1, params1 = _run(tmp_path / "single", 1)
    # the gradient of the first step (same parameters, same global batch) must match to float rounding
    a, b = ddp["rec"][0]["grads"], rec1[0]["grads"]
    assert set(a) == set(b)
    gmax = max(v.abs().max().item() for v in b.values())
    diff0 = max((a[k] - b[k]).abs().max().item() for k in b)
    assert diff0 <= 1e-6 * gmax, f"DDP gradient differs from the single-process one by {diff0:.3g} (max |g| {gmax:.3g})"
    # Later steps. The two runs reduce the same float32 gradients in another order (DDP: per-rank sums, then an
    # all-reduce), so they differ by rounding (step 0, checked above). Adam's update is ~lr * sign(g) per element in its
    # first steps, so a rounding-level difference in a near-zero gradient (ActNorm biases right after their data-dependent
    # init) can flip a sign and move that parameter by up to 2 lr: after s steps each parameter may differ by 2 lr s at
    # most. The loss at step s may then differ by what those parameter differences explain, to first order
    # sum_i |g_i| |dtheta_i| (a factor 2 for the second-order terms), plus float32 rounding. Both bounds follow from the
    # learning rate and the step count, not from a machine's rounding, so they hold on any CPU. A DDP bug (unaveraged or
    # unsynchronised gradients, a rank's skipped update) fails the step-0 check or moves the loss beyond what the
    # parameters explain.
    lr = tiny_cfg(tmp_path).learning_rate
    for step, (a, b) in enumerate(zip(ddp["rec"], rec1)):
        assert set(a["grads"]) == set(b["grads"]), f"step {step}: different parameters received gradients"
        dtheta = {k: (a["params"][k] - b["params"][k]).abs() for k in b["params"]}
        worst = max(v.max().item() for v in dtheta.values())
        assert worst <= 2 * lr * step + 1e-6, f"step {step}: a parameter differs by {worst:.3g} > 2 lr x {step} steps"
        explained = sum((b["grads"][k].abs() * dtheta[k]).sum().item() for k in b["grads"])
        bound = 1e-6 * abs(b["loss"]) + 2 * explained
        assert abs(a["loss"] - b["loss"]) <= bound, (step, a["loss"], b["loss"], bound)
        print(f"step {step}: |loss diff| {abs(a['loss'] - b['loss']):.3g} <= bound {bound:.3g}")
    print(f"DDP vs single process: step-0 max |grad diff| {diff0:.3g} (max |grad| {gmax:.3g})")
    enc = [k for k in rec1[0]["grads"] if k.startswith("encoder.")]
    assert not enc, "encoder received gradients during the frozen phase"
    assert any(k.startswith("encoder.") for k in rec1[-1]["grads"]), "encoder did not train in the joint phase (DDP rebuilt?)"
    for k, v in params1.items():
        torch.testing.assert_close(ddp["params"][k], v, rtol=0, atol=4 * 2e-3)   # within Adam's 4 * lr steps
    # only rank 0 wrote checkpoints and they resume
    ck = load_checkpoint(list_checkpoints(tmp_path / "ddp" / "checkpoints")[-1])
    assert ck["step"] == 4 and ck["world_size"] == 2


def _cli(out, data, model_json, iterations=8):
    return [sys.executable, "-m", "srflow_nb.cli", "train", "--family", "srflow", "--preset", "demo_flow", "--model", str(model_json), "--data", str(data),
            "--out", str(out), "--iterations", str(iterations), "--no-progress", "--set", "batch_size=2", "patch_size=16",
            "log_every=1", "ckpt_every_steps=2", "keep_last=10", "val_every=null", "threads=1", "amp=null", "learning_rate=0.001"]


def test_cli_sigkill_and_resume_reproduces_uninterrupted_run(tmp_path):
    "`python -m srflow_nb.cli train` killed with SIGKILL after a checkpoint, then re-run: the log equals an uninterrupted run's."
    import signal, time
    from PIL import Image
    data = tmp_path / "hr"; data.mkdir()
    g = torch.Generator().manual_seed(0)
    for i in range(3):
        img = F.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(48, 48), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(data / f"{i}.png")
    model_json = tmp_path / "tiny.json"
    model_json.write_text(SRFlowConfig.tiny_4x(nf=16, gc=8, hidden_channels=16, include_unused_official_params=False).to_json())
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run(_cli(tmp_path / "straight", data, model_json), check=True, env=env, capture_output=True, timeout=600)
    p = subprocess.Popen(_cli(tmp_path / "killed", data, model_json), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = tmp_path / "killed" / "checkpoints"
    t0 = time.time()
    while not (ck.exists() and list_checkpoints(ck) and int(list_checkpoints(ck)[-1].name[5:13]) >= 4):
        assert p.poll() is None and time.time() - t0 < 600, "run ended or hung before its step-4 checkpoint"
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    killed_at = int(list_checkpoints(ck)[-1].name[5:13])
    assert killed_at < 8, "the run finished before it could be killed; slow it down"
    r = subprocess.run(_cli(tmp_path / "killed", data, model_json), check=True, env=env, capture_output=True, text=True, timeout=600)
    assert "resumed from step_" in r.stdout
    rows = lambda d: [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
    a, b = rows(tmp_path / "straight"), rows(tmp_path / "killed")
    assert [x["step"] for x in b] == list(range(1, 9))
    assert [x["loss"] for x in a] == [x["loss"] for x in b], f"resumed run (killed after step {killed_at}) diverged"


class _NaNBatches:
    "A data source whose batches `bad` (0-based call numbers) carry a NaN pixel."
    def __init__(self, data, bad): self.data, self.bad, self.calls = data, set(bad), 0
    scale, patch_size = property(lambda s: s.data.scale), property(lambda s: s.data.patch_size)
    def sample(self, n, g):
        hr, lr = self.data.sample(n, g)
        if self.calls in self.bad: hr[-1, 1, 2, 3] = float("nan")
        self.calls += 1
        return hr, lr


def test_nan_batches_are_skipped_counted_and_weights_stay_finite(tmp_path):
    "With the NaN/Inf guard disabled the NaN batches would train into the weights: this fails."
    torch.set_num_threads(1)
    tr = Trainer(tiny_model(0), tiny_cfg(tmp_path, iterations=6, freeze_encoder=0.0), _NaNBatches(tiny_data(), {2, 4}), progress=False,
                 device="cpu").fit()
    assert (tr.step, tr.skipped) == (6, 2)
    assert [r["skipped"] for r in tr.history] == [0, 0, 1, 1, 2, 2]
    assert ["loss" in r for r in tr.history] == [True, True, False, True, False, True]   # skipped steps log no loss
    assert all(math.isfinite(r["loss"]) for r in tr.history if "loss" in r)
    bad = [n for n, p in tr.model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    assert not bad, f"non-finite weights after NaN batches: {bad[:3]}"
    ck = load_checkpoint(list_checkpoints(tmp_path / "checkpoints")[-1])
    assert ck["skipped"] == 2 and all(torch.isfinite(v).all() for v in ck["modules"]["model"].values() if v.is_floating_point())


def _snapshot(tr):
    "Clones of the model's state dict and of every optimizer's state (Adam moments and step counts)."
    opt = {n: {i: {k: v.clone() if torch.is_tensor(v) else v for k, v in st.items()} for i, st in o.state_dict()["state"].items()}
           for n, o in tr.task.optimizers.items()}
    return {k: v.clone() for k, v in tr.model.state_dict().items()}, opt

def _assert_same(a, b, what):
    (wa, oa), (wb, ob) = a, b
    changed = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not changed, f"{what}: weights changed: {changed[:3]}"
    assert oa.keys() == ob.keys() and all(oa[n].keys() == ob[n].keys() for n in oa), f"{what}: optimizer state changed"
    for n in oa:
        for i in oa[n]:
            for k, v in oa[n][i].items():
                assert torch.equal(v, ob[n][i][k]) if torch.is_tensor(v) else v == ob[n][i][k], f"{what}: optimizer {n} state {i}.{k} changed"


def test_nonfinite_loss_or_gradient_skips_the_update_and_aborts_after_max_consecutive_skips(tmp_path, monkeypatch):
    "The Updater's guard on the SRFlow NLL task (finite batches, so the batch check never fires): a NaN loss, or a finite"
    "loss with an infinite gradient, is a skipped, counted step that leaves weights and optimizer state bit-identical;"
    "`max_consecutive_skips` skips in a row raise FloatingPointError. With the guard disabled or loss-only this fails."
    torch.set_num_threads(1)
    tr = Trainer(tiny_model(0), tiny_cfg(tmp_path, iterations=20, freeze_encoder=0.0, max_consecutive_skips=3), tiny_data(),
                 progress=False, device="cpu")
    assert type(tr.task).__name__ == "SRFlowNLLTask"
    honest, p0 = tr.task.training_step, next(tr.model.flow.parameters())
    poison = {}   # step -> how its loss is spoiled

    def training_step(batch, step):
        out = honest(batch, step)
        if poison.get(step) == "nan": out["loss"] = out["loss"] * float("nan")
        if poison.get(step) == "inf_grad":   # + 1e-30 * sqrt(0): the value is unchanged and finite, d/dp is +inf
            out["loss"] = out["loss"] + 1e-30 * torch.sqrt((p0 - p0.detach()).sum())
            assert torch.isfinite(out["loss"])
        return out
    monkeypatch.setattr(tr.task, "training_step", training_step)
    poison.update({1: "nan", 2: "inf_grad"})

    assert tr.train_step()["ok"]                                     # step 0: a normal update
    before = _snapshot(tr)
    for k, reason in ((1, "nan"), (2, "inf_grad")):
        r = tr.train_step()
        assert not r["ok"], f"step {k} with a {reason} loss was applied, not skipped: {r}"
        _assert_same(before, _snapshot(tr), f"after the {reason} step")
        assert (r["reason"], r["step"]) == ("non-finite loss or gradient", k + 1) and math.isnan(r["loss"]) and "grad_norm" not in r, r
        assert (tr.step, tr.skipped, tr.consecutive_skips) == (k + 1, k, k)
        assert all(p.grad is None for p in tr.model.parameters()), f"{reason}: gradients left after a skipped step"
    r = tr.train_step()                                              # step 3: clean again -> updates, resets the run of skips
    assert r["ok"] and math.isfinite(r["loss"]) and (tr.step, tr.skipped, tr.consecutive_skips) == (4, 2, 0)
    w = _snapshot(tr)[0]
    assert any(not torch.equal(before[0][k], w[k]) for k in w), "a clean step after the skips did not update the weights"
    assert all(torch.isfinite(v).all() for v in w.values() if v.is_floating_point())

    poison.update({4: "nan", 5: "inf_grad", 6: "nan"})
    before = _snapshot(tr)
    assert not tr.train_step()["ok"] and not tr.train_step()["ok"]   # two skips in a row: still below the limit of 3
    with pytest.raises(FloatingPointError, match=r"3 consecutive skipped steps \(non-finite loss or gradient\) up to step 7"):
        tr.train_step()
    assert (tr.step, tr.skipped, tr.consecutive_skips) == (7, 5, 3)
    _assert_same(before, _snapshot(tr), "after three skipped steps")


def test_run_folder_with_unreadable_checkpoints_is_refused_not_overwritten(tmp_path):
    from srflow_nb.core import InputError
    torch.set_num_threads(1)
    Trainer(tiny_model(0), tiny_cfg(tmp_path, iterations=3, ckpt_every_steps=1), tiny_data(), progress=False, device="cpu").fit()
    log = (tmp_path / "metrics.jsonl").read_text()
    for p in list_checkpoints(tmp_path / "checkpoints"): p.write_bytes(b"")
    for _ in range(2):   # the first attempt renames the files *.corrupt; a second one must refuse all the same
        with pytest.warns(UserWarning) if _ == 0 else nullcontext(), pytest.raises(InputError, match="refusing to restart it from step 0"):
            Trainer(tiny_model(0), tiny_cfg(tmp_path, iterations=6), tiny_data(), progress=False, device="cpu")
    assert (tmp_path / "metrics.jsonl").read_text() == log


def test_cli_names_a_tiny_training_image_and_a_corrupt_init_checkpoint(tmp_path):
    from PIL import Image
    data = tmp_path / "hr"; data.mkdir()
    Image.new("RGB", (48, 48)).save(data / "ok.png"); Image.new("RGB", (1, 1)).save(data / "dot.png")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    r = subprocess.run([sys.executable, "-m", "srflow_nb.cli", "train", "--family", "srflow", "--data", str(data), "--out", str(tmp_path / "run"), "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "dot.png: 1x1 is smaller than the training patch" in r.stderr and "Traceback" not in r.stderr, r.stderr
    (data / "dot.png").unlink()
    (tmp_path / "init.pt").write_bytes(b"not a checkpoint at all")
    r = subprocess.run([sys.executable, "-m", "srflow_nb.cli", "train", "--family", "srflow", "--data", str(data), "--out", str(tmp_path / "run"), "--no-progress",
                        "--set", "patch_size=16", f"init_from={tmp_path / 'init.pt'}"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1 and "init.pt: is not a PyTorch checkpoint" in r.stderr and "weights_only=False" not in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def _export_demo():
    import importlib.util
    spec = importlib.util.spec_from_file_location("export_demo", Path(__file__).parents[1] / "tools" / "export_demo.py")
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod


def test_model_card_states_from_the_val_logs_which_checkpoint_is_bundled(tmp_path):
    "The card's selection sentences are what the val CSVs say (here: demo-4x's bundled step is not the best validated one)."
    import pandas as pd
    ex, out = _export_demo(), Path(__file__).parents[1] / "srflow_nb" / "pretrained"
    text, facts = (out / "MODEL_CARD.md").read_text(), json.loads((out / "demo_eval.json").read_text())["facts"]
    for name, f in facts.items():
        assert ex.selection(name, out / f"{name}.val.csv", f["step"], ex.BEST_METRIC[name]) in text, name
        assert "model selection on the" not in text
    # the verdict on data where it holds and where it does not
    pd.DataFrame(dict(step=[1, 2, 3], m=[1.0, 3.0, 2.0])).to_csv(tmp_path / "v.csv", index=False)
    assert "is **not** the best" in ex.selection("x", tmp_path / "v.csv", 3, "m") and "3.000 at step 2" in ex.selection("x", tmp_path / "v.csv", 3, "m")
    assert "is the best of 3 validations" in ex.selection("x", tmp_path / "v.csv", 2, "m")
    assert "is the best of 3 validations" in ex.selection("x", tmp_path / "v.csv", 1, "-m")          # '-m': lower is better
    assert "is **not** the best" in ex.selection("x", tmp_path / "v.csv", 2, "-m") and "1.000 at step 1" in ex.selection("x", tmp_path / "v.csv", 2, "-m")


def test_every_registered_task_rebuilds_its_model_from_a_checkpoint():
    "`model_from_checkpoint` dispatches by stage: every TASKS entry must say how to rebuild its model (no base-class fallback)."
    from srflow_nb.train import TASKS, TrainTask, task_class
    for stage in TASKS:
        cls = task_class(stage)
        assert cls.build_model.__func__ is not TrainTask.build_model.__func__, f"{stage}: {cls.__name__} has no build_model"


def _png_folder(folder, n=3, side=32, seed=0):
    from PIL import Image
    folder.mkdir()
    g = torch.Generator().manual_seed(seed)
    for i in range(n):
        img = F.interpolate(torch.rand(1, 3, side // 4, side // 4, generator=g), size=(side, side), mode="bicubic", align_corners=False)[0].clamp(0, 1)
        Image.fromarray((img.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(folder / f"{i}.png")
    return folder


def test_launcher_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path):
    "The one training entry (`python -m srflow_nb.cli train`, here of SR3) runs through `train.run_task`: SIGTERM saves after the current step and exits 0; re-running resumes."
    import signal, time
    data = _png_folder(tmp_path / "hr")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "srflow_nb.cli", "train", "--data", str(data), "--out", str(tmp_path / "run"), "--family", "sr3",
           "--preset", "sr3_demo", "--model", "tiny", "--iterations", "100000", "--set", "batch_size=2", "patch_size=16", "amp=null",
           "--no-progress"]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while not (tmp_path / "run/model_config.json").exists():
        assert p.poll() is None and time.time() - t0 < 300, p.stderr.read() if p.poll() is not None else "no start"
        time.sleep(0.1)
    time.sleep(2.0)                                    # some steps
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert "signal 15: saving a checkpoint after this step and stopping" in out
    cks = list_checkpoints(tmp_path / "run/checkpoints")
    assert len(cks) == 1
    step = load_checkpoint(cks[0])["step"]
    assert 0 < step < 100000 and f"step {step}/100000" in out.splitlines()[-1] and "CPU-h" in out.splitlines()[-1]
    r = subprocess.run(cmd + ["--until", str(step + 2)], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"resumed from {cks[0].name}" in r.stdout and f"step {step + 2}/100000" in r.stdout.splitlines()[-1]
    assert json.loads((tmp_path / "run/model_config.json").read_text())["kind"] == "sr3"
