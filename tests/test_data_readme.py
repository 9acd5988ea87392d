"""data/README.md's demo-set tables (the split counts and sizes, and the per-image table) are the content of
data/demo/manifest.json: checked here so the README can never drift from the committed files."""
import json
import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).parents[1]
README = (ROOT / "data" / "README.md").read_text()
MANIFEST = json.loads((ROOT / "data" / "demo" / "manifest.json").read_text())["images"]


def _rows(first_cells: tuple[str, ...]) -> list[list[str]]:
    "Table rows of the README whose first cell is one of `first_cells`, as lists of stripped cells."
    rows = []
    for line in README.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if cells[0].strip("`") in first_cells: rows.append(cells)
    return rows


def test_split_table_matches_manifest():
    rows = {r[0].strip("`"): r for r in _rows(("train", "val", "test")) if len(r) == 4}
    counts = Counter(e["split"] for e in MANIFEST)
    assert set(rows) == {"train", "val", "test"}
    for split, r in rows.items():
        assert int(r[1]) == counts[split], (split, r[1], counts[split])
        sizes = {(e["height"], e["width"]) for e in MANIFEST if e["split"] == split}
        if split == "train":
            longest = max(max(s) for s in sizes)
            assert f"<= {longest} px" in r[2]
            lo, hi = min(sizes, key=lambda s: s[0] * s[1]), max(sizes, key=lambda s: s[0] * s[1])
            assert f"{lo[0]}x{lo[1]}" in r[2] and f"{hi[0]}x{hi[1]}" in r[2], (r[2], lo, hi)
        else:
            assert sizes == {(256, 256)} and "256x256" in r[2]


def test_image_table_matches_manifest():
    rows = [r for r in _rows(("train", "val", "test")) if len(r) == 7]
    got = {r[1]: r for r in rows}
    assert len(rows) == len(MANIFEST) == len(got)
    for e in MANIFEST:
        r = got[e["name"]]
        assert r[0] == e["split"], e["name"]
        assert r[2] == f"{e['height']}x{e['width']}", e["name"]
        assert r[3] == f"{e['source_package']}=={e['source_version']}", e["name"]
        assert r[4] == f"`{Path(e['source_file']).name}`", e["name"]
        assert r[5] == e["licence"] and r[6] == e["attribution"], e["name"]


def test_readme_types_no_build_measurements():
    # build times and sizes are printed by tools/build_demo.py, not typed here
    assert not re.search(r"\b\d+(\.\d+)? ?(s|MB)\b(?! \()", README.split("## The paper's datasets")[0]), \
        re.findall(r"[^\n]*\b\d+(?:\.\d+)? ?(?:s|MB)\b[^\n]*", README)
