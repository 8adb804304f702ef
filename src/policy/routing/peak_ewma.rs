//! `peak_ewma`: tower `load::PeakEwma` inside `p2c::Balance`, as linkerd2-proxy uses it
//! (reference §1.7, P2C draw from §1.6).
//!
//! Per replica a round-trip estimate `rtt` (ns, float) and the time of its last update. A new
//! replica starts at `default_rtt_ms` from the moment it is first seen as a candidate (tower
//! creates the estimate when the endpoint is discovered; there is no "unknown" penalty). On a
//! sample `r` at time `t`: if `rtt < r` the estimate jumps to `r` at once (the peak rule);
//! otherwise `w = exp(-(t - updated) / decay)` and `rtt = rtt·w + r·(1 - w)`; either way
//! `updated = t`. Reading the load also runs that update with `r = 0` (tower's `load()` decays
//! on read), so an unpicked replica looks cheaper over time, and a read just before a sample
//! gives that sample almost no weight (both are tower's behaviour). The load is
//! `cost = rtt × (pending + 1)`.
//!
//! Selection is linkerd's P2C: two *distinct* candidates `a = U[0,n)`, `b = U[0,n-1)`,
//! `b += 1 if b >= a`; `a`'s load is read, then `b`'s; `a` wins if `cost(a) <= cost(b)` (ties
//! go to the first draw). With one candidate it is returned without reading any load.
//!
//! Signals and freshness: `pending` is this gateway's in-flight count for the replica (exact,
//! local). Simplification: linkerd releases its pending handle at the first body frame, so its
//! `pending` counts only requests still waiting for a first byte; here it counts requests
//! until they end. RTT samples come from this gateway's completions only: `rtt_source:
//! first_token` (linkerd's `PendingUntilFirstData`: arrival to first token, sampled when the
//! first token arrives) or `total` (sampled at the end). Like tower, samples are taken
//! whatever the outcome (a request without a first token contributes its total time, which is
//! ~0 for an immediate rejection and so makes that replica look cheaper; a timeout contributes
//! the timeout). Stream: `router:peak_ewma`.

use super::RouterEntry;
use super::{
    parse_params, BuildCtx, Completion, FirstToken, ParamDoc, RequestView, RouteView, Router,
};
use crate::rng::Stream;
use crate::time::SimTime;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Which latency an RTT sample is.
#[derive(Debug, Default, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
enum RttSource {
    /// Arrival to first token (linkerd: first data frame of the response body).
    #[default]
    FirstToken,
    /// Arrival to the end of the response.
    Total,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default = "default_decay")]
    decay_s: f64,
    #[serde(default = "default_rtt")]
    default_rtt_ms: f64,
    #[serde(default)]
    rtt_source: RttSource,
}

fn default_decay() -> f64 {
    10.0
}

fn default_rtt() -> f64 {
    30.0
}

impl Default for Params {
    fn default() -> Params {
        Params { decay_s: 10.0, default_rtt_ms: 30.0, rtt_source: RttSource::FirstToken }
    }
}

/// tower's `RttEstimate`.
#[derive(Debug, Clone, Copy)]
struct Estimate {
    rtt_ns: f64,
    update_at: SimTime,
}

impl Estimate {
    /// tower `RttEstimate::update` with a sample of `rtt_ns` received at `now`.
    fn update(&mut self, now: SimTime, rtt_ns: f64, decay_ns: f64) -> f64 {
        if self.rtt_ns < rtt_ns {
            self.rtt_ns = rtt_ns;
        } else {
            let elapsed = now.as_nanos().saturating_sub(self.update_at.as_nanos()) as f64;
            let decay = (-elapsed / decay_ns).exp();
            self.rtt_ns = self.rtt_ns * decay + rtt_ns * (1.0 - decay);
        }
        self.update_at = now;
        self.rtt_ns
    }
}

struct PeakEwma {
    decay_ns: f64,
    default_rtt_ns: f64,
    source: RttSource,
    rng: Stream,
    est: Vec<Option<Estimate>>,
    /// Dispatch time of requests still waiting for their first token (`first_token` source).
    awaiting: BTreeMap<u64, SimTime>,
}

impl PeakEwma {
    fn new(p: &Params, replicas: usize, rng: Stream) -> PeakEwma {
        PeakEwma {
            decay_ns: p.decay_s * 1e9,
            default_rtt_ns: p.default_rtt_ms * 1e6,
            source: p.rtt_source,
            rng,
            est: vec![None; replicas],
            awaiting: BTreeMap::new(),
        }
    }

    /// The estimate of `r`, created at `now` with the default RTT when first seen.
    fn estimate(&mut self, r: u32, now: SimTime) -> &mut Estimate {
        let d = self.default_rtt_ns;
        self.est[r as usize].get_or_insert(Estimate { rtt_ns: d, update_at: now })
    }

