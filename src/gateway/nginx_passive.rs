//! nginx passive health: `max_fails` / `fail_timeout` per upstream server, plus the
//! `proxy_next_upstream` rule that decides which results count and which move a request on.
//!
//! One [`NginxPassive`] per gateway instance holds, per replica, nginx's `fails`, `accessed`
//! and `checked` (whole seconds, as `ngx_time()`), and reproduces:
//!
//! * **What is a failure.** `ngx_http_upstream_next` releases the peer as `NGX_PEER_FAILED`
//!   for every condition except 403/404, *before* deciding whether to try again — so connect
//!   errors, resets and timeouts count even on the last attempt, and even when `error` /
//!   `timeout` are not listed (the `proxy_next_upstream` docs agree: those cases always count
//!   as unsuccessful attempts). An HTTP status reaches `ngx_http_upstream_next` only from
//!   `ngx_http_upstream_test_next`, i.e. only when `tries > 1` and the status is listed (and,
//!   for a POST already sent, `non_idempotent` is listed): the engine's `will_retry` (its
//!   retry policy has another try) and [`NginxPassive::passes_to_next`]. The tries themselves
//!   follow the scenario's retry policy, not `proxy_next_upstream`.
//!   Otherwise the response is delivered and `ngx_http_upstream_finalize_request` frees the
//!   peer with state 0 — the **success** path. A delivered 500 therefore does not just go
//!   uncounted: like any success it clears `fails` when `accessed < checked`.
//! * **State machine** (`ngx_http_upstream_round_robin.c`): failure → `fails += 1`,
//!   `accessed = checked = now`; success → `fails = 0` only if `accessed < checked`; a peer is
//!   skipped while `max_fails && fails >= max_fails && now - checked <= fail_timeout`;
//!   selecting a peer with `now - checked > fail_timeout` sets `checked = now`. Consequences,
//!   pinned in the tests: failures accumulate across interleaved successes and never decay
//!   with time alone; after the window exactly one request (the probe) gets through — its
//!   selection restarts the window, so the replica stays excluded for everyone else until the
//!   probe ends — and the probe's success clears `fails`, its failure re-excludes.
//! * **Seconds resolution:** a failure at 3.7 s excludes until 14.0 s with `fail_timeout 10`
//!   (`now - checked <= 10` holds through second 13). Simulated time 0 is second 0; nginx's
//!   epoch offset would only shift where the second boundaries fall.
//! * **Single-server upstream** (`peers->single`): never unavailable, failures not counted.
//! * **Errors after the response header** (a streamed response broken mid-body, a read
//!   timeout between chunks) never reach `ngx_http_upstream_next`: the request is finalized
//!   with 502/504 and the peer freed with state 0, i.e. as a *success*, and not retried. A
//!   replica that crashes mid-stream is thus not marked failed by its broken streams — only by
//!   the connects refused afterwards. [`NginxPassive::on_result_in`] with
//!   [`Phase::AfterHeader`]; [`NginxPassive::on_result`] is the header phase.
//! * `max_fails 0` disables exclusion; `fails` still counts, as in nginx.
//! * **No live upstreams:** when no untried peer is eligible nginx answers 502 and resets
//!   `fails` of every peer ("mark them as live for quick recovery"):
//!   [`NginxPassive::on_no_live_upstream`].
//!
//! Not modelled: `effective_weight` (a failure lowers it by `weight / max_fails`, each
//! selection round raises it by 1 — the routing policy owns weights), `backup` and `down`
//! servers, keepalive (`u->peer.cached`), `proxy_next_upstream_timeout`.
//!
//! Sources: nginx/nginx `src/http/ngx_http_upstream_round_robin.c`
//! (`ngx_http_upstream_get_peer`, `ngx_http_upstream_get_round_robin_peer`,
//! `ngx_http_upstream_free_round_robin_peer`), `src/http/ngx_http_upstream.c`
//! (`ngx_http_upstream_test_next`, `ngx_http_upstream_next`,
//! `ngx_http_upstream_finalize_request`, `ngx_http_upstream_connect`,
//! `ngx_http_upstream_process_non_buffered_request`, `ngx_http_upstream_process_request`,
//! `ngx_http_upstream_server` defaults); policies.md §3.1.

use super::status::AttemptResult;
use crate::spec::protection::{NextUpstream, NginxPassiveParams};
use crate::time::{SimTime, NANOS_PER_S};

