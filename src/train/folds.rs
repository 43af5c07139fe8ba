//! Stratified k-fold assignment: every choice `train` makes is scored on rows the candidate was
//! not fit on, and every fold holds its share of every stratum (class, and for stance the target
//! too), so a rare class or a small target is never missing from a fold.

/// The fold (`0..k`) of every row, given each row's stratum.
///
/// Rows of one stratum are shuffled with a seeded generator and dealt round-robin, starting
/// where the previous stratum stopped, so fold sizes differ by at most one row overall and a
/// stratum's count differs by at most one between folds. The same strata, `k` and `seed` give
/// the same folds on every machine.
pub fn stratified(strata: &[u64], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut order: Vec<usize> = (0..strata.len()).collect();
    // Group by stratum (stable, so the row order inside a stratum is the input order).
    order.sort_by_key(|&i| strata[i]);
    let mut folds = vec![0; strata.len()];
    let mut next = 0;
    let mut rng = SplitMix64(seed);
    for group in order.chunk_by(|&a, &b| strata[a] == strata[b]) {
        let mut rows = group.to_vec();
        shuffle(&mut rows, &mut rng);
        for r in rows {
            folds[r] = next;
            next = (next + 1) % k;
        }
    }
    folds
}

/// The (fit, held-out) rows of every fold of `folds` (each row's fold), leaving out a fold with
/// nothing to fit or nothing to hold out.
pub fn split(folds: &[usize]) -> Vec<(Vec<usize>, Vec<usize>)> {
    let k = folds.iter().max().map_or(0, |m| m + 1);
    (0..k)
        .map(|f| {
            let (held, fit): (Vec<usize>, Vec<usize>) =
                (0..folds.len()).partition(|&i| folds[i] == f);
            (fit, held)
        })
        .filter(|(fit, held)| !fit.is_empty() && !held.is_empty())
        .collect()
}

/// The stratum of a row: its data set, target and class packed into one key.
pub fn stratum(dataset: usize, target: Option<usize>, class: u32) -> u64 {
    let t = target.map_or(0, |t| t as u64 + 1);
    ((dataset as u64) << 40) | (t << 20) | u64::from(class)
}

/// Fisher–Yates with a seeded generator.
fn shuffle(v: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = (rng.next() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// SplitMix64 (Steele et al. 2014): tiny, seedable, and the same on every platform.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 targets × 3 classes with uneven counts, as a stance data set has.
    fn stance_strata() -> Vec<u64> {
        let mut s = Vec::new();
        for t in 0..3 {
            for class in 0..3u32 {
                for _ in 0..(7 + 5 * t + 3 * class as usize) {
                    s.push(stratum(0, Some(t), class));
                }
            }
        }
        s
    }

    #[test]
    fn every_fold_holds_every_target_and_class_in_proportion() {
        let strata = stance_strata();
        let folds = stratified(&strata, 5, 7);
        let mut keys: Vec<u64> = strata.clone();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let per_fold: Vec<usize> = (0..5)
                .map(|f| {
                    (0..strata.len())
                        .filter(|&i| strata[i] == key && folds[i] == f)
                        .count()
                })
                .collect();
            let (lo, hi) = (per_fold.iter().min(), per_fold.iter().max());
            assert!(hi.zip(lo).is_some_and(|(h, l)| h - l <= 1), "{per_fold:?}");
            assert!(per_fold.iter().all(|&n| n > 0), "{key}: {per_fold:?}");
        }
        let sizes: Vec<usize> = (0..5)
            .map(|f| folds.iter().filter(|&&x| x == f).count())
            .collect();
        assert!(sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1);
    }

    #[test]
    fn folds_are_deterministic_and_depend_on_the_seed() {
        let strata = stance_strata();
        assert_eq!(stratified(&strata, 5, 1), stratified(&strata, 5, 1));
        assert_ne!(stratified(&strata, 5, 1), stratified(&strata, 5, 2));
    }

    #[test]
    fn stratum_keeps_data_set_target_and_class_apart() {
        assert_ne!(stratum(0, None, 1), stratum(0, Some(0), 1));
        assert_ne!(stratum(0, Some(1), 0), stratum(1, Some(1), 0));
        assert_ne!(stratum(0, Some(0), 2), stratum(0, Some(2), 0));
    }
}
