//! `least_response_time`: nginx `least_time header|last_byte [inflight]` (reference §1.5,
//! `ngx_http_upstream_least_time_module.c`), weighted.
//!
//! Per replica it keeps integer-millisecond EMAs of the time to first token (`header`) and of
//! the total response time (`last_byte`): the first sample initialises, later ones give
//! `avg = (ms)(0.95·avg + 0.05·v + 0.5)`. Only successful attempts update them (nginx skips
//! failed attempts "to mitigate preferring of failing peers"). At each decision every candidate
//! gets a score, exactly as nginx's `least_time_eta`:
//!
//! ```text
//! rt = header_time | response_time
//! if now_s - checked > fail_timeout: rt >>= (now_s - checked) / (fail_timeout + 1)
//! if inflight mode and the replica has requests in flight: rt = max(rt, inflight_time)
//! rt = 5000 if rt > 5000 else rt + 20 - rt % 20      (20 ms buckets; note 5000 -> 5020)
//! eta = rt * (1 + conns)
//! ```
//!
//! and the minimum `eta / weight` (compared by cross-multiplication) wins. `checked` is nginx's
//! per-peer timestamp in whole seconds: set to now when the replica is picked more than
//! `fail_timeout` after it, and on a failed attempt (§3.1, `free_round_robin_peer`); it starts
//! at 0 (simulation start). So a replica not picked for a while looks twice as fast per
//! `fail_timeout + 1` seconds, which gives slow replicas a chance again.
//!
//! `inflight` mode (nginx's `inflight_reqs`, `inflight_last`, `inflight_reqs_changed`,
//! `inflight_time`, reproduced in integer ms): dispatch and completion keep the sum of the ages
//! of this gateway's in-flight requests; every decision folds each candidate's current mean
//! age into the `inflight_time` EMA (nginx does this in its selection scan). Simplification:
//! the simulator reports a request only when it ends, so in `header` + `inflight` mode a
//! request stays "in flight" until completion (nginx releases it when the header arrives) and
//! its header-time sample is folded in at completion. As in nginx, in that mode the header EMA
//! is updated whenever a first token was produced, even if the attempt later failed.
//!
//! Signals: this gateway's in-flight counters (exact, local) as `conns`; latency EMAs that are
//! as fresh as the last completion to each replica (blind to other gateways' traffic).
//! Ties (equal weighted eta, common thanks to the 20 ms buckets): smooth weighted round robin
//! among the tied candidates, scanning from the first best onward (nginx's rule).
//! Stream: none.

use super::weighted_round_robin::Swrr;
use super::RouterEntry;
use super::{parse_params, BuildCtx, Completion, ParamDoc, RequestView, RouteView, Router};
use crate::time::{SimDuration, SimTime};
use serde::Deserialize;

/// Which latency the EMA follows.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum Mode {
    /// Time to the response header; here, arrival to first token.
    Header,
    /// Time to the last byte of the response.
    #[default]
    LastByte,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    inflight: bool,
    #[serde(default = "default_fail_timeout")]
    fail_timeout_s: u64,
}

fn default_fail_timeout() -> u64 {
    10
}

impl Default for Params {
    fn default() -> Params {
        Params { mode: Mode::LastByte, inflight: false, fail_timeout_s: 10 }
    }
}

/// nginx's per-peer least_time state (milliseconds, seconds for `checked`).
#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    header_time: u64,
    response_time: u64,
    checked: u64,
    inflight_reqs: u64,
    inflight_last: u64,
    inflight_reqs_changed: u64,
    inflight_time: u64,
}

/// `ngx_http_upstream_response_time_avg`: first sample initialises, then α = 0.05, rounded.
fn ema(avg: &mut u64, v: u64) {
    *avg = if *avg == 0 { v } else { (0.95 * *avg as f64 + 0.05 * v as f64 + 0.5) as u64 };
}

fn ms(d: SimDuration) -> u64 {
    d.as_nanos() / 1_000_000
}

fn now_ms(t: SimTime) -> u64 {
    t.as_nanos() / 1_000_000
}

fn now_s(t: SimTime) -> u64 {
    t.as_nanos() / crate::time::NANOS_PER_S
}

struct LeastResponseTime {
    mode: Mode,
    inflight: bool,
    fail_timeout: u64,
    peers: Vec<Peer>,
    swrr: Swrr,
}

