//! Drift: is a head's flag rate over the last window out of line with its trailing baseline?
//!
//! The baseline is the trailing history cut into windows of the same length; its mean is the
//! expected rate and the spread of the window rates its standard deviation. The spread is never
//! taken below the binomial noise of the current window (`sqrt(p(1-p)/n)`), so a quiet baseline
//! does not turn sampling noise into alerts.

use serde::{Deserialize, Serialize};

/// When drift is flagged.
#[derive(Clone, Copy, Debug)]
pub struct DriftConfig {
    /// Alert when the rate is this many standard deviations from the baseline.
    pub sigmas: f64,
    /// Window length, in seconds (a multiple of the 10-second bucket).
    pub window_secs: u64,
    /// Baseline length, in seconds, before the window.
    pub baseline_secs: u64,
    /// Fewest comments in the window for a verdict.
    pub min_count: u64,
    /// Fewest baseline windows with data for a verdict.
    pub min_windows: usize,
}

impl Default for DriftConfig {
    fn default() -> Self {
        Self {
            sigmas: 4.0,
            window_secs: 60,
            baseline_secs: 1800,
            min_count: 100,
            min_windows: 5,
        }
    }
}

/// One head's drift verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DriftStatus {
    /// Head name.
    pub head: String,
    /// Flag rate over the window.
    pub rate: f64,
    /// Baseline flag rate.
    pub baseline: f64,
    /// Standard deviation used.
    pub sigma: f64,
    /// `(rate - baseline) / sigma`.
    pub z: f64,
    /// `|z| >= sigmas`.
    pub alert: bool,
}

/// Judges one head: `window` is (comments, flagged) of the current window, `history` the same
/// for each earlier window of the baseline (any order). `None` when there is too little data.
pub fn assess(
    head: &str,
    window: (u64, u64),
    history: &[(u64, u64)],
    cfg: &DriftConfig,
) -> Option<DriftStatus> {
    let (n, k) = window;
    if n < cfg.min_count.max(1) {
        return None;
    }
    let rates: Vec<f64> = history
        .iter()
        .filter(|(n, _)| *n >= cfg.min_count.max(1))
        .map(|&(n, k)| k as f64 / n as f64)
        .collect();
    if rates.len() < cfg.min_windows.max(2) {
        return None;
    }
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let var = rates.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (rates.len() - 1) as f64;
    let rate = k as f64 / n as f64;
    let binomial =
        (mean.clamp(1e-3, 1.0 - 1e-3) * (1.0 - mean.clamp(1e-3, 1.0 - 1e-3)) / n as f64).sqrt();
    let sigma = var.sqrt().max(binomial);
    let z = (rate - mean) / sigma;
    Some(DriftStatus {
        head: head.to_string(),
        rate,
        baseline: mean,
        sigma,
        z,
        alert: z.abs() >= cfg.sigmas,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic stream of windows around `rate` (±10% of the rate, alternating).
    fn steady(rate: f64, windows: usize, n: u64) -> Vec<(u64, u64)> {
        (0..windows)
            .map(|i| {
                let wobble = if i % 2 == 0 { 1.1 } else { 0.9 };
                (n, (rate * wobble * n as f64).round() as u64)
            })
            .collect()
    }

    #[test]
    fn a_steady_stream_raises_no_alert() {
        let history = steady(0.12, 30, 1000);
        let s =
            assess("offensive", (1000, 125), &history, &DriftConfig::default()).expect("enough");
        assert!(!s.alert, "{s:?}");
        assert!((s.baseline - 0.12).abs() < 0.005);
    }

    #[test]
    fn a_jump_in_the_flag_rate_is_flagged_both_ways() {
        let history = steady(0.12, 30, 1000);
        let cfg = DriftConfig::default();
        let up = assess("offensive", (1000, 300), &history, &cfg).expect("enough");
        assert!(up.alert && up.z > 4.0, "{up:?}");
        let down = assess("offensive", (1000, 10), &history, &cfg).expect("enough");
        assert!(down.alert && down.z < -4.0, "{down:?}");
    }

    #[test]
    fn too_little_data_gives_no_verdict_and_a_flat_baseline_uses_binomial_noise() {
        let cfg = DriftConfig::default();
        assert!(assess("h", (50, 40), &steady(0.1, 30, 1000), &cfg).is_none());
        assert!(assess("h", (1000, 400), &steady(0.1, 3, 1000), &cfg).is_none());
        // Identical baseline windows: the spread is 0, the binomial floor keeps noise quiet.
        let flat = vec![(1000, 100); 30];
        let s = assess("h", (1000, 115), &flat, &cfg).expect("enough");
        assert!(!s.alert && s.sigma > 0.009, "{s:?}");
    }
}