    /// tower `PeakEwma::load`: decay on read, then `rtt × (pending + 1)`.
    fn load(&mut self, r: u32, view: &RouteView<'_>) -> f64 {
        let decay_ns = self.decay_ns;
        let rtt = self.estimate(r, view.now).update(view.now, 0.0, decay_ns);
        rtt * (f64::from(view.in_flight[r as usize]) + 1.0)
    }
}

impl Router for PeakEwma {
    fn route(&mut self, req: &RequestView<'_>, view: &RouteView<'_>) -> u32 {
        if self.source == RttSource::FirstToken {
            self.awaiting.insert(req.id, view.now);
        }
        let c = view.candidates;
        for &r in c {
            self.estimate(r, view.now);
        }
        let n = c.len();
        if n == 1 {
            return c[0];
        }
        let a = self.rng.index_mod(n);
        let mut b = self.rng.index_mod(n - 1);
        if b >= a {
            b += 1;
        }
        let (la, lb) = (self.load(c[a], view), self.load(c[b], view));
        if la <= lb {
            c[a]
        } else {
            c[b]
        }
    }

    fn on_first_token(&mut self, ft: &FirstToken) {
        if let Some(sent) = self.awaiting.remove(&ft.id) {
            let decay_ns = self.decay_ns;
            let sample = (ft.now - sent).as_nanos() as f64;
            self.estimate(ft.replica, ft.now).update(ft.now, sample, decay_ns);
        }
    }

    fn on_complete(&mut self, done: &Completion) {
        let sample = match self.source {
            // Sampled at the first token already, unless none came (then the total time).
            RttSource::FirstToken => match self.awaiting.remove(&done.id) {
                Some(_) => done.first_token.unwrap_or(done.total),
                None => return,
            },
            RttSource::Total => done.total,
        };
        let decay_ns = self.decay_ns;
        self.estimate(done.replica, done.now).update(done.now, sample.as_nanos() as f64, decay_ns);
    }
}

fn build(v: &serde_yaml_ng::Value, ctx: &BuildCtx<'_>) -> Result<Box<dyn Router>, String> {
    let p: Params = parse_params(v)?;
    if !p.decay_s.is_finite() || p.decay_s <= 0.0 {
        return Err(format!("decay_s = {}: must be a finite number > 0", p.decay_s));
    }
    if !p.default_rtt_ms.is_finite() || p.default_rtt_ms < 0.0 {
        return Err(format!("default_rtt_ms = {}: must be a finite number >= 0", p.default_rtt_ms));
    }
    Ok(Box::new(PeakEwma::new(&p, ctx.weights.len(), ctx.stream("peak_ewma"))))
}

pub(super) static ENTRY: RouterEntry = RouterEntry {
    name: "peak_ewma",
    summary:
        "P2C over distinct picks by peak-EWMA RTT x (in-flight + 1) (tower / linkerd PeakEwma)",
    params: &[
        ParamDoc {
            name: "decay_s",
            default: "10",
            doc: "EWMA time constant tau: w = exp(-dt / tau), half-life tau ln 2",
        },
        ParamDoc {
            name: "default_rtt_ms",
            default: "30",
            doc: "initial estimate of a replica without samples (linkerd default)",
        },
        ParamDoc {
            name: "rtt_source",
            default: "first_token",
            doc: "first_token (linkerd: first body byte) or total",
        },
    ],
    build,
};

#[cfg(test)]
mod tests {
    use super::super::testutil::Fixture;
    use super::super::{parse_params, Completion, FirstToken, RequestView, Router};
    use super::PeakEwma;
    use crate::rng::Stream;
    use crate::time::{SimDuration, SimTime, NANOS_PER_S};

    const MS: f64 = 1e6;

    fn secs(s: f64) -> SimTime {
        SimTime((s * NANOS_PER_S as f64).round() as u64)
    }

    fn done(replica: u32, at: SimTime, ttft_ms: f64, total_ms: f64) -> Completion {
        Completion {
            replica,
            now: at,
            first_token: Some(SimDuration((ttft_ms * MS) as u64)),
            total: SimDuration((total_ms * MS) as u64),
            success: true,
            id: 0,
        }
    }

    /// Applies the sample a completion carries at its time (first token or total, by the
    /// router's source), as if the first token had arrived at `c.now`.
    fn feed(r: &mut PeakEwma, c: Completion) {
        match (r.source, c.first_token) {
            (super::RttSource::FirstToken, Some(ft)) => {
                let decay = r.decay_ns;
                r.estimate(c.replica, c.now).update(c.now, ft.as_nanos() as f64, decay);
            }
            _ => {
                r.awaiting.insert(c.id, c.now);
                r.on_complete(&c);
            }
        }
    }

