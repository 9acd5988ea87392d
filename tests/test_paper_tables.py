"""The SRFlow paper's Table 2 as `srflow_nb.findings` transcribes it, checked against the stored paper text.

Table 2 is one table with two halves (DIV2K 4x, then 8x) of seven metrics each; a row of the text reads
`method<TAB>` and 14 numbers, '-' where the paper has none. Both halves must match the text to the printed digit."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from srflow_nb.findings import PAPER_TABLE2, PAPER_TABLE2_4X, PAPER_TABLE2_8X

ROOT = Path(__file__).resolve().parents[1]
PAPERS = [ROOT.parent / "shared" / "papers" / "srflow-paper.txt", Path("/work/shared/papers/srflow-paper.txt")]
LABELS = {"Bicubic": "Bicubic", "EDSR [24]": "EDSR", "RRDB [47]": "RRDB", "RankSRGAN [56]": "RankSRGAN",
          "ESRGAN [47]": "ESRGAN", "SRFlow $\\tau = 0.9$": "SRFlow τ=0.9"}


def paper_table2(text: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    "The (4x, 8x) halves of Table 2 from the paper text: the rows after its caption, NaN for '-'."
    lines = text.splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("Table 2. General image SR results"))
    rows = {}
    for line in lines[start + 1:start + 12]:
        cells = line.split("\t")
        if cells[0] in LABELS and len(cells) == 15:
            rows[LABELS[cells[0]]] = [np.nan if c.strip() == "-" else float(c) for c in cells[1:]]
    cols = list(PAPER_TABLE2_4X.columns)
    full = pd.DataFrame.from_dict(rows, orient="index")
    return (full.iloc[:, :7].set_axis(cols, axis=1), full.iloc[:, 7:].set_axis(cols, axis=1).dropna(how="all"))


@pytest.fixture(scope="module")
def text():
    t = next((p.read_text() for p in PAPERS if p.exists()), None)
    if t is None: pytest.skip("the SRFlow paper text is not on this machine (../shared/papers)")
    return t


def test_table2_both_halves_match_the_paper(text):
    four, eight = paper_table2(text)
    assert len(four) == 6 and list(eight.index) == ["Bicubic", "RRDB", "ESRGAN", "SRFlow τ=0.9"]
    pd.testing.assert_frame_equal(PAPER_TABLE2_4X, four.loc[PAPER_TABLE2_4X.index], check_names=False)
    pd.testing.assert_frame_equal(PAPER_TABLE2_8X, eight.loc[PAPER_TABLE2_8X.index], check_names=False)
    assert PAPER_TABLE2[4] is PAPER_TABLE2_4X and PAPER_TABLE2[8] is PAPER_TABLE2_8X


def test_a_mistyped_number_is_caught(text):
    "The check is not vacuous: one digit changed in the 8x half fails it."
    _, eight = paper_table2(text)
    typo = PAPER_TABLE2_8X.copy(); typo.loc["SRFlow τ=0.9", "lr_psnr"] = 50.01
    with pytest.raises(AssertionError): pd.testing.assert_frame_equal(typo, eight.loc[typo.index], check_names=False)
