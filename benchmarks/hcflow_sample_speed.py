"""HCFlow sampling speed: the plain reverse pass against the cached, batched one (`HCFlow.sample`); prints and writes JSON.

    python benchmarks/hcflow_sample_speed.py --config sr_div2k_4x --lr-size 64 --samples 8 --threads 1     # the full setting
    python benchmarks/hcflow_sample_speed.py --config sr_small_4x --lr-size 16 --samples 2 --repeat 1      # a short check

"plain" draws each sample with `HCFlow.decode(lr, eps)`, which runs the conditional feature extraction (the RRDB trunks
of every level) for every sample; "cached" is `HCFlow.sample(lr, n, batch_size=...)`: the LR-only work once
(`HCFlowNet.lr_cache`), then the latent-dependent rest `batch_size` samples at a time (default: the library's,
`core.default_batch_size`, 2 on CPU: larger batches make the level-0 RRDB activations outgrow the CPU caches and
lose more than batching gains). Only the deepest level's features are LR-only, so caching alone speeds up by at most
1 / (1 - LR-only share of a plain sample), reported as `speedup_ceiling`; the rest of `speedup` is batching's gain
(`plain_batched_s_per_sample`: the plain decode in the same batches, no cache). Random weights (ActNorms initialised from a
random batch, zero-initialised parameters perturbed): the cost does not depend on the values.

Exactness, two checks (the run refuses to write the JSON if either fails):
- float64 (the bug detector): on a small LR (`--check-lr-size`), the cached and plain decodes of the same latents in
  float64 must agree to 1e-10 (`float64_max_abs_diff`); a wrong cache (stale features, a mis-split convolution) is
  off by orders of magnitude more.
- float32: the same draws give samples equal up to float32 rounding, which the deep random-weight flow amplifies far
  above 1e-7. Its scale is measured on the plain path itself: the same draws decoded by `decode` in batches of
  max(2, `batch_size`) against one by one (`plain_noise_floor`, max |difference| of the clamped samples, a mere change of
  summation order). The cached samples must stay within 4x that floor of the plain ones (`max_abs_diff`; 4x: the
  maximum over pixels of two independent rounding patterns through the same Jacobian varies by about 2x run to run).
Reported: seconds per sample (wall, minimum over `--repeat` runs, and CPU time of that run) for plain, plain batched and
cached, the ratio plain / cached, the LR-only share of a plain sample, the git sha, torch version, threads, load and the
whole config. Results: benchmarks/results/hcflow_sample_speed_<config>_lr<size>_n<samples>_threads<t>.json
"""
from __future__ import annotations
import argparse, copy, json, os, platform, sys, time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from srflow_nb.core import git_sha, machine_info  # noqa: E402
from srflow_nb.hcflow import HCFlow, HCFlowConfig  # noqa: E402
from srflow_nb.core import default_batch_size  # noqa: E402
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
    p.add_argument("--batch-size", type=int, default=None, help="samples decoded at once (default: core.default_batch_size)")
    p.add_argument("--check-lr-size", type=int, default=8, help="LR side of the float64 exactness check")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=2, help="runs of each path; the fastest counts")
    p.add_argument("--out", default=None, help="JSON file (default: benchmarks/results/hcflow_sample_speed_<...>.json)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model, n = build(a.config), a.samples
    bs = a.batch_size or default_batch_size("cpu")
    fb = max(bs, 2)                                                            # the floor's batches: never one by one
    lr = torch.rand(1, 3, a.lr_size, a.lr_size, generator=torch.Generator().manual_seed(2))
    draws = lambda: [model.sample_eps(lr, a.temperature, g) for g in [torch.Generator().manual_seed(3)] for _ in range(n)]

    def plain(): return torch.stack([model.decode(lr, e).clamp(0, 1) for e in draws()])
    def plain_batched():
        eps = draws()
        return torch.cat([model.decode(lr.repeat(len(c), 1, 1, 1), [torch.cat(e) for e in zip(*c)]).clamp(0, 1)
                          for c in (eps[i:i + fb] for i in range(0, n, fb))]).unsqueeze(1)     # (n, 1, C, H, W), as plain
    def cached(): return model.sample(lr, n, a.temperature, torch.Generator().manual_seed(3), batch_size=bs)

    with torch.inference_mode():
        model.sample(lr, 1, a.temperature)                                     # warm-up (allocations, inverse 1x1 caches)
        sr_plain, w_plain, c_plain = timed(plain, a.repeat)
        sr_fast, w_fast, c_fast = timed(cached, a.repeat)
        sr_pb, w_pb, c_pb = timed(plain_batched, 1)
        _, w_cache, _ = timed(lambda: model.flow.lr_cache(lr), a.repeat)
    m64 = copy.deepcopy(model).double()                                        # outside inference_mode (cached inverse 1x1 weights)
    lr64 = torch.rand(1, 3, a.check_lr_size, a.check_lr_size, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    with torch.no_grad():
        g64 = torch.Generator().manual_seed(5)
        f64 = max((m64.flow.decode_cached(m64.flow.lr_cache(lr64), e) - m64.flow.decode(lr64, e)).abs().max().item()
                  for e in [m64.sample_eps(lr64, a.temperature, g64) for _ in range(2)])
    diff, floor = (sr_plain - sr_fast).abs().max().item(), (sr_plain - sr_pb).abs().max().item()
    share = w_cache / (w_plain / n)
    res = dict(benchmark="hcflow_sample_speed", git_sha=git_sha(ROOT), torch=torch.__version__, machine=machine_info(), arch=platform.machine(),
               date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_avg=os.getloadavg()[0],
               config=dict(vars(a), batch_size=bs, model=asdict(model.config), params=sum(q.numel() for q in model.parameters())),
               plain_s_per_sample=w_plain / n, plain_batched_s_per_sample=w_pb / n, cached_s_per_sample=w_fast / n,
               plain_cpu_s_per_sample=c_plain / n, plain_batched_cpu_s_per_sample=c_pb / n, cached_cpu_s_per_sample=c_fast / n,
               speedup=w_plain / w_fast, lr_cache_s=w_cache, lr_only_share_of_plain_sample=share, speedup_ceiling=1 / (1 - share),
               max_abs_diff=diff, plain_noise_floor=floor, float64_max_abs_diff=f64)
    print(f"{a.config}, LR {a.lr_size}x{a.lr_size}, {n} samples, batch {bs}, {a.threads} thread(s): plain {res['plain_s_per_sample']:.3f} s/sample "
          f"(batched {res['plain_batched_s_per_sample']:.3f}), cached {res['cached_s_per_sample']:.3f} s/sample, ratio plain/cached x{res['speedup']:.2f} "
          f"(LR-only work {100 * share:.0f}% of a plain sample: ceiling x{res['speedup_ceiling']:.2f}); max |diff| {diff:.2e} "
          f"(plain's own float32 floor {floor:.2e}), float64 max |diff| {f64:.1e}")
    if f64 > 1e-10: sys.exit(f"float64: cached and plain decodes differ by {f64:.2e} > 1e-10: the cache is wrong")
    if diff > 4 * floor: sys.exit(f"cached samples differ from the plain ones by {diff:.2e} > 4 x the plain path's own float32 floor {floor:.2e}")
    out = Path(a.out or ROOT / "benchmarks" / "results" / f"hcflow_sample_speed_{a.config}_lr{a.lr_size}_n{n}_threads{a.threads}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    print("wrote", out.relative_to(ROOT) if out.is_relative_to(ROOT) else out)
    return res


if __name__ == "__main__":
    main()