    fn concrete(f: &Fixture, params: &str) -> PeakEwma {
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(params).expect("yaml");
        let p: super::Params = parse_params(&v).expect("params");
        PeakEwma::new(&p, f.weights.len(), Stream::new(1, "router:peak_ewma", 0))
    }

    fn rtt_ms(r: &PeakEwma, i: usize) -> f64 {
        r.est[i].expect("seen").rtt_ns / MS
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    fn pick(r: &mut dyn Router, f: &Fixture) -> u32 {
        r.route(&RequestView::default(), &f.view())
    }

    #[test]
    fn first_token_samples_arrive_with_the_first_token_not_the_end() {
        let mut f = Fixture::new(&[1]);
        let mut r = concrete(&f, "");
        f.now = secs(1.0);
        let req = RequestView { id: 5, ..RequestView::default() };
        r.route(&req, &f.view());
        r.on_first_token(&FirstToken { id: 5, replica: 0, now: secs(1.2) });
        assert!(close(rtt_ms(&r, 0), 200.0), "peak to the 200 ms TTFT at once");
        let mut d = done(0, secs(31.2), 200.0, 30_200.0);
        d.id = 5;
        r.on_complete(&d);
        assert!(close(rtt_ms(&r, 0), 200.0), "the end adds no second sample");
        // A request that never got a first token contributes its total time at the end.
        f.now = secs(40.0);
        let req = RequestView { id: 6, ..RequestView::default() };
        r.route(&req, &f.view());
        let mut d = done(0, secs(41.0), 0.0, 1000.0);
        d.id = 6;
        d.first_token = None;
        r.on_complete(&d);
        assert!(close(rtt_ms(&r, 0), 1000.0));
    }

    #[test]
    fn unseen_replicas_start_at_the_default_rtt() {
        let f = Fixture::new(&[1, 1]);
        let mut r = concrete(&f, "");
        pick(&mut r, &f);
        assert!(close(rtt_ms(&r, 0), 30.0) && close(rtt_ms(&r, 1), 30.0));
        // A 20 ms sample (below 30, weighted by elapsed time) makes replica 0 cheaper than
        // the unseen-but-default replica 1 at 30 ms.
        let f2 = Fixture::new(&[1, 1, 1]);
        let mut r = concrete(&f2, "default_rtt_ms: 30");
        feed(&mut r, done(0, secs(0.0), 1.0, 1.0));
        let mut f2 = f2;
        f2.now = secs(1.0);
        feed(&mut r, done(0, secs(1.0), 20.0, 20.0));
        assert!(rtt_ms(&r, 0) < 30.0);
        f2.candidates = vec![0, 1];
        for _ in 0..20 {
            assert_eq!(pick(&mut r, &f2), 0);
        }
        assert!(close(rtt_ms(&r, 1), 30.0), "created when first seen, at 1 s");
        assert!(r.est[2].is_none());
    }

    #[test]
    fn a_slow_sample_jumps_up_at_once_then_decays_with_half_life_tau_ln2() {
        let f = Fixture::new(&[1]);
        let mut r = concrete(&f, "decay_s: 10");
        feed(&mut r, done(0, secs(0.0), 500.0, 900.0));
        assert!(close(rtt_ms(&r, 0), 500.0), "peak: no smoothing upward");
        let mut f = f;
        f.now = secs(10.0 * std::f64::consts::LN_2);
        let load = r.load(0, &f.view());
        assert!((load / MS - 250.0).abs() < 1e-3, "{}", load / MS);
    }

    #[test]
    fn a_lower_sample_is_weighted_by_the_time_since_the_last_update() {
        let f = Fixture::new(&[1]);
        let mut r = concrete(&f, "");
        feed(&mut r, done(0, secs(0.0), 500.0, 500.0));
        feed(&mut r, done(0, secs(10.0), 100.0, 100.0));
        let e = (-1.0f64).exp();
        assert!(close(rtt_ms(&r, 0), 500.0 * e + 100.0 * (1.0 - e)), "{}", rtt_ms(&r, 0));
    }

    #[test]
    fn reading_the_load_decays_the_estimate() {
        let mut f = Fixture::new(&[1]);
        let mut read = concrete(&f, "");
        let mut unread = concrete(&f, "");
        for r in [&mut read, &mut unread] {
            feed(r, done(0, secs(0.0), 100.0, 100.0));
        }
        f.now = secs(10.0);
        let e = (-1.0f64).exp();
        assert!(close(read.load(0, &f.view()) / MS, 100.0 * e));
        assert!(close(rtt_ms(&read, 0), 100.0 * e), "the read wrote the decayed value back");
        // The same 50 ms sample then lands differently: after the read it is a peak (50 >
        // 36.8) and replaces the estimate; unread, it is blended with weight 1 - e^-1.
        feed(&mut read, done(0, secs(10.0), 50.0, 50.0));
        feed(&mut unread, done(0, secs(10.0), 50.0, 50.0));
        assert!(close(rtt_ms(&read, 0), 50.0));
        assert!(close(rtt_ms(&unread, 0), 100.0 * e + 50.0 * (1.0 - e)));
    }

    #[test]
    fn pending_requests_multiply_the_cost() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = concrete(&f, "");
        pick(&mut r, &f); // both at 30 ms, created at 0
        feed(&mut r, done(1, secs(0.0), 60.0, 60.0)); // peak: 60 ms
        f.in_flight = vec![2, 0]; // 30·3 = 90 vs 60·1
        for _ in 0..20 {
            assert_eq!(pick(&mut r, &f), 1);
        }
        f.in_flight = vec![1, 0]; // 30·2 = 60 vs 60: tie -> first draw, so both appear
        let picks: Vec<u32> = (0..200).map(|_| pick(&mut r, &f)).collect();
        assert!(picks.contains(&0) && picks.contains(&1));
        f.in_flight = vec![0, 0]; // 30 vs 60
        for _ in 0..20 {
            assert_eq!(pick(&mut r, &f), 0);
        }
    }