/// Where an attempt ended relative to the replica's response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before the header arrived: connecting, sending, waiting for the header (or the header
    /// itself carried the status).
    BeforeHeader,
    /// While reading the body, after the header was passed to the client: nginx finalizes the
    /// request (502/504 for errors) and releases the peer as a success; no retry is possible.
    AfterHeader,
}

/// nginx's per-peer health fields (`ngx_http_upstream_rr_peer_t`), times in whole seconds.
#[derive(Debug, Clone, Copy, Default)]
struct Peer {
    fails: u32,
    accessed_s: u64,
    checked_s: u64,
}

/// Passive health of every replica as one gateway instance sees it.
#[derive(Debug, Clone)]
pub struct NginxPassive {
    max_fails: u32,
    fail_timeout_s: u64,
    next_mask: u8,
    peers: Vec<Peer>,
}

/// Whether nginx frees the peer as `NGX_PEER_FAILED`: only from `ngx_http_upstream_next`,
/// which local errors in the header phase always reach, and statuses only when moving on.
fn released_failed(result: AttemptResult, phase: Phase, will_retry: bool) -> bool {
    if phase == Phase::AfterHeader {
        return false;
    }
    match result {
        AttemptResult::Success => false,
        AttemptResult::Status(c) => will_retry && c != 403 && c != 404,
        AttemptResult::Reset | AttemptResult::ConnectFailure | AttemptResult::Timeout => true,
    }
}

/// `ngx_time()`: whole seconds.
fn secs(t: SimTime) -> u64 {
    t.as_nanos() / NANOS_PER_S
}

impl NginxPassive {
    /// Fresh state for `replicas` servers: no failures.
    pub fn new(p: &NginxPassiveParams, replicas: usize) -> NginxPassive {
        NginxPassive {
            max_fails: p.max_fails,
            fail_timeout_s: u64::from(p.fail_timeout_s),
            next_mask: p.next_upstream.iter().fold(0, |m, c| m | c.bit()),
            peers: vec![Peer::default(); replicas],
        }
    }

    /// Grows or shrinks the upstream to `replicas` servers; new ones start without failures.
    pub fn resize(&mut self, replicas: usize) {
        self.peers.resize(replicas, Peer::default());
    }

    fn single(&self) -> bool {
        self.peers.len() == 1
    }

    fn excluded(&self, p: &Peer, now_s: u64) -> bool {
        self.max_fails > 0
            && p.fails >= self.max_fails
            && now_s.saturating_sub(p.checked_s) <= self.fail_timeout_s
    }

    /// The first instant a peer last checked at `checked_s` is eligible again.
    fn reeligible_at(&self, checked_s: u64) -> SimTime {
        let s = checked_s.saturating_add(self.fail_timeout_s).saturating_add(1);
        SimTime(s.saturating_mul(NANOS_PER_S))
    }

    /// Whether `r` may be selected at `now` (always, in a single-server upstream).
    pub fn eligible(&self, r: u32, now: SimTime) -> bool {
        self.single() || !self.excluded(&self.peers[r as usize], secs(now))
    }

    /// When `r`, excluded at `now`, becomes eligible again (`None`: eligible now).
    pub fn excluded_until(&self, r: u32, now: SimTime) -> Option<SimTime> {
        let p = &self.peers[r as usize];
        (!self.eligible(r, now)).then(|| self.reeligible_at(p.checked_s))
    }

    /// `r` was selected at `now`: the first selection after the window restarts it, which makes
    /// this request the probe (with `fails >= max_fails` nobody else gets `r` meanwhile).
    pub fn on_select(&mut self, r: u32, now: SimTime) {
        if self.single() {
            return;
        }
        let (now_s, window) = (secs(now), self.fail_timeout_s);
        let p = &mut self.peers[r as usize];
        if now_s.saturating_sub(p.checked_s) > window {
            p.checked_s = now_s;
        }
    }

    /// The attempt to `r` ended with `result`. `will_retry`: the gateway passes the request to
    /// another try (nginx's `tries > 1`, the status listed, and the `non_idempotent` rule allows
    /// it). Connect failures, resets and timeouts count as failures regardless; a status counts
    /// only when `will_retry` (and never 403/404); anything else is released as a success.
    /// Returns `Some(t)` whenever this failure leaves `r` excluded — the one that reaches
    /// `max_fails` and every later one within the exclusion (each pushes `t` later) — with `t`
    /// the first instant `r` is eligible again.
    pub fn on_result(
        &mut self,
        r: u32,
        result: AttemptResult,
        will_retry: bool,
        now: SimTime,
    ) -> Option<SimTime> {
        self.on_result_in(r, result, Phase::BeforeHeader, will_retry, now)
    }

