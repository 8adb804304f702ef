//! nginx `limit_req`: the leaky bucket of `ngx_http_limit_req_module.c`, for one key.
//!
//! State per key: `excess` in 1/1000 requests and `last` in milliseconds
//! (`ngx_current_msec`); the zone's rate is stored ×1000 (`rate * 1000 / scale`, so `1r/m` is
//! 16), `burst` and the `delay` threshold ×1000. One request at `now_ms`:
//!
//! * **first request of the key:** a new node with `excess = 0`, `last = now` — admitted at
//!   once (it does *not* start at 1000);
//! * otherwise `ms = now - last` as a signed value, clamped: `ms < -60000 → 1`, `-60000 ≤ ms <
//!   0 → 0`; `excess = excess - rate * ms / 1000 + 1000` in nginx's unsigned arithmetic (the
//!   product and the quotient truncate), read back as signed and floored at 0;
//! * `excess > burst` → **rejected, and the node is left as it was** (`lookup` returns
//!   `NGX_BUSY` before storing); else `excess` is stored and `last = now` only if `ms != 0`;
//! * delay: `0` if `excess <= delay_threshold` (0, or `i64::MAX / 1000 * 1000` with
//!   `nodelay`), else `(excess - threshold) * 1000 / rate` ms, truncated; a zero delay admits.
//!
//! Invariants: `excess <= burst * 1000` after every admitted request; the state changes only on
//! admitted requests. Not modelled: several `limit_req` zones per location (the maximum delay
//! over zones), the `delay=` parameter, `limit_req_dry_run`, and expiry of idle nodes (only
//! another key's insertion evicts a node; one `LimitReq` is one key).
//!
//! Sources: nginx/nginx `src/http/modules/ngx_http_limit_req_module.c`
//! (`ngx_http_limit_req_lookup`, `ngx_http_limit_req_account`, `ngx_http_limit_req_zone`,
//! `ngx_http_limit_req`); policies.md §3.6.

use crate::time::{SimDuration, SimTime};

/// What `limit_req` does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitDecision {
    /// Passed at once.
    Admit,
    /// Admitted after this delay (only without `nodelay`).
    Delay(SimDuration),
    /// Rejected with `limit_req_status`.
    Reject,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    excess: u64,
    last_ms: u64,
}

/// One key's `limit_req` state.
#[derive(Debug, Clone)]
pub struct LimitReq {
    rate_x1000: u64,
    burst_x1000: u64,
    delay_x1000: u64,
    node: Option<Node>,
}

/// The zone rate in 1/1000 requests per second, truncated like nginx's `rate * 1000 / scale`
/// (a tiny bias keeps `0.29 * 1000` from truncating to 289). At least 1.
pub fn rate_x1000(rate_per_s: f64) -> u64 {
    ((rate_per_s * 1000.0 + 1e-6).floor() as u64).max(1)
}

impl LimitReq {
    /// A key with no requests yet: `rate_per_s` as `limit_req_zone rate=`, `burst` and
    /// `nodelay` as `limit_req`.
    pub fn new(rate_per_s: f64, burst: u32, nodelay: bool) -> LimitReq {
        LimitReq {
            rate_x1000: rate_x1000(rate_per_s),
            burst_x1000: u64::from(burst) * 1000,
            delay_x1000: if nodelay { (i64::MAX as u64) / 1000 * 1000 } else { 0 },
            node: None,
        }
    }

    /// The stored rate ×1000.
    pub fn rate_x1000(&self) -> u64 {
        self.rate_x1000
    }

    /// The stored excess in 1/1000 requests (0 before the first request).
    pub fn excess_x1000(&self) -> u64 {
        self.node.map_or(0, |n| n.excess)
    }

    /// One request at `now`: [`LimitDecision::Admit`], [`LimitDecision::Delay`] (admitted after
    /// the delay), or [`LimitDecision::Reject`] (state untouched).
    pub fn request(&mut self, now: SimTime) -> LimitDecision {
        let now_ms = now.as_nanos() / 1_000_000;
        let excess = match &mut self.node {
            None => {
                self.node = Some(Node { excess: 0, last_ms: now_ms });
                0
            }
            Some(node) => {
                let ms = clamp_ms(now_ms.wrapping_sub(node.last_ms) as i64);
                let drained = self.rate_x1000.wrapping_mul(ms as u64) / 1000;
                let e = (node.excess.wrapping_sub(drained).wrapping_add(1000) as i64).max(0) as u64;
                if e > self.burst_x1000 {
                    return LimitDecision::Reject;
                }
                node.excess = e;
                if ms != 0 {
                    node.last_ms = now_ms;
                }
                e
            }
        };
        self.decide(excess)
    }

    fn decide(&self, excess: u64) -> LimitDecision {
        if excess <= self.delay_x1000 {
            return LimitDecision::Admit;
        }
        match (excess - self.delay_x1000) * 1000 / self.rate_x1000 {
            0 => LimitDecision::Admit,
            d => LimitDecision::Delay(SimDuration::from_millis(d)),
        }
    }
}

