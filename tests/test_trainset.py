"""The training set and held-out split 2 (`srflow data build-train`): the committed manifests on their own (offline,
no cache needed), the committed held-out crops, the built training images when this machine has them, and, with
SRFLOW_NETWORK_TESTS=1 only, a rebuild from the Debian registry that must reproduce every image's pixels."""
import copy
import importlib.util
import os
from collections import Counter
from pathlib import Path

import pytest

from srflow_nb.datasets import (HELDOUT_CROP, HELDOUT_LICENCES, HELDOUT_MIN_CROPS, TRAIN_LICENCES, TRAIN_MAX_SIDE, TRAIN_MIN_IMAGES,
                                TRAIN_MIN_SIDE, TRAIN_MIN_SHRINK, TRAIN_PACKAGES, TRAIN_SOURCES, check_trainset, demo_manifest,
                                heldout2_images, heldout2_manifest, trainset_manifest, trainset_root, verify_trainset)
from srflow_nb.images import load_image

ROOT = Path(__file__).parents[1]
TRAIN, HELD = trainset_manifest(), heldout2_manifest()
DEBIAN = [e for e in TRAIN["images"] if e["origin"] == "debian"]


def test_manifests_pass_their_own_checks():
    assert check_trainset(TRAIN, HELD) == []


def test_enough_large_photographs_shrunk_at_least_2x():
    assert len(DEBIAN) >= TRAIN_MIN_IMAGES
    for e in DEBIAN:
        orig, saved = (e["original_height"], e["original_width"]), (e["height"], e["width"])
        assert min(orig) >= TRAIN_MIN_SIDE, e["name"]
        assert max(orig) >= TRAIN_MIN_SHRINK * max(saved) and max(saved) <= TRAIN_MAX_SIDE, e["name"]
        assert abs(orig[0] / orig[1] - saved[0] / saved[1]) < 0.01, e["name"]          # aspect kept


def test_licences_are_allowed_and_agree_with_the_copyright_files():
    assert {e["licence"] for e in TRAIN["images"]} <= TRAIN_LICENCES
    assert {c["licence"] for c in HELD["images"]} <= HELDOUT_LICENCES
    for e in DEBIAN + HELD["images"]:
        assert e["copyright_licence"] and e["copyright"], e["name"]
        assert e["copyright_licence"] == e["licence"] or e["licence_note"], e["name"]
        assert e["attribution"], e["name"]


def test_manifest_is_the_allow_list():
    "Every entry is a (package, file) of TRAIN_SOURCES at its pinned version, and every source is in the manifests."
    src = {s.name: s for s in TRAIN_SOURCES}
    assert {e["name"] for e in DEBIAN} == {s.name for s in TRAIN_SOURCES if s.split == "train"}
    for e in DEBIAN:
        s = src[e["name"]]
        assert (e["source_package"], e["source_version"]) == TRAIN_PACKAGES[s.package]
        assert (e["source_file"], e["source_entry"], e["licence"]) == (s.member, s.entry, s.licence)
    crops = Counter(c["name"].rsplit("-", 1)[0] for c in HELD["images"])
    assert crops == {s.name: len(s.crops) for s in TRAIN_SOURCES if s.split == "heldout2"}
    for c in HELD["images"]:
        s = src[c["name"].rsplit("-", 1)[0]]
        assert (c["crop_top"], c["crop_left"]) == s.crops[int(c["name"].rsplit("-", 1)[1])]
        assert (c["source_package"], c["source_version"]) == TRAIN_PACKAGES[s.package]


def test_demo_training_split_is_included_unchanged_and_demo_test_untouched():
    demo = demo_manifest()
    got = {e["name"]: e["pixels_sha256"] for e in TRAIN["images"] if e["origin"] == "demo"}
    assert got == {f"demo-{d['name']}": d["pixels_sha256"] for d in demo if d["split"] == "train"}
    assert sum(d["split"] == "test" for d in demo) == 7


def test_heldout2_is_held_out():
    assert len(HELD["images"]) >= HELDOUT_MIN_CROPS
    held = set(HELD["excluded_from_training"])
    assert held == {p["name"] for p in HELD["packages"]} == {c["source_package"] for c in HELD["images"]}
    assert not held & {e["source_package"] for e in TRAIN["images"]}
    pixels = [e["pixels_sha256"] for e in TRAIN["images"] + HELD["images"]] + [d["pixels_sha256"] for d in demo_manifest()
                                                                                 if d["split"] != "train"]
    assert len(pixels) == len(set(pixels))


def test_committed_heldout2_crops_match_their_manifest():
    assert verify_trainset(images=False) == []
    paths = heldout2_images()
    assert len(paths) == len(HELD["images"])
    assert all(load_image(p).shape == (HELDOUT_CROP, HELDOUT_CROP, 3) for p in paths)


@pytest.mark.skipif(not (trainset_root() / "train").is_dir(), reason="training set not built here (srflow data build-train)")
def test_built_training_images_match_their_manifest():
    assert verify_trainset() == []                                   # every image's file or pixel hash


def test_checks_can_fail():
    bad = copy.deepcopy(TRAIN)
    e = next(e for e in bad["images"] if e["origin"] == "debian")
    e.update(original_width=999, original_height=999, licence="CC-BY-NC-4.0")
    found = " | ".join(check_trainset(bad, HELD))
    assert "shorter side under 1000 px" in found and "'CC-BY-NC-4.0' is not in the allowed set" in found
    bad = copy.deepcopy(TRAIN)
    bad["images"] = bad["images"][:TRAIN_MIN_IMAGES - 1]
    assert any("fewer than" in p for p in check_trainset(bad, HELD))
    held = copy.deepcopy(HELD)
    held["images"][0]["pixels_sha256"] = TRAIN["images"][0]["pixels_sha256"]
    held["excluded_from_training"] = held["packages"][0]["name"] = TRAIN["images"][0]["source_package"]
    found = " | ".join(check_trainset(TRAIN, held))
    assert "appear twice" in found and "held-out packages also in the training set" in found


@pytest.mark.network
@pytest.mark.skipif(os.environ.get("SRFLOW_NETWORK_TESTS") != "1", reason="downloads ~600 MB of Debian packages: SRFLOW_NETWORK_TESTS=1")
def test_rebuild_from_the_registry_reproduces_the_pixels(tmp_path):
    spec = importlib.util.spec_from_file_location("build_trainset", ROOT / "tools" / "build_trainset.py")
    tool = importlib.util.module_from_spec(spec); spec.loader.exec_module(tool)
    train = tool.build_trainset(tmp_path / "train", manifest=tmp_path / "manifest.json", heldout_root=tmp_path / "h2", verbose=False)
    assert {e["name"]: e["pixels_sha256"] for e in train["images"]} == {e["name"]: e["pixels_sha256"] for e in TRAIN["images"]}
    assert ({c["name"]: c["pixels_sha256"] for c in heldout2_manifest(tmp_path / "h2")["images"]}
            == {c["name"]: c["pixels_sha256"] for c in HELD["images"]})
