"""How far the same code's results move between two CPUs: every per-sample value of two result trees, compared.

    python tools/cross_cpu.py A B --a-label "..." --b-label "..." [-o benchmarks/results/cross_cpu_differences.csv]

A and B are checkouts (or folders holding `data/results/*/quick/`) whose quick results the same commit produced on two
machines, e.g. the committed results of an AMX Intel machine and a test run's on an AMD Zen 4. For every CSV both
have (findings.csv excepted: its details are text) and every numeric column, the largest absolute difference is
written with the decimals the file is written to and the tolerance `srflow_nb.findings` states for it;
`tests/test_findings.py` checks that every tolerance is at least 10x the difference measured here beyond the file's
rounding (a value printed to 4 decimals can move by one unit of the last digit) and at least that one unit, so a
tolerance is never tighter than what two correct machines differ by.
"""
from __future__ import annotations
import argparse, sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from srflow_nb.results import TIME_COLUMNS, _tolerance  # noqa: E402


def differences(a: Path, b: Path) -> pd.DataFrame:
    "One row per (notebook, file, column): max |a - b|, the values compared, and the stated tolerance (NaN: compared to rel 1e-5)."
    rows = []
    for fa in sorted(a.glob("data/results/*/quick/*.csv")):
        rel = fa.relative_to(a)
        fb = b / rel
        if fa.name == "findings.csv" or not fb.exists(): continue
        x, y, text = pd.read_csv(fa), pd.read_csv(fb), pd.read_csv(fa, dtype=str)
        if list(x.columns) != list(y.columns) or len(x) != len(y): raise ValueError(f"{rel}: the two trees hold different tables")
        metric = x["metric"].astype(str).tolist() if "metric" in x else [None] * len(x)
        for c in x.columns:
            if TIME_COLUMNS.search(c.lower()) or not (pd.api.types.is_numeric_dtype(x[c]) and pd.api.types.is_numeric_dtype(y[c])): continue
            d = np.abs(x[c].to_numpy(float) - y[c].to_numpy(float))
            for m in sorted(set(metric), key=str):
                sel = np.array([k == m for k in metric]) & np.isfinite(d)
                if not sel.any(): continue
                decimals = int(text[c].dropna().map(lambda v: len(v.partition(".")[2]) if "e" not in v.lower() else 15).max())
                rows.append(dict(notebook=rel.parts[2], file=fa.name, column=c if m is None else f"{c} ({m})", values=int(sel.sum()),
                                 max_abs_diff=float(d[sel].max()), decimals=decimals, tolerance=_tolerance(c, m)))
    return pd.DataFrame(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", type=Path); p.add_argument("b", type=Path)
    p.add_argument("--a-label", required=True); p.add_argument("--b-label", required=True)
    p.add_argument("-o", "--out", type=Path, default=Path("benchmarks/results/cross_cpu_differences.csv"))
    args = p.parse_args(argv)
    df = differences(args.a, args.b).assign(a=args.a_label, b=args.b_label)
    df.to_csv(args.out, index=False, float_format="%.6g")
    tol = df[df.tolerance.notna()]
    print(f"wrote {args.out}: {len(df)} columns; the largest difference per tolerance: "
          + ", ".join(f"{t:g}: {g.max_abs_diff.max():.3g}" for t, g in tol.groupby("tolerance")))


if __name__ == "__main__":
    main()
