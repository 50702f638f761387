//! Latency samples and their percentiles.

use serde_json::{json, Value};
use std::time::Duration;

/// Latencies in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    micros: Vec<u64>,
    sorted: bool,
}

impl Latencies {
    pub fn with_capacity(n: usize) -> Latencies {
        Latencies {
            micros: Vec::with_capacity(n),
            sorted: true,
        }
    }

    pub fn record(&mut self, d: Duration) {
        self.micros.push(d.as_micros() as u64);
        self.sorted = false;
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.micros.sort_unstable();
            self.sorted = true;
        }
    }

    /// The nearest-rank percentile `q` (0 < q <= 1), in milliseconds; 0 with no samples.
    pub fn percentile_ms(&mut self, q: f64) -> f64 {
        self.sort();
        if self.micros.is_empty() {
            return 0.0;
        }
        let rank = (q * self.micros.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.micros.len()) - 1;
        self.micros[i] as f64 / 1000.0
    }

    pub fn max_ms(&mut self) -> f64 {
        self.percentile_ms(1.0)
    }

    /// p50, p99, p99.9 and max as JSON (milliseconds).
    pub fn summary(&mut self) -> Value {
        json!({
            "samples": self.len(),
            "p50_ms": self.percentile_ms(0.50),
            "p99_ms": self.percentile_ms(0.99),
            "p999_ms": self.percentile_ms(0.999),
            "max_ms": self.max_ms(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut l = Latencies::default();
        for us in (1..=1000).rev() {
            l.record(Duration::from_micros(us * 1000));
        }
        assert_eq!(l.percentile_ms(0.5), 500.0);
        assert_eq!(l.percentile_ms(0.99), 990.0);
        assert_eq!(l.percentile_ms(0.999), 999.0);
        assert_eq!(l.max_ms(), 1000.0);
        assert_eq!(Latencies::default().percentile_ms(0.5), 0.0);
    }
}