    /// [`NginxPassive::on_result`] for an attempt that ended in `phase`: after the header
    /// every result is released as a success (and `will_retry` must be false).
    pub fn on_result_in(
        &mut self,
        r: u32,
        result: AttemptResult,
        phase: Phase,
        will_retry: bool,
        now: SimTime,
    ) -> Option<SimTime> {
        if self.single() {
            return None;
        }
        if released_failed(result, phase, will_retry) {
            self.fail(r, secs(now))
        } else {
            self.succeed(r);
            None
        }
    }

    fn fail(&mut self, r: u32, now_s: u64) -> Option<SimTime> {
        let p = &mut self.peers[r as usize];
        p.fails = p.fails.saturating_add(1);
        p.accessed_s = now_s;
        p.checked_s = now_s;
        let p = *p;
        self.excluded(&p, now_s).then(|| self.reeligible_at(p.checked_s))
    }

    fn succeed(&mut self, r: u32) {
        let p = &mut self.peers[r as usize];
        if p.accessed_s < p.checked_s {
            p.fails = 0;
        }
    }

    /// No untried replica was eligible: nginx answers 502 ("no live upstreams") and marks every
    /// peer live again (`fails = 0`) for quick recovery.
    pub fn on_no_live_upstream(&mut self) {
        for p in &mut self.peers {
            p.fails = 0;
        }
    }

    /// Whether nginx passes `result` to the next upstream under `next_upstream` (the engine
    /// still checks the tries left). `request_sent`: the request reached the replica; statuses
    /// and resets imply it. Once sent, a POST moves on only with `non_idempotent` listed, so by
    /// default only connect failures and connect timeouts are retried. A connect failure maps
    /// to `error`, a timeout to `timeout`.
    pub fn passes_to_next(&self, result: AttemptResult, request_sent: bool) -> bool {
        let cond = match result {
            AttemptResult::Success => return false,
            AttemptResult::ConnectFailure | AttemptResult::Reset => NextUpstream::Error,
            AttemptResult::Timeout => NextUpstream::Timeout,
            AttemptResult::Status(c) => match c {
                500 => NextUpstream::Http500,
                502 => NextUpstream::Http502,
                503 => NextUpstream::Http503,
                504 => NextUpstream::Http504,
                429 => NextUpstream::Http429,
                _ => return false,
            },
        };
        let sent =
            request_sent || matches!(result, AttemptResult::Status(_) | AttemptResult::Reset);
        let mut need = cond.bit();
        if sent {
            need |= NextUpstream::NonIdempotent.bit();
        }
        self.next_mask & need == need
    }