impl LeastResponseTime {
    fn new(p: Params, replicas: usize) -> LeastResponseTime {
        LeastResponseTime {
            mode: p.mode,
            inflight: p.inflight,
            fail_timeout: p.fail_timeout_s,
            peers: vec![Peer::default(); replicas],
            swrr: Swrr::new(replicas),
        }
    }

    /// nginx `least_time_eta` for replica `r` at `now`.
    fn eta(&self, r: u32, view: &RouteView<'_>) -> u64 {
        let p = &self.peers[r as usize];
        let mut rt = match self.mode {
            Mode::Header => p.header_time,
            Mode::LastByte => p.response_time,
        };
        let now = now_s(view.now);
        let idle = now.saturating_sub(p.checked);
        if idle > self.fail_timeout {
            let shift = idle / (self.fail_timeout + 1);
            rt = if shift >= 64 { 0 } else { rt >> shift };
        }
        if self.inflight && p.inflight_reqs > 0 {
            rt = rt.max(p.inflight_time);
        }
        if rt > 5000 {
            rt = 5000;
        } else {
            rt += 20 - rt % 20;
        }
        rt * (1 + u64::from(view.in_flight[r as usize]))
    }

    /// nginx `inflight_done`: forget a request of replica `r` that ended after `last` ms.
    fn inflight_done(&mut self, r: u32, now: u64, last: u64) {
        let p = &mut self.peers[r as usize];
        if p.inflight_reqs == 0 {
            return;
        }
        if p.inflight_reqs == 1 {
            p.inflight_last = 0;
        } else {
            let aged = p.inflight_last + (now - p.inflight_reqs_changed) * p.inflight_reqs;
            p.inflight_last = aged.saturating_sub(last);
            p.inflight_reqs_changed = now;
        }
        p.inflight_reqs -= 1;
    }
}

impl Router for LeastResponseTime {
    fn route(&mut self, _req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        let c = view.candidates;
        let weight = |r: u32| u64::from(view.weights[r as usize]);
        let t_ms = now_ms(view.now);
        if self.inflight {
            for &r in c {
                let p = &mut self.peers[r as usize];
                if let Some(mean_age) = p.inflight_last.checked_div(p.inflight_reqs) {
                    ema(&mut p.inflight_time, mean_age + (t_ms - p.inflight_reqs_changed));
                }
            }
        }
        let mut best_pos = 0;
        let mut best_eta = self.eta(c[0], view);
        let mut many = false;
        for (pos, &r) in c.iter().enumerate().skip(1) {
            let eta = self.eta(r, view);
            let (lhs, rhs) = (eta * weight(c[best_pos]), best_eta * weight(r));
            if lhs < rhs {
                best_pos = pos;
                best_eta = eta;
                many = false;
            } else if lhs == rhs {
                many = true;
            }
        }
        let b = c[best_pos];
        let best = if many {
            let tied: Vec<u32> = c[best_pos..]
                .iter()
                .copied()
                .filter(|&r| self.eta(r, view) * weight(b) == best_eta * weight(r))
                .collect();
            self.swrr.pick(tied.into_iter(), view.weights)
        } else {
            b
        };
        let p = &mut self.peers[best as usize];
        if self.inflight {
            if p.inflight_reqs > 0 {
                p.inflight_last += (t_ms - p.inflight_reqs_changed) * p.inflight_reqs;
            }
            p.inflight_reqs_changed = t_ms;
            p.inflight_reqs += 1;
        }
        let now = now_s(view.now);
        if now.saturating_sub(p.checked) > self.fail_timeout {
            p.checked = now;
        }
        best
    }