    #[test]
    fn draws_are_distinct_so_the_busier_of_two_never_wins() {
        let mut f = Fixture::new(&[1, 1]);
        f.in_flight = vec![5, 0];
        let mut r = f.build("peak_ewma", "");
        // With replacement both draws would land on replica 0 a quarter of the time.
        for _ in 0..2000 {
            assert_eq!(pick(r.as_mut(), &f), 1);
        }
    }

    #[test]
    fn ties_go_to_the_first_draw_of_linkerds_scheme() {
        let f = Fixture::new(&[1, 1, 1, 1]);
        let mut r = f.build("peak_ewma", "");
        let mut rng = Stream::new(1, "router:peak_ewma", 0);
        let mut seen = [0usize; 4];
        for _ in 0..400 {
            // All equal: the pick is `a`; `b` is drawn too (the stream advances twice).
            let a = rng.index_mod(4);
            let _b = rng.index_mod(3);
            let p = pick(r.as_mut(), &f);
            assert_eq!(p as usize, a);
            seen[a] += 1;
        }
        assert!(seen.iter().all(|&s| s > 50), "{seen:?}");
    }

    #[test]
    fn rtt_source_selects_first_token_or_total() {
        let f = Fixture::new(&[1]);
        let mut ft = concrete(&f, "");
        let mut tot = concrete(&f, "rtt_source: total");
        for r in [&mut ft, &mut tot] {
            feed(r, done(0, secs(0.0), 40.0, 900.0));
        }
        assert!(close(rtt_ms(&ft, 0), 40.0));
        assert!(close(rtt_ms(&tot, 0), 900.0));
        // No first token (e.g. a timeout): the handle drops at the end, so total is used.
        let mut d = done(0, secs(0.0), 0.0, 1200.0);
        d.first_token = None;
        feed(&mut ft, d);
        assert!(close(rtt_ms(&ft, 0), 1200.0));
    }

    #[test]
    fn a_neglected_slow_replica_is_probed_again() {
        let mut f = Fixture::new(&[1, 1]);
        let mut r = concrete(&f, "");
        pick(&mut r, &f);
        feed(&mut r, done(1, secs(0.0), 2000.0, 2000.0)); // replica 1: 2 s peak
        f.now = secs(1.0);
        assert_eq!(pick(&mut r, &f), 0);
        // Replica 0 keeps getting 30 ms samples; replica 1 decays only by time.
        let mut t = 1.0;
        let mut first_probe = None;
        while t < 120.0 {
            t += 1.0;
            f.now = secs(t);
            feed(&mut r, done(0, f.now, 30.0, 30.0));
            if pick(&mut r, &f) == 1 {
                first_probe = Some(t);
                break;
            }
        }
        // 2000 e^{-t/10} <= 30 from t = 10 ln(66.7) = 42 s.
        let t = first_probe.expect("re-probed");
        assert!((42.0..=43.0).contains(&t), "{t}");
    }

    #[test]
    fn rejects_non_positive_decay() {
        let f = Fixture::new(&[1, 1]);
        let v: serde_yaml_ng::Value = serde_yaml_ng::from_str("decay_s: 0").expect("yaml");
        let ctx =
            super::BuildCtx { run_seed: 1, weights: &f.weights, replicas: &f.replicas, gateway: 0 };
        assert!((super::ENTRY.build)(&v, &ctx).is_err());
    }
}