/// nginx's treatment of a clock that stepped back: far back counts as 1 ms, a little as 0.
fn clamp_ms(ms: i64) -> i64 {
    if ms < -60_000 {
        1
    } else {
        ms.max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LimitDecision::{Admit, Delay, Reject};

    fn ms(m: u64) -> SimTime {
        SimTime::ZERO + SimDuration::from_millis(m)
    }

    fn delay(m: u64) -> LimitDecision {
        Delay(SimDuration::from_millis(m))
    }

    #[test]
    fn burst_excess_and_delay_by_hand() {
        // rate=2r/s -> 2000, burst=3 -> 3000.
        let mut l = LimitReq::new(2.0, 3, false);
        // t=0: new node, excess 0: admitted at once.
        assert_eq!(l.request(ms(0)), Admit);
        // t=0: ms 0 -> 0 - 0 + 1000 = 1000; delay 1000*1000/2000 = 500 ms.
        assert_eq!(l.request(ms(0)), delay(500));
        // t=100: 1000 - 2000*100/1000 + 1000 = 1800; delay 900 ms.
        assert_eq!(l.request(ms(100)), delay(900));
        // t=100: 1800 + 1000 = 2800; delay 1400 ms.
        assert_eq!(l.request(ms(100)), delay(1400));
        // t=100: 3800 > 3000: rejected, state untouched.
        assert_eq!(l.request(ms(100)), Reject);
        assert_eq!(l.excess_x1000(), 2800);
        // t=350: 2800 - 500 + 1000 = 3300 > 3000: rejected; `last` stays 100.
        assert_eq!(l.request(ms(350)), Reject);
        // t=600: from last=100, ms 500: 2800 - 1000 + 1000 = 2800 -> 1400 ms.
        assert_eq!(l.request(ms(600)), delay(1400));
        // t=10000: 2800 - 2000*9400/1000 + 1000 < 0 -> 0: admitted at once.
        assert_eq!(l.request(ms(10_000)), Admit);
        assert_eq!(l.excess_x1000(), 0);
    }

    #[test]
    fn nodelay_admits_what_would_be_delayed() {
        let mut l = LimitReq::new(2.0, 3, true);
        let got: Vec<_> = (0..5).map(|_| l.request(ms(0))).collect();
        // Excess 0, 1000, 2000, 3000 pass; 4000 > 3000 is rejected.
        assert_eq!(got, vec![Admit, Admit, Admit, Admit, Reject]);
        assert_eq!(l.excess_x1000(), 3000);
    }

    #[test]
    fn burst_zero_rejects_anything_faster_than_the_rate() {
        // 1r/s, burst 0: one request per second exactly.
        let mut l = LimitReq::new(1.0, 0, false);
        assert_eq!(l.request(ms(0)), Admit);
        // 0 - 1000*999/1000 + 1000 = 1 > 0: rejected.
        assert_eq!(l.request(ms(999)), Reject);
        // 0 - 1000 + 1000 = 0: admitted.
        assert_eq!(l.request(ms(1000)), Admit);
    }

    #[test]
    fn small_excess_rounds_to_no_delay() {
        // 3r/s = 3000; after 333 ms: 0 - 3000*333/1000 + 1000 = 1 -> delay 1*1000/3000 = 0.
        let mut l = LimitReq::new(3.0, 2, false);
        l.request(ms(0));
        assert_eq!(l.request(ms(333)), Admit);
        assert_eq!(l.excess_x1000(), 1);
        // Same ms again: 1001 -> 1001*1000/3000 = 333 ms.
        assert_eq!(l.request(ms(333)), delay(333));
    }

    #[test]
    fn sub_millisecond_times_truncate_to_the_millisecond() {
        let mut l = LimitReq::new(1.0, 5, false);
        l.request(SimTime(1_000_000)); // ms 1
                                       // 1.999999 ms is still ms 1 -> ms 0: 0 - 0 + 1000 = 1000 -> 1000 ms.
        assert_eq!(l.request(SimTime(1_999_999)), delay(1000));
        // ms 501: 1000 - 1000*500/1000 + 1000 = 1500 -> 1500 ms.
        assert_eq!(l.request(ms(501)), delay(1500));
    }

    #[test]
    fn clock_stepping_back_is_clamped_like_nginx() {
        let mut l = LimitReq::new(1.0, 10, false);
        l.request(ms(100_000));
        // 30 s back: ms -30000 -> 0: excess 1000, `last` stays 100000.
        assert_eq!(l.request(ms(70_000)), delay(1000));
        // 70 s back: ms -70000 -> 1: 1000 - 1 + 1000 = 1999, `last` = 30000.
        assert_eq!(l.request(ms(30_000)), delay(1999));
        assert_eq!(l.excess_x1000(), 1999);
        // 1 s after 30000: 1999 - 1000 + 1000 = 1999.
        assert_eq!(l.request(ms(31_000)), delay(1999));
    }

    #[test]
    fn rates_truncate_to_thousandths_like_nginx() {
        assert_eq!(rate_x1000(1.0 / 60.0), 16, "1r/m");
        assert_eq!(rate_x1000(10.0 / 60.0), 166, "10r/m");
        assert_eq!(rate_x1000(0.29), 290);
        assert_eq!(rate_x1000(100.0), 100_000);
        // 1r/m: a second request 1 s later has excess 0 - 16*1000/1000 + 1000 = 984.
        let mut l = LimitReq::new(1.0 / 60.0, 1, false);
        l.request(ms(0));
        // 984 * 1000 / 16 = 61500 ms.
        assert_eq!(l.request(ms(1000)), delay(61_500));
    }
}