    fn on_complete(&mut self, done: &Completion) {
        let r = done.replica;
        let t_ms = now_ms(done.now);
        let header_inflight = self.inflight && self.mode == Mode::Header;
        if self.inflight {
            let last = ms(done.total);
            self.inflight_done(r, t_ms, last);
        }
        let p = &mut self.peers[r as usize];
        if header_inflight {
            // nginx updates header_time from its header notification, success or not.
            if let Some(ft) = done.first_token {
                ema(&mut p.header_time, ms(ft));
            }
        }
        if !done.success {
            // free_round_robin_peer on NGX_PEER_FAILED: accessed = checked = now.
            p.checked = now_s(done.now);
            return;
        }
        // `header_time == -1` (no header) skips both EMAs.
        let Some(ft) = done.first_token else { return };
        ema(&mut p.response_time, ms(done.total));
        if !header_inflight {
            ema(&mut p.header_time, ms(ft));
        }
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    Ok(Box::new(LeastResponseTime::new(p, ctx.weights.len())))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "least_response_time",
    summary:
        "least EMA response time x (in-flight + 1) per weight, 20 ms buckets (nginx least_time)",
    params: &[
        ParamDoc {
            name: "mode",
            default: "last_byte",
            doc: "header (EMA of time to first token) or last_byte (EMA of total time)",
        },
        ParamDoc {
            name: "inflight",
            default: "false",
            doc: "also count the mean age of in-flight requests (nginx `inflight`)",
        },
        ParamDoc {
            name: "fail_timeout_s",
            default: "10",
            doc: "a replica not picked for this long has its time halved per fail_timeout+1 s",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::{parse_params, Completion, RequestView, Router};
    use super::LeastResponseTime;
    use crate::time::{SimDuration, SimTime, NANOS_PER_S};

    fn ms(v: u64) -> SimDuration {
        SimDuration(v * 1_000_000)
    }

    fn done(replica: u32, total_ms: u64, ttft_ms: u64, success: bool) -> Completion {
        Completion {
            replica,
            now: SimTime::ZERO,
            first_token: Some(ms(ttft_ms)),
            total: ms(total_ms),
            success,
            id: 0,
        }
    }

    fn pick(r: &mut dyn Router, f: &Fixture) -> u32 {
        r.route(&RequestView::default(), &f.view())
    }

    /// The concrete router, to read its state.
    fn concrete(f: &Fixture, params: &str) -> LeastResponseTime {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(params).expect("yaml");
        LeastResponseTime::new(parse_params(&v).expect("params"), f.weights.len())
    }

    #[test]
    fn ema_initialises_then_moves_by_five_percent_with_rounding() {
        let f = Fixture::new(&[1, 1]);
        let mut r = concrete(&f, "");
        r.on_complete(&done(0, 1000, 10, true));
        assert_eq!(r.peers[0].response_time, 1000);
        r.on_complete(&done(0, 2000, 10, true));
        assert_eq!(r.peers[0].response_time, 1050);
        r.on_complete(&done(1, 1000, 10, true));
        r.on_complete(&done(1, 1010, 10, true));
        // 950 + 50.5 + 0.5 = 1001 (truncation without the +0.5 would give 1000).
        assert_eq!(r.peers[1].response_time, 1001);
        assert_eq!(r.peers[1].header_time, 10);
    }

    #[test]
    fn ema_not_a_plain_average_decides_the_pick() {
        let f = Fixture::new(&[1, 1]);
        let mut r = f.build("least_response_time", "");
        // Replica 0: 1000 then 2000 -> EMA 1050 -> bucket 1060; a plain mean (1500) would lose.
        r.on_complete(&done(0, 1000, 10, true));
        r.on_complete(&done(0, 2000, 10, true));
        r.on_complete(&done(1, 1061, 10, true)); // bucket 1080
        for _ in 0..4 {
            assert_eq!(pick(r.as_mut(), &f), 0);
        }
    }

    #[test]
    fn twenty_ms_buckets_make_near_equal_replicas_rotate_by_swrr() {
        let f = Fixture::new(&[1, 1, 1]);
        let mut r = f.build("least_response_time", "");
        // 101, 105 and 119 ms all land in the 120 ms bucket: a three-way tie.
        r.on_complete(&done(0, 101, 1, true));
        r.on_complete(&done(1, 105, 1, true));
        r.on_complete(&done(2, 119, 1, true));
        let picks: Vec<u32> = (0..6).map(|_| pick(r.as_mut(), &f)).collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        // Replica 2's EMA reaches exactly 120 (113.05 + 6.95 + 0.5): next bucket (140).
        r.on_complete(&done(2, 139, 1, true));
        let picks: Vec<u32> = (0..4).map(|_| pick(r.as_mut(), &f)).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }

    #[test]
    fn bucket_ties_are_weighted() {
        let f = Fixture::new(&[2, 1]);
        let mut r = f.build("least_response_time", "");
        // Same bucket: weight 2 halves replica 0's eta per weight, so it wins alone...
        r.on_complete(&done(0, 101, 1, true));
        r.on_complete(&done(1, 119, 1, true));
        assert_eq!(pick(r.as_mut(), &f), 0);
        // ...until its load doubles the eta: 120·2 / 2 == 120 / 1, a weighted tie (2:1 SWRR).
        let mut f = f;
        f.in_flight = vec![1, 0];
        let picks: Vec<u32> = (0..3).map(|_| pick(r.as_mut(), &f)).collect();
        assert_eq!(picks, vec![0, 1, 0]);
    }

    #[test]
    fn slow_replicas_are_capped_at_5000_ms_and_compare_by_connections() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = f.build("least_response_time", "");
        r.on_complete(&done(0, 6000, 1, true));
        r.on_complete(&done(1, 60_000, 1, true));
        // Both capped at 5000: least_conn. Replica 1 (ten times slower) wins on fewer conns.
        f.in_flight = vec![2, 1];
        assert_eq!(pick(r.as_mut(), &f), 1);
        f.in_flight = vec![1, 2];
        assert_eq!(pick(r.as_mut(), &f), 0);
        // Equal conns tie and rotate.
        f.in_flight = vec![1, 1];
        assert_eq!((0..4).map(|_| pick(r.as_mut(), &f)).collect::<Vec<_>>(), vec![0, 1, 0, 1]);
    }

    #[test]
    fn cap_quirk_5000_buckets_above_5001() {
        let f = Fixture::new(&[1, 1]);
        let mut r = concrete(&f, "");
        r.on_complete(&done(0, 5000, 1, true));
        r.on_complete(&done(1, 5001, 1, true));
        assert_eq!(r.eta(0, &f.view()), 5020);
        assert_eq!(r.eta(1, &f.view()), 5000);
        assert_eq!(pick(&mut r, &f), 1);
    }

    #[test]
    fn in_flight_multiplies_the_estimate() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = f.build("least_response_time", "");
        r.on_complete(&done(0, 100, 1, true)); // bucket 120
        r.on_complete(&done(1, 300, 1, true)); // bucket 320
        f.in_flight = vec![2, 0]; // 360 vs 320
        assert_eq!(pick(r.as_mut(), &f), 1);
        f.in_flight = vec![1, 0]; // 240 vs 320
        assert_eq!(pick(r.as_mut(), &f), 0);
    }

    #[test]
    fn failed_completions_do_not_update_the_ema() {
        let f = Fixture::new(&[1, 1]);
        let mut r = concrete(&f, "");
        r.on_complete(&done(0, 200, 1, true));
        r.on_complete(&done(1, 300, 1, true));
        for _ in 0..50 {
            r.on_complete(&done(1, 1, 1, false));
        }
        assert_eq!((r.peers[1].response_time, r.peers[1].header_time), (300, 1));
        for _ in 0..3 {
            assert_eq!(pick(&mut r, &f), 0);
        }
    }

    #[test]
    fn header_mode_reads_time_to_first_token() {
        let f = Fixture::new(&[1, 1]);
        let mut r = f.build("least_response_time", "mode: header");
        r.on_complete(&done(0, 9000, 500, true));
        r.on_complete(&done(1, 1000, 900, true));
        assert_eq!(pick(r.as_mut(), &f), 0);
        let mut r = f.build("least_response_time", "mode: last_byte");
        r.on_complete(&done(0, 9000, 500, true));
        r.on_complete(&done(1, 1000, 900, true));
        assert_eq!(pick(r.as_mut(), &f), 1);
    }

    #[test]
    fn unpicked_replica_time_halves_per_fail_timeout_plus_one_seconds() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = concrete(&f, "fail_timeout_s: 10");
        r.on_complete(&done(0, 400, 1, true)); // checked = 0 (never picked)
        let eta_at = |r: &LeastResponseTime, f: &mut Fixture, s: u64| {
            f.now = SimTime(s * NANOS_PER_S);
            r.eta(0, &f.view())
        };
        assert_eq!(eta_at(&r, &mut f, 10), 420); // 10 s is not > fail_timeout
        assert_eq!(eta_at(&r, &mut f, 11), 220); // 400 >> 1
        assert_eq!(eta_at(&r, &mut f, 21), 220); // 21 / 11 = 1
        assert_eq!(eta_at(&r, &mut f, 22), 120); // 400 >> 2
        assert_eq!(eta_at(&r, &mut f, 10_000), 20); // shifted to 0 (no UB on huge shifts)
                                                    // Picking it more than fail_timeout after `checked` resets `checked`: no decay.
        f.now = SimTime(22 * NANOS_PER_S);
        f.candidates = vec![0];
        assert_eq!(pick(&mut r, &f), 0);
        assert_eq!(r.peers[0].checked, 22);
        assert_eq!(eta_at(&r, &mut f, 32), 420);
        // A pick within fail_timeout of `checked` leaves it alone.
        assert_eq!(pick(&mut r, &f), 0);
        assert_eq!(r.peers[0].checked, 22);
    }

