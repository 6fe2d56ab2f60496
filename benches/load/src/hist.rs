//! A small HDR-style histogram: log-bucketed with 128 linear sub-buckets per power of two (under
//! 0.8% relative error), lock-free to record into.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

const SUB_BITS: u32 = 7;
const SUB: u64 = 1 << SUB_BITS;
/// Indices run up to `56 * 128 + 255` for `u64::MAX`.
const BUCKETS: usize = 7424;

fn index(value: u64) -> usize {
    if value < 2 * SUB {
        value as usize
    } else {
        let exponent = 63 - value.leading_zeros();
        let shift = exponent - SUB_BITS;
        shift as usize * SUB as usize + (value >> shift) as usize
    }
}

/// The middle of the values bucket `index` holds.
fn value_of(index: usize) -> u64 {
    if index < 2 * SUB as usize {
        return index as u64;
    }
    let shift = (index / SUB as usize - 1) as u32;
    let mantissa = (index % SUB as usize) as u64 + SUB;
    (mantissa << shift) + ((1u64 << shift) >> 1)
}

pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

/// A copy of a histogram's counts, to read percentiles from.
pub struct Snapshot {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Histogram {
    pub fn record(&self, value: u64) {
        self.buckets[index(value)].fetch_add(1, Relaxed);
        if value > self.max.load(Relaxed) {
            self.max.fetch_max(value, Relaxed);
        }
    }

    /// Copies the counts; with `reset`, empties the histogram at the same time.
    pub fn snapshot(&self, reset: bool) -> Snapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| {
                if reset {
                    b.swap(0, Relaxed)
                } else {
                    b.load(Relaxed)
                }
            })
            .collect();
        let max = if reset {
            self.max.swap(0, Relaxed)
        } else {
            self.max.load(Relaxed)
        };
        Snapshot {
            total: counts.iter().sum(),
            counts,
            max,
        }
    }
}

impl Snapshot {
    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value below which a fraction `q` of the recorded values lie (0 when empty).
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let target = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return value_of(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_close() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            255,
            256,
            257,
            511,
            512,
            1_000_000,
            u64::MAX / 3,
            u64::MAX,
        ] {
            let i = index(v);
            assert!(i >= last && i < BUCKETS);
            last = i;
            let back = value_of(i);
            let err = (back as f64 - v as f64).abs() / (v.max(1) as f64);
            assert!(err < 0.01, "{v} -> {back}");
        }
    }
}
