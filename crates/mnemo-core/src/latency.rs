//! Latency summaries of one sampling window: an exact count and a bounded uniform sample
//! (reservoir sampling, algorithm R) from which percentiles are read by nearest rank.
//!
//! The caller supplies the randomness (`pick(n)` must return a uniform integer in `0..n`), so the
//! algorithm stays deterministic under test.

/// Observations of one window: how many, how many failed, and at most `capacity` of the values.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    capacity: usize,
    count: u64,
    errors: u64,
    sample: Vec<f64>,
}

impl Window {
    /// A window keeping at most `capacity` values (at least 1).
    pub fn new(capacity: usize) -> Window {
        Window {
            capacity: capacity.max(1),
            count: 0,
            errors: 0,
            sample: Vec::new(),
        }
    }

    /// Records one observation. Each of the `count` observations so far has the same chance to be
    /// in the sample.
    pub fn record(&mut self, value: f64, error: bool, pick: impl FnOnce(u64) -> u64) {
        self.count += 1;
        if error {
            self.errors += 1;
        }
        if self.sample.len() < self.capacity {
            self.sample.push(value);
        } else {
            let j = pick(self.count);
            if let Some(slot) = usize::try_from(j).ok().and_then(|j| self.sample.get_mut(j)) {
                *slot = value;
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// The `q`-quantiles (each in `0.0..=1.0`) of the sample by nearest rank; `None` when empty.
    pub fn percentiles(&self, qs: &[f64]) -> Option<Vec<f64>> {
        if self.sample.is_empty() {
            return None;
        }
        let mut sorted: Vec<f64> = self
            .sample
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        Some(qs.iter().map(|&q| nearest_rank(&sorted, q)).collect())
    }
}

/// The nearest-rank `q`-quantile of a non-empty sorted slice: the smallest value with at least
/// `q` of the values at or below it.
pub fn nearest_rank(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let q = if q.is_nan() { 0.5 } else { q.clamp(0.0, 1.0) };
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn percentiles_of_one_to_hundred_are_their_ranks() {
        let mut w = Window::new(1000);
        for v in 1..=100 {
            w.record(f64::from(v), false, |_| 0);
        }
        assert_eq!(
            w.percentiles(&[0.5, 0.95, 0.99, 1.0]),
            Some(vec![50.0, 95.0, 99.0, 100.0])
        );
    }

    #[test]
    fn an_empty_window_has_no_percentiles() {
        assert_eq!(Window::new(8).percentiles(&[0.5]), None);
    }

    #[test]
    fn a_full_reservoir_replaces_the_picked_slot_and_keeps_counting() {
        let mut w = Window::new(2);
        w.record(1.0, false, |_| 0);
        w.record(2.0, true, |_| 0);
        w.record(3.0, false, |n| {
            assert_eq!(n, 3);
            1
        });
        w.record(4.0, false, |_| 7);
        assert_eq!(w.count(), 4);
        assert_eq!(w.errors(), 1);
        assert_eq!(w.percentiles(&[0.0, 1.0]), Some(vec![1.0, 3.0]));
    }

    proptest! {
        #[test]
        fn the_sample_never_exceeds_capacity_and_percentiles_are_ordered(
            values in proptest::collection::vec(0.0f64..1e6, 1..500),
            capacity in 1usize..64,
            seed in any::<u64>(),
        ) {
            let mut w = Window::new(capacity);
            let mut state = seed | 1;
            for v in &values {
                w.record(*v, false, |n| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state % n
                });
            }
            prop_assert_eq!(w.count(), values.len() as u64);
            prop_assert!(w.sample.len() <= capacity);
            let p = w.percentiles(&[0.5, 0.95, 0.99]).expect("non-empty");
            prop_assert!(p[0] <= p[1] && p[1] <= p[2]);
            let min = values.iter().copied().fold(f64::INFINITY, f64::min);
            let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            prop_assert!(p[0] >= min && p[2] <= max);
        }
    }
}