    #[test]
    fn a_neglected_slow_replica_gets_a_second_chance() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = f.build("least_response_time", "");
        r.on_complete(&done(0, 100, 1, true)); // 120
        r.on_complete(&done(1, 800, 1, true)); // 820
        f.in_flight = vec![2, 0]; // 360 vs 820: replica 0, picked every second.
        for s in 0..=22 {
            f.now = SimTime(s * NANOS_PER_S);
            assert_eq!(pick(r.as_mut(), &f), 0, "t = {s}");
        }
        // Replica 0's `checked` moves to 11 and 22 (the picks more than 10 s after it; at
        // those instants it is itself halved: 60·3 = 180). Replica 1 was never picked: from
        // 11 s its 800 ms is halved once (420 > 360), from 22 s twice (200 -> 220 < 360), so
        // at 23 s, with replica 0 fresh again (360), it gets its second chance.
        f.now = SimTime(23 * NANOS_PER_S);
        assert_eq!(pick(r.as_mut(), &f), 1);
    }

    #[test]
    fn failure_resets_checked_like_nginx() {
        let mut f = Fixture::new(&[1]);
        let mut r = concrete(&f, "");
        r.on_complete(&done(0, 400, 1, true));
        let mut fail = done(0, 1, 1, false);
        fail.now = SimTime(30 * NANOS_PER_S);
        r.on_complete(&fail);
        f.now = SimTime(35 * NANOS_PER_S);
        assert_eq!(r.eta(0, &f.view()), 420); // would be 400 >> 3 = 50 -> 60 otherwise
    }

    #[test]
    fn inflight_mode_tracks_the_age_of_requests_in_flight() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = concrete(&f, "inflight: true");
        r.on_complete(&done(0, 100, 1, true));
        r.on_complete(&done(1, 300, 1, true));
        f.candidates = vec![0];
        assert_eq!(pick(&mut r, &f), 0); // dispatched at t = 0
        f.in_flight = vec![1, 0];
        f.candidates = vec![0, 1];
        f.now = SimTime(1_000 * 1_000_000); // 1 s later: mean age 1000 ms
                                            // The scan folds the age into inflight_time (first sample: 1000); replica 0 now
                                            // scores max(100, 1000) -> 1020 · 2, so replica 1 (320) wins.
        assert_eq!(pick(&mut r, &f), 1);
        assert_eq!(r.peers[0].inflight_time, 1000);
        assert_eq!(r.eta(0, &f.view()), 2040);
        // Without `inflight` the same history keeps replica 0 (120 · 2 = 240 < 320).
        let mut plain = concrete(&f, "");
        plain.on_complete(&done(0, 100, 1, true));
        plain.on_complete(&done(1, 300, 1, true));
        assert_eq!(pick(&mut plain, &f), 0);
        // Completion forgets the request: no more in-flight age, back to the EMA.
        let mut d = done(0, 1000, 1, true);
        d.now = f.now;
        r.on_complete(&d);
        f.in_flight = vec![0, 0];
        assert_eq!(r.peers[0].inflight_reqs, 0);
        assert_eq!(r.eta(0, &f.view()), 160); // EMA 95 + 50 + 0.5 = 145 -> 160
    }

    #[test]
    fn inflight_sum_of_ages_with_two_requests() {
        let mut f = Fixture::new(&[1]);
        let mut r = concrete(&f, "inflight: true");
        pick(&mut r, &f); // t = 0
        f.now = SimTime(400 * 1_000_000);
        pick(&mut r, &f); // t = 400 ms: ages 400 + 0
        assert_eq!((r.peers[0].inflight_reqs, r.peers[0].inflight_last), (2, 400));
        f.now = SimTime(1_000 * 1_000_000);
        pick(&mut r, &f); // scan: 400/2 + 600 = 800 -> EMA 380 + 40 + 0.5 = 420
        assert_eq!(r.peers[0].inflight_time, 420);
        // The first request ends at 1000 ms after 1000 ms: remaining age 600.
        let mut d = done(0, 1000, 1, true);
        d.now = f.now;
        r.on_complete(&d);
        // Ages were 1000 + 600 + 0 (third at 1000 ms) = 1600; minus 1000 = 600.
        assert_eq!((r.peers[0].inflight_reqs, r.peers[0].inflight_last), (2, 600));
    }
}
