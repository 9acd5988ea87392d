"""The family registry is complete and every consumer's view agrees with it (issue 26).

Adding a family is: its module with a `Family` record, one line in `srflow_nb.families.REGISTERED`, its notebook and
tests. These tests fail when a record is defined but not registered, when a bundled file belongs to no family (or two),
when a record names code that does not exist, or when what a record says (knob, capabilities, classes) is not what its
models do.
"""
import importlib, pkgutil, re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import srflow_nb
from srflow_nb.families import CAPABILITIES, REGISTERED, Family, families, family, resolve
from srflow_nb.checkpoints import FILE_LOADERS, PRETRAINED, load_pretrained, pretrained_dir
from srflow_nb.superresolvers import BUNDLED, KNOBS, REGISTRY, WRAPPERS, family_of, knob, load_superresolver
from srflow_nb.train import TASKS, TrainConfig, TrainTask

PKG = Path(srflow_nb.__file__).parent
LIGHT = ("_modidx", "cli", "explorer", "demo", "commands", "train_commands")      # modules not scanned for records (commands and apps)


def _records_in_modules() -> dict[str, Family]:
    out = {}
    for m in pkgutil.iter_modules([str(PKG)]):
        if m.name in LIGHT: continue
        mod = importlib.import_module(f"srflow_nb.{m.name}")
        for k, v in vars(mod).items():
            if isinstance(v, Family) and getattr(v, "__module__", None) is None and k.endswith("_FAMILY"):
                out[f"srflow_nb.{m.name}:{k}"] = v
    return out


def test_every_record_is_registered_once():
    defined = {t: r for t, r in _records_in_modules().items() if t.split(":")[0] != "srflow_nb.families"}
    # a record imported into another module is the same object: keep the module that defines it (its name in REGISTERED)
    registered = {resolve(t).name: t for t in REGISTERED}
    for target, rec in defined.items():
        assert rec.name in registered, f"{target} defines family {rec.name!r}, which srflow_nb.families.REGISTERED does not list"
        assert resolve(registered[rec.name]) is rec, f"{target}: a second record named {rec.name!r}"
    assert len(REGISTERED) == len(set(REGISTERED)) == len(families())


def test_every_import_string_resolves_to_the_right_kind_of_thing():
    for f in families().values():
        assert callable(resolve(f.from_spec)), f.name
        if f.wrapper: assert callable(resolve(f.wrapper)), f.name
        if f.file_loader: assert callable(resolve(f.file_loader)), f.name
        for c in f.classes: assert isinstance(resolve(c), type) and issubclass(resolve(c), torch.nn.Module), (f.name, c)
        for stage, t in f.tasks.items():
            cls = resolve(t)
            assert issubclass(cls, TrainTask), (f.name, t)
        for name, p in f.presets.items():
            cfg = resolve(p)()
            assert isinstance(cfg, TrainConfig) and cfg.stage in f.tasks, (f.name, name, cfg.stage, list(f.tasks))
        assert set(f.capabilities) <= set(CAPABILITIES)


def test_the_views_are_the_records():
    fams = families()
    assert list(REGISTRY) == list(fams) and dict(KNOBS) == {n: f.knob for n, f in fams.items()}
    assert dict(BUNDLED) == {n: next(iter(f.bundled)) for n, f in fams.items() if f.bundled}
    assert dict(PRETRAINED) == {k: v for f in fams.values() for k, v in f.bundled.items()}
    assert dict(TASKS) == {s: t for f in fams.values() for s, t in f.tasks.items()}
    assert set(FILE_LOADERS) == {k for f in fams.values() if f.file_loader for k in f.file_kinds}
    assert {c for f in fams.values() for c in f.classes} == set(WRAPPERS)
    with pytest.raises(TypeError): PRETRAINED["x"] = "y"          # read-only: one copy, in the records


def test_every_bundled_file_has_one_family_and_loads_bit_identically():
    "Each bundled file is claimed by exactly one record, loads into that family's class, and its tensors are the file's, bit for bit."
    files = sorted(p.name for p in pretrained_dir().glob("*.safetensors"))
    claimed = [v for f in families().values() for v in f.bundled.values()]
    assert sorted(claimed) == files, (sorted(claimed), files)
    for f in families().values():
        for name, fname in f.bundled.items():
            model = load_pretrained(name)
            assert f.name in family_of(model).split("/"), (name, family_of(model), f.name)
            raw, sd = load_file(str(pretrained_dir() / fname)), model.state_dict()
            missing = [k for k in raw if k not in sd]
            assert not missing, (name, missing[:3])
            for k, v in raw.items(): assert torch.equal(sd[k], v.to(sd[k].dtype)) and sd[k].dtype == v.dtype, (name, k)


def test_what_a_record_says_is_what_its_models_do():
    for f in families().values():
        sr = load_superresolver(f.name, "cpu")
        assert sr.stochastic == f.can("stochastic") and knob(sr) == f.knob, f.name
        model = getattr(sr, "model", getattr(sr, "encoder", None))
        if f.can("latents"): assert callable(getattr(model, "encode", None)) and callable(getattr(model, "decode", None)), f.name
    hc = load_pretrained("demo-4x-hcflow-rescaling")
    assert family("hcflow").can("rescaling") and callable(hc.downscale) and callable(hc.upscale)


CONSUMERS = ("checkpoints", "commands", "train_commands", "evaluate", "explorer", "restore", "engine", "sampling", "superresolvers", "train", "cli", "demo", "findings")


def test_consumers_ask_capabilities_not_names():
    "No consumer module compares a model family to a literal name (the records' capabilities say what a family can do)."
    pat = re.compile(r"""(?:chosen|family|name|kind|stage)\s*[!=]=\s*["'](?:srflow|hcflow|sr3|esrgan|rrdb)["']""")
    hits = [f"{m}.py:{i}: {l.strip()}" for m in CONSUMERS for i, l in enumerate((PKG / f"{m}.py").read_text().splitlines(), 1) if pat.search(l)]
    assert not hits, "family-name branches left:\n" + "\n".join(hits)


def test_earlier_versions_keep_their_names():
    "A bundled `<name>-v1` is what `tools/campaign.py bundle` moved aside: `<stem>_v1.safetensors`, in the family of `<name>`."
    v1 = [(f, n) for f in families().values() for n in f.bundled if n.endswith("-v1")]
    assert v1, "no *-v1 model registered"
    for f, name in v1:
        assert name[:-3] in f.bundled and f.bundled[name] == f.bundled[name[:-3]].replace(".safetensors", "_v1.safetensors"), name
        assert next(iter(f.bundled)) != name                                  # the family's default model is the current one
