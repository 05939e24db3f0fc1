"""Coverage of the intervals over seeds that every fit over seeds uses, on synthetic tables from a known
law (kanlib.analysis.fits.seed_lines_power_law / predict_over_seeds), against a percentile bootstrap
over seeds (whole seeds resampled, OLS refitted; written out below as the reference).

Each draw: S seeds, N = 100 ... 6400 doubling, y = exp(2 - gamma_s ln N + u_s + e), gamma_s = 3 +
slope_sd z_s (the seeds' own exponents), u_s ~ N(0, 0.5^2) (seed offsets), e ~ N(0, noise^2) per point.
Prints the share of draws whose 95% interval holds the true gamma (3), whose prediction interval at
N = 6400 from the other sizes holds the geometric mean over the same seeds measured there, and whose
new-seed interval holds one further seed's value.

    python benchmarks/frontier_coverage.py --draws 1000
"""

from __future__ import annotations

import argparse

import numpy as np

from kanlib.analysis.fits import predict_over_seeds, seed_lines_power_law

N = np.array([100, 200, 400, 800, 1600, 3200, 6400], dtype=float)


def draw(rng, seeds: int, noise: float, slope_sd: float):
    x, y, g = [], [], []
    for seed in range(seeds + 1):  # the last one plays the new seed
        slope = 3.0 + rng.normal(0, slope_sd)
        x.append(N)
        y.append(np.exp(2.0 - slope * np.log(N) + rng.normal(0, 0.5) + rng.normal(0, noise, N.size)))
        g.append(np.full(N.size, seed))
    x, y, g = np.concatenate(x), np.concatenate(y), np.concatenate(g)
    new = g == seeds
    return x[~new], y[~new], g[~new], y[new][-1]


def percentile_bootstrap(x, y, groups, n_boot: int, rng) -> tuple[float, float]:
    """95% percentile interval of the OLS exponent of log y on log x over resampled whole seeds."""
    labels, index = np.unique(groups, return_inverse=True)
    counts = rng.multinomial(labels.size, np.full(labels.size, 1 / labels.size), size=n_boot)
    weights = counts[:, index].astype(float)  # (n_boot, points): a seed drawn twice counts twice
    log_x, log_y = np.log(x), np.log(y)
    mean_x = weights @ log_x / weights.sum(1)
    mean_y = weights @ log_y / weights.sum(1)
    dx, dy = log_x - mean_x[:, None], log_y - mean_y[:, None]
    slopes = -(weights * dx * dy).sum(1) / (weights * dx * dx).sum(1)
    return tuple(np.quantile(slopes, [0.025, 0.975]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    print(f"{args.draws} draws per row; nominal 95%")
    print("| seeds | point noise | seed slope sd | bootstrap percentile | seed lines t | held-out mean | new seed |")
    print("|---|---|---|---|---|---|---|")
    for seeds in (3, 5, 10):
        for noise, slope_sd in ((0.3, 0.0), (0.3, 0.2), (1.0, 0.1)):
            rng = np.random.default_rng(seeds * 100 + int(noise * 10))
            hits = np.zeros(4)
            for _ in range(args.draws):
                x, y, g, new_value = draw(rng, seeds, noise, slope_sd)
                boot_low, boot_high = percentile_bootstrap(x, y, g, 500, rng)
                lines = seed_lines_power_law(x, y, g)
                fitted = x < N[-1]
                _, low, high = predict_over_seeds(x[fitted], y[fitted], g[fitted], N[-1])
                measured = np.exp(np.log(y[~fitted]).mean())
                _, new_low, new_high = predict_over_seeds(x[fitted], y[fitted], g[fitted], N[-1], new_seed=True)
                hits += [
                    boot_low <= 3 <= boot_high,
                    lines.alpha_low <= 3 <= lines.alpha_high,
                    low <= measured <= high,
                    new_low <= new_value <= new_high,
                ]
            shares = " | ".join(f"{h / args.draws:.3f}" for h in hits)
            print(f"| {seeds} | {noise} | {slope_sd} | {shares} |")


if __name__ == "__main__":
    main()
