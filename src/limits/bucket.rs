//! The handshake rate limit: a rate such as `"20/s"` and the token bucket
//! arithmetic, kept as plain integers so that its state fits in the shared
//! table (see `table.rs`).

use std::fmt;
use std::time::Duration;

/// Bucket contents are counted in thousandths of a token, so that slow
/// rates (`"1/m"`) refill smoothly with integer arithmetic.
const MILLI: u64 = 1000;

/// A rate of events: `count` per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Events allowed per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Parses `"20/s"`, `"100/m"`, `"1000/h"`, `"5/10s"` (count / a
    /// duration with unit, a bare unit meaning one of it).
    pub fn parse(text: &str) -> Option<Rate> {
        let (count, per) = text.trim().split_once('/')?;
        let count: u32 = count.trim().parse().ok().filter(|&n| n > 0)?;
        let per = per.trim();
        let per = match per {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => parse_period(other)?,
        };
        Some(Rate { count, per })
    }

    /// The period in milliseconds (at least 1).
    fn per_ms(&self) -> u64 {
        u64::try_from(self.per.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Milli-tokens gained in `elapsed_ms`, computed in one step so that
    /// slow rates lose no precision.
    fn gained_milli(&self, elapsed_ms: u64) -> u64 {
        let gained = u128::from(elapsed_ms) * u128::from(self.count) * u128::from(MILLI)
            / u128::from(self.per_ms());
        u64::try_from(gained).unwrap_or(u64::MAX)
    }
}

/// `"10s"`, `"5m"`, `"500ms"`, `"2h"`: a whole number and a unit.
fn parse_period(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok().filter(|&n| n > 0)?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:?}", self.count, self.per)
    }
}

/// A token bucket's state: milli-tokens and the time (ms on the table's
/// clock) they were last counted at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    /// Thousandths of a token available.
    pub milli: u64,
    /// When `milli` was last brought up to date, in ms.
    pub at_ms: u64,
}

impl Bucket {
    /// A full bucket of `burst` tokens at time `now_ms`.
    #[cfg(test)]
    pub fn full(burst: u32, now_ms: u64) -> Bucket {
        Bucket {
            milli: u64::from(burst) * MILLI,
            at_ms: now_ms,
        }
    }

    /// A bucket that is full whatever the burst it is used with (its
    /// contents are capped at the burst when it is first refilled).
    pub fn full_at_any_burst(now_ms: u64) -> Bucket {
        Bucket {
            milli: u64::MAX,
            at_ms: now_ms,
        }
    }

    /// Refills for the time since `at_ms` (capped at `burst`), then takes
    /// one token: `Ok` with the new state, or `Err` with how long until a
    /// token is available (the `Retry-After` to send).
    pub fn take(self, rate: Rate, burst: u32, now_ms: u64) -> Result<Bucket, Duration> {
        let now = self.refill(rate, burst, now_ms);
        if now.milli >= MILLI {
            return Ok(Bucket {
                milli: now.milli - MILLI,
                at_ms: now.at_ms,
            });
        }
        // Time for the missing milli-tokens: missing × per / (count × 1000).
        let missing = u128::from(MILLI - now.milli) * u128::from(rate.per_ms());
        let wait = missing.div_ceil(u128::from(rate.count) * u128::from(MILLI));
        Err(Duration::from_millis(
            u64::try_from(wait).unwrap_or(u64::MAX),
        ))
    }

    /// The state at `now_ms`: tokens gained since `at_ms`, capped at
    /// `burst`. A clock that went backwards counts as no time passed.
    pub fn refill(self, rate: Rate, burst: u32, now_ms: u64) -> Bucket {
        let cap = u64::from(burst) * MILLI;
        let elapsed = now_ms.saturating_sub(self.at_ms);
        let gained = rate.gained_milli(elapsed);
        Bucket {
            milli: self.milli.saturating_add(gained).min(cap),
            at_ms: now_ms.max(self.at_ms),
        }
    }

    /// Whether the bucket is full at `now_ms` (its slot holds no state
    /// worth keeping).
    pub fn is_full(self, rate: Rate, burst: u32, now_ms: u64) -> bool {
        self.refill(rate, burst, now_ms).milli >= u64::from(burst) * MILLI
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        let r = Rate::parse("20/s").unwrap();
        assert_eq!((r.count, r.per), (20, Duration::from_secs(1)));
        assert_eq!(Rate::parse("100/m").unwrap().per, Duration::from_secs(60));
        assert_eq!(Rate::parse("5/10s").unwrap().per, Duration::from_secs(10));
        assert_eq!(
            Rate::parse(" 3 / h ").unwrap().per,
            Duration::from_secs(3600)
        );
        for bad in ["20", "0/s", "x/s", "20/parsec", "20/0s", "-1/s"] {
            assert_eq!(Rate::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn burst_then_rate() {
        let rate = Rate::parse("2/s").unwrap();
        let mut b = Bucket::full(3, 0);
        for _ in 0..3 {
            b = b.take(rate, 3, 0).unwrap();
        }
        // Empty: the next token comes in 500 ms at 2/s.
        assert_eq!(b.take(rate, 3, 0), Err(Duration::from_millis(500)));
        assert_eq!(b.take(rate, 3, 200), Err(Duration::from_millis(300)));
        b = b.take(rate, 3, 500).unwrap();
        assert!(b.take(rate, 3, 500).is_err());
        // A long pause refills only up to the burst.
        let mut n = 0;
        while let Ok(next) = b.take(rate, 3, 60_000) {
            b = next;
            n += 1;
        }
        assert_eq!(n, 3);
        assert!(!b.is_full(rate, 3, 60_000));
        assert!(b.is_full(rate, 3, 62_000));
    }

    #[test]
    fn slow_rates_and_backwards_clocks() {
        let rate = Rate::parse("1/m").unwrap();
        let b = Bucket::full(1, 1000).take(rate, 1, 1000).unwrap();
        assert_eq!(b.take(rate, 1, 1000), Err(Duration::from_secs(60)));
        assert_eq!(b.take(rate, 1, 31_000), Err(Duration::from_secs(30)));
        assert!(b.take(rate, 1, 61_000).is_ok());
        // Time going backwards neither refills nor panics.
        assert_eq!(b.refill(rate, 1, 0), b);
    }
}