    /// nginx's `fails` counter of `r`.
    pub fn fails(&self, r: u32) -> u32 {
        self.peers[r as usize].fails
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::status::AttemptResult;
    use crate::spec::protection::*;
    use crate::time::SimDuration;
    use AttemptResult::{ConnectFailure, Reset, Status, Success, Timeout};

    fn at(s: f64) -> SimTime {
        SimTime::ZERO + SimDuration::from_secs_f64(s)
    }

    fn passive(max_fails: u32, next: &[NextUpstream]) -> NginxPassive {
        let p = NginxPassiveParams { max_fails, fail_timeout_s: 10, next_upstream: next.to_vec() };
        NginxPassive::new(&p, 2)
    }

    /// Select `r` at `t` and end the attempt with `res`, as the engine would.
    fn attempt(n: &mut NginxPassive, t: f64, res: AttemptResult, retry: bool) -> Option<SimTime> {
        assert!(n.eligible(0, at(t)), "replica 0 must be selectable at {t}");
        n.on_select(0, at(t));
        n.on_result(0, res, retry, at(t))
    }

    #[test]
    fn fails_accumulate_across_successes_and_the_probe_decides() {
        let mut n = passive(3, &[NextUpstream::Error, NextUpstream::Timeout]);
        // t=0: failure -> fails 1, accessed = checked = 0.
        assert_eq!(attempt(&mut n, 0.0, ConnectFailure, true), None);
        // t=2: success within the window (accessed == checked): fails stays 1.
        attempt(&mut n, 2.0, Success, false);
        assert_eq!(n.fails(0), 1);
        // t=4 failure (2), t=6 success (still 2), t=8 failure (3 = max_fails): excluded, and
        // eligible again at checked + fail_timeout + 1 = 19 s.
        attempt(&mut n, 4.0, Timeout, true);
        attempt(&mut n, 6.0, Success, false);
        assert_eq!(n.fails(0), 2);
        assert_eq!(attempt(&mut n, 8.0, Reset, false), Some(at(19.0)));
        assert!(!n.eligible(0, at(12.0)));
        assert!(!n.eligible(0, at(18.999)), "second 18: 18 - 8 = 10 <= 10");
        assert_eq!(n.excluded_until(0, at(12.0)), Some(at(19.0)));
        assert!(n.eligible(1, at(12.0)), "the other replica is untouched");
        // t=19: the probe. Selecting it restarts the window, so nobody else gets replica 0.
        assert!(n.eligible(0, at(19.0)));
        n.on_select(0, at(19.0));
        assert!(!n.eligible(0, at(19.5)));
        let mut failed_probe = n.clone();
        // The probe succeeds at 25 s: accessed 8 < checked 19 -> fails cleared.
        n.on_result(0, Success, false, at(25.0));
        assert_eq!(n.fails(0), 0);
        assert!(n.eligible(0, at(25.0)));
        // The probe fails at 25 s instead: fails 4, excluded again until 25 + 10 + 1.
        assert_eq!(failed_probe.on_result(0, Reset, false, at(25.0)), Some(at(36.0)));
        assert_eq!(failed_probe.fails(0), 4);
        assert!(!failed_probe.eligible(0, at(35.9)));
        assert!(failed_probe.eligible(0, at(36.0)));
    }

    #[test]
    fn failures_do_not_decay_with_time_alone() {
        let mut n = passive(2, &[NextUpstream::Error]);
        attempt(&mut n, 0.0, ConnectFailure, true);
        // 100 s later a second failure (no success in between) completes max_fails 2.
        assert_eq!(attempt(&mut n, 100.0, ConnectFailure, true), Some(at(111.0)));
        // A success after the window (selection set checked > accessed) is the clean one.
        let mut m = passive(2, &[NextUpstream::Error]);
        attempt(&mut m, 0.0, ConnectFailure, true);
        attempt(&mut m, 11.0, Success, false);
        assert_eq!(m.fails(0), 0);
    }

    #[test]
    fn last_attempt_status_is_delivered_and_released_as_a_success() {
        let all = [NextUpstream::Error, NextUpstream::Http500, NextUpstream::NonIdempotent];
        let mut n = passive(2, &all);
        // A 500 that moves the request on counts.
        attempt(&mut n, 0.0, Status(500), true);
        assert_eq!(n.fails(0), 1);
        // The same 500 on the last attempt is delivered: success path. Within the window
        // (accessed == checked) it leaves fails alone...
        attempt(&mut n, 5.0, Status(500), false);
        assert_eq!(n.fails(0), 1);
        // ...after the window it clears them, like any success.
        attempt(&mut n, 20.0, Status(500), false);
        assert_eq!(n.fails(0), 0);
        // A reset on the last attempt still counts.
        attempt(&mut n, 21.0, Reset, false);
        assert_eq!(n.fails(0), 1);
        // 403/404 are released as "next", which is not a failure.
        attempt(&mut n, 22.0, Status(404), true);
        assert_eq!(n.fails(0), 1);
    }

    #[test]
    fn errors_after_the_header_are_released_as_successes() {
        let mut n = passive(1, &[NextUpstream::Error, NextUpstream::Timeout]);
        n.on_result(0, ConnectFailure, true, at(0.0));
        assert_eq!(n.fails(0), 1);
        // At 20 s (after the window) a stream is selected and breaks mid-body: the success
        // path clears fails instead of counting one.
        n.on_select(0, at(20.0));
        assert_eq!(n.on_result_in(0, Reset, Phase::AfterHeader, false, at(25.0)), None);
        assert_eq!(n.fails(0), 0);
        assert_eq!(n.on_result_in(0, Timeout, Phase::AfterHeader, false, at(26.0)), None);
        assert!(n.eligible(0, at(26.0)));
        // The same reset before the header counts.
        assert_eq!(n.on_result_in(0, Reset, Phase::BeforeHeader, false, at(27.0)), Some(at(38.0)));
    }

    #[test]
    fn next_upstream_rules_for_posts() {
        let d = NginxPassive::new(&NginxPassiveParams::default(), 2);
        // Default `error timeout`: only what failed before the request was sent moves on.
        assert!(d.passes_to_next(ConnectFailure, false));
        assert!(d.passes_to_next(Timeout, false));
        assert!(!d.passes_to_next(Timeout, true));
        assert!(!d.passes_to_next(Reset, false), "a reset implies the request was sent");
        assert!(!d.passes_to_next(Status(502), true));
        assert!(!d.passes_to_next(Success, false));
        let s = passive(1, &[NextUpstream::Http503]);
        assert!(!s.passes_to_next(Status(503), true), "a POST needs non_idempotent");
        let s = passive(1, &[NextUpstream::Http503, NextUpstream::NonIdempotent]);
        assert!(s.passes_to_next(Status(503), true));
        assert!(!s.passes_to_next(Status(500), true));
        assert!(!s.passes_to_next(Status(404), true));
        assert!(!s.passes_to_next(ConnectFailure, false), "error not listed");
    }

    #[test]
    fn seconds_resolution_of_the_exclusion() {
        let mut n = passive(1, &[NextUpstream::Error]);
        // Failure at 3.7 s: checked = 3, excluded through second 13.
        assert_eq!(attempt(&mut n, 3.7, ConnectFailure, false), Some(at(14.0)));
        assert!(!n.eligible(0, at(13.99)));
        assert!(n.eligible(0, at(14.0)));
    }

    #[test]
    fn single_server_never_unavailable_and_max_fails_zero_disables() {
        let mut one = NginxPassive::new(&NginxPassiveParams::default(), 1);
        for t in 0..5 {
            assert_eq!(one.on_result(0, ConnectFailure, false, at(f64::from(t))), None);
        }
        assert!(one.eligible(0, at(4.0)));
        assert_eq!(one.fails(0), 0, "a single peer returns before counting");
        let mut off = passive(0, &[NextUpstream::Error]);
        for t in 0..5 {
            assert_eq!(attempt(&mut off, f64::from(t), ConnectFailure, true), None);
        }
        assert_eq!(off.fails(0), 5, "fails still count with max_fails 0");
        assert!(off.eligible(0, at(5.0)));
    }

    #[test]
    fn no_live_upstream_marks_every_peer_live() {
        let mut n = passive(1, &[NextUpstream::Error]);
        n.on_result(0, ConnectFailure, true, at(1.0));
        n.on_result(1, Timeout, false, at(1.0));
        assert!(!n.eligible(0, at(2.0)) && !n.eligible(1, at(2.0)));
        n.on_no_live_upstream();
        assert!(n.eligible(0, at(2.0)) && n.eligible(1, at(2.0)));
        assert_eq!((n.fails(0), n.fails(1)), (0, 0));
        n.resize(3);
        assert!(n.eligible(2, at(2.0)));
    }

    #[test]
    fn params_parse_with_nginx_defaults_and_reject_typos() {
        let p: NginxPassiveParams = serde_yaml_ng::from_str("{}").expect("empty mapping");
        assert_eq!(p, NginxPassiveParams::default());
        assert_eq!((p.max_fails, p.fail_timeout_s), (1, 10));
        assert_eq!(p.next_upstream, vec![NextUpstream::Error, NextUpstream::Timeout]);
        let p: NginxPassiveParams = serde_yaml_ng::from_str(
            "max_fails: 3\nfail_timeout_s: 30\nnext_upstream: [error, http_500, http_429, non_idempotent]",
        )
        .expect("full mapping");
        assert_eq!(p.max_fails, 3);
        assert_eq!(p.next_upstream[1], NextUpstream::Http500);
        assert_eq!(p.next_upstream[2], NextUpstream::Http429);
        assert!(serde_yaml_ng::from_str::<NginxPassiveParams>("max_fail: 3").is_err());
        assert!(serde_yaml_ng::from_str::<NginxPassiveParams>("next_upstream: [http500]").is_err());
        assert!(serde_yaml_ng::from_str::<NginxPassiveParams>("max_fails: -1").is_err());
    }

    #[test]
    fn validate_rejects_a_repeated_condition() {
        assert_eq!(NginxPassiveParams::default().validate(), Ok(()));
        let p = NginxPassiveParams {
            next_upstream: vec![NextUpstream::Error, NextUpstream::Error],
            ..NginxPassiveParams::default()
        };
        let e = p.validate().expect_err("duplicate");
        assert!(e == "next_upstream lists error twice: list each condition once", "{e}");
    }
}
