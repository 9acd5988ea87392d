"""HCFlow sampling speed: the plain reverse pass against the cached, batched one (`HCFlow.sample`); prints and writes JSON.

    python benchmarks/hcflow_sample_speed.py --config sr_div2k_4x --lr-size 64 --samples 8 --threads 1     # the full setting
    python benchmarks/hcflow_sample_speed.py --config sr_small_4x --lr-size 16 --samples 2 --repeat 1      # a short check

"plain" draws each sample with `HCFlow.decode(lr, eps)`, which runs the conditional feature extraction (the RRDB trunks
of every level) for every sample; "cached" is `HCFlow.sample(lr, n, cache=None, batch_size=...)`: the LR-only work once
(`HCFlowNet.lr_cache`), then the latent-dependent rest `batch_size` samples at a time. Both draw the same latents (same
generator seed), so the samples must agree (max |difference| reported, must be <= 1e-4). Random weights (ActNorms
initialised from a random batch, zero-initialised parameters perturbed): the cost does not depend on the values.
Reported: seconds per sample (wall, minimum over `--repeat` runs, and CPU time of that run), the ratio plain / cached,
the share of one plain sample spent in the LR-only work, the git sha, torch version, threads and the whole config.
Results: benchmarks/results/hcflow_sample_speed_<config>_lr<size>_n<samples>_threads<t>.json
"""
from __future__ import annotations
import argparse, json, os, platform, sys, time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from srflow_nb.core import git_sha  # noqa: E402
from srflow_nb.hcflow import HCFlow, HCFlowConfig  # noqa: E402
from srflow_nb.testing import perturb_zero_params  # noqa: E402


def build(config: str, seed: int = 0) -> HCFlow:
    torch.manual_seed(seed)
    model = HCFlow(getattr(HCFlowConfig, config)())
    hr = torch.rand(2, 3, 8 * model.scale, 8 * model.scale, generator=torch.Generator().manual_seed(seed + 1))
    model.initialize(hr)
    perturb_zero_params(model, 0.01, torch.Generator().manual_seed(seed))
    return model.eval()


def timed(fn, repeat: int):
    "(output, best wall seconds, CPU seconds of that run) over `repeat` runs."
    best = None
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        w, c = time.perf_counter() - w, time.process_time() - c
        if best is None or w < best[1]: best = (out, w, c)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="sr_div2k_4x", help="an HCFlowConfig preset (sr_div2k_4x, sr_small_4x, rescaling_div2k_4x, ...)")
    p.add_argument("--lr-size", type=int, default=64, help="LR side in pixels")
    p.add_argument("--samples", type=int, default=8, help="samples of one LR image")
    p.add_argument("--batch-size", type=int, default=None, help="samples decoded at once by the cached path (default: all)")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2, help="runs of each path; the fastest counts")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/hcflow_sample_speed_<...>.json)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, n = build(a.config), a.samples
    lr = torch.rand(1, 3, a.lr_size, a.lr_size, generator=torch.Generator().manual_seed(2))

    def plain():
        g = torch.Generator().manual_seed(3)
        return torch.stack([model.decode(lr, None, a.temperature, g).clamp(0, 1) for _ in range(n)])

    def cached(): return model.sample(lr, n, a.temperature, torch.Generator().manual_seed(3), batch_size=a.batch_size)

    with torch.inference_mode():
        model.sample(lr, 1, a.temperature)                                     # warm-up (allocations, inverse 1x1 caches)
        sr_plain, w_plain, c_plain = timed(plain, a.repeat)
        sr_fast, w_fast, c_fast = timed(cached, a.repeat)
        _, w_cache, _ = timed(lambda: model.flow.lr_cache(lr), a.repeat)
    diff = (sr_plain - sr_fast).abs().max().item()
    res = dict(benchmark="hcflow_sample_speed", git_sha=git_sha(ROOT), torch=torch.__version__, machine=platform.machine(),
               date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_avg=os.getloadavg()[0],
               config=dict(vars(a), model=asdict(model.config), params=sum(q.numel() for q in model.parameters())),
               plain_s_per_sample=w_plain / n, cached_s_per_sample=w_fast / n,
               plain_cpu_s_per_sample=c_plain / n, cached_cpu_s_per_sample=c_fast / n,
               speedup=w_plain / w_fast, lr_cache_s=w_cache, lr_only_share_of_plain_sample=w_cache / (w_plain / n),
               max_abs_diff=diff)
    print(f"{a.config}, LR {a.lr_size}x{a.lr_size}, {n} samples, {a.threads} thread(s): plain {res['plain_s_per_sample']:.3f} s/sample, "
          f"cached {res['cached_s_per_sample']:.3f} s/sample, ratio plain/cached x{res['speedup']:.2f} "
          f"(LR-only work {100 * res['lr_only_share_of_plain_sample']:.0f}% of a plain sample), max |diff| {diff:.2e}")
    if diff > 1e-4: sys.exit(f"cached samples differ from the plain ones by {diff:.2e} > 1e-4")
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"hcflow_sample_speed_{a.config}_lr{a.lr_size}_n{n}_threads{a.threads}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print("wrote", out.relative_to(ROOT) if out.is_relative_to(ROOT) else out)
    return res


if __name__ == "__main__":
    main()
