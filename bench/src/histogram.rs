//! The latency histogram: `hdrhistogram` (3 significant digits, growing as
//! needed) plus the exact maximum and mean the report prints.

/// A latency histogram of nanosecond values.
#[derive(Debug, Clone)]
pub struct Histogram {
    hdr: hdrhistogram::Histogram<u64>,
    max: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Histogram {
            // 3 significant digits is always a valid precision.
            hdr: hdrhistogram::Histogram::new(3).expect("3 significant digits"),
            max: 0,
            sum: 0,
        }
    }

    /// Counts one value.
    pub fn record(&mut self, value: u64) {
        // `record` grows the histogram; only values beyond its largest
        // possible range (over 2^62 ns) are clamped.
        if self.hdr.record(value).is_err() {
            self.hdr.saturating_record(value);
        }
        self.max = self.max.max(value);
        self.sum += u128::from(value);
    }

    /// Adds all values of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        // Both auto-resize, so adding cannot run out of range.
        let _ = self.hdr.add(&other.hdr);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of values counted.
    pub fn count(&self) -> u64 {
        self.hdr.len()
    }

    /// The largest value counted (exact).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean value (exact), 0 when empty.
    pub fn mean(&self) -> u64 {
        match self.count() {
            0 => 0,
            n => u64::try_from(self.sum / u128::from(n)).unwrap_or(u64::MAX),
        }
    }

    /// The value below which a fraction `q` (0..=1) of the values lie
    /// (to 3 significant digits, never above the exact maximum); 0 when
    /// empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count() == 0 {
            return 0;
        }
        self.hdr.value_at_quantile(q).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_mean_and_max() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5);
        assert!((499_000..=501_000).contains(&p50), "{p50}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        assert_eq!(h.max(), 1_000_000);
        assert_eq!(h.mean(), 500_500);
        assert_eq!(h.count(), 1000);
        let mut other = Histogram::new();
        other.record(u64::MAX / 4);
        h.merge(&other);
        assert_eq!((h.count(), h.max()), (1001, u64::MAX / 4));
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
