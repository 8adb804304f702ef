//! The gateway layer: where requests enter, are routed, and are accounted per gateway.
//!
//! `gateway.replicas` independent gateway instances sit in front of the cluster; each request
//! enters one of them (chosen at random or round-robin, `gateway.spread`). Each instance owns
//! its router (its own counters, EWMAs, hash rings, prefix trees and random stream) and its
//! own in-flight counters — the requests *it* dispatched (exact, local). One shared counter,
//! `global_in_flight`, models a shared store (Redis) that all instances update atomically.
//!
//! Replica-side signals — waiting, running, KV utilisation, loaded model — reach an instance
//! through a scrape every `metrics_refresh_ms` (instance `g` of `G` scrapes at
//! `g·P/G + k·P`, so instances are out of phase); between scrapes it routes on the last
//! scraped values. `metrics_refresh_ms: 0` reads the live values (an oracle). Cache-index
//! policies read block residency from the [`kv_index::KvEventIndex`], fed by the replicas' KV
//! events with `gateway.kv_event_delay_ms` of delay.
//!
//! Decision accounting: requests routed to each replica and an optional decision trace for a
//! window of request ids (`--trace-decisions`).

pub mod active_health;
pub mod circuit_breaker;
pub mod kv_index;
pub mod limit_req;
pub mod nginx_passive;
pub mod outlier;
pub mod readiness;
pub mod retry;
pub mod status;
pub mod token_bucket;

use crate::cluster::Cluster;
use crate::policy::routing::{
    Completion, FirstToken, KvIndex, NoKvIndex, RequestView, RouteView, Router,
};
use crate::rng::Stream;
use crate::spec::{GatewayConfig, Spread};
use crate::time::{SimDuration, SimTime};
use kv_index::KvEventIndex;

/// Replica metrics as one instance last scraped them.
#[derive(Debug, Clone, Default)]
struct Scrape {
    queued: Vec<u32>,
    in_service: Vec<u32>,
    kv_util: Vec<f32>,
    loaded_model: Vec<u16>,
}

impl Scrape {
    fn take(&mut self, c: &Cluster) {
        self.queued.clone_from(&c.queued);
        self.in_service.clone_from(&c.in_service);
        self.kv_util.clone_from(&c.kv_util);
        self.loaded_model.clone_from(&c.loaded_model);
    }
}

/// One gateway instance.
struct Gateway {
    router: Box<dyn Router>,
    in_flight: Vec<u32>,
    scrape: Option<Scrape>,
}

/// One routing decision, for `--trace-decisions`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Request id.
    pub id: u64,
    /// When.
    pub time: SimTime,
    /// Gateway instance.
    pub gateway: u16,
    /// Workload class.
    pub class: u16,
    /// Chosen replica.
    pub replica: u32,
    /// Candidates considered.
    pub candidates: u32,
    /// This instance's in-flight count at the chosen replica before the decision.
    pub in_flight: u32,
    /// Waiting requests at the chosen replica, as this instance saw them.
    pub queued_seen: u32,
    /// Waiting requests at the chosen replica, live.
    pub queued_live: u32,
    /// KV utilisation of the chosen replica as seen.
    pub kv_util_seen: f32,
    /// Leading prompt blocks the chosen replica holds (KV index; 0 when not tracked).
    pub matched_blocks: u32,
    /// Prompt blocks hashed for the decision.
    pub prompt_blocks: u32,
}

/// All gateway instances of a run.
pub struct Gateways {
    gws: Vec<Gateway>,
    spread: Spread,
    next_rr: u32,
    spread_rng: Stream,
    refresh: SimDuration,
    /// Requests in flight per replica over all instances.
    pub global_in_flight: Vec<u32>,
    kv: Option<KvEventIndex>,
    /// Whether routers read prompt block hashes.
    pub needs_hashes: bool,
    /// Tokens per block of request hashes.
    pub block_size: u32,
    /// Requests routed to each replica (measured requests only).
    pub routed: Vec<u64>,
    trace_ids: Option<(u64, u64)>,
    /// Picks outside the candidate set (an invariant violation).
    pub non_candidate: u64,
    /// Decisions traced.
    pub decisions: Vec<Decision>,
    scratch: Vec<u32>,
}

impl Gateways {
    /// Gateways per `cfg`, instance `g` routing with `routers[g]` over `cluster`.
    pub fn new(
        cfg: &GatewayConfig,
        routers: Vec<Box<dyn Router>>,
        cluster: &Cluster,
        run_seed: u64,
    ) -> Gateways {
        let n = cluster.len();
        let needs_kv = cluster.is_llm() && routers.iter().any(|r| r.uses_kv_index());
        let needs_hashes = cluster.is_llm() && routers.iter().any(|r| r.uses_prefix_hashes());
        let live = cfg.metrics_refresh == SimDuration::ZERO;
        let gws = routers
            .into_iter()
            .map(|router| Gateway {
                router,
                in_flight: vec![0; n],
                scrape: (!live).then(|| {
                    let mut s = Scrape::default();
                    s.take(cluster);
                    s
                }),
            })
            .collect();
        Gateways {
            gws,
            spread: cfg.spread,
            next_rr: 0,
            spread_rng: Stream::new(run_seed, "gateway:spread", 0),
            refresh: cfg.metrics_refresh,
            global_in_flight: vec![0; n],
            kv: needs_kv.then(|| KvEventIndex::new(n, cfg.kv_event_delay)),
            needs_hashes: needs_hashes || needs_kv,
            block_size: cluster.infos.iter().map(|i| i.block_size).find(|&b| b > 0).unwrap_or(16),
            routed: vec![0; n],
            trace_ids: None,
            non_candidate: 0,
            decisions: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Traces the decisions for request ids in `from..to`.
    pub fn trace(&mut self, from: u64, to: u64) {
        self.trace_ids = Some((from, to));
    }

    /// Number of instances.
    pub fn len(&self) -> usize {
        self.gws.len()
    }

    /// Whether there is no instance (never: validation requires at least one).
    pub fn is_empty(&self) -> bool {
        self.gws.is_empty()
    }

    /// The KV-event index, when some router reads it.
    pub fn kv_index(&self) -> Option<&KvEventIndex> {
        self.kv.as_ref()
    }

    /// Whether replicas must publish KV events.
    pub fn needs_kv_events(&self) -> bool {
        self.kv.is_some()
    }

    /// The instance the next request enters.
    #[inline]
    pub fn pick(&mut self) -> u16 {
        let n = self.gws.len() as u32;
        if n == 1 {
            return 0;
        }
        match self.spread {
            Spread::RoundRobin => {
                let g = self.next_rr % n;
                self.next_rr = self.next_rr.wrapping_add(1);
                g as u16
            }
            Spread::Random => (self.spread_rng.next_u64() % u64::from(n)) as u16,
        }
    }

    /// When instance `g` first scrapes (`None`: live metrics, no scrapes).
    pub fn first_scrape(&self, g: u16) -> Option<SimTime> {
        (self.refresh > SimDuration::ZERO).then(|| {
            let offset = self.refresh.as_nanos() * u64::from(g) / self.gws.len() as u64;
            SimTime::ZERO + SimDuration(offset) + self.refresh
        })
    }

    /// Instance `g` scrapes the replicas now; returns when it scrapes next.
    pub fn scrape(&mut self, g: u16, cluster: &Cluster, now: SimTime) -> SimTime {
        if let Some(s) = &mut self.gws[g as usize].scrape {
            s.take(cluster);
        }
        now + self.refresh
    }

    /// Replica `r` published KV events at `now`.
    pub fn publish_kv(&mut self, now: SimTime, r: u32, events: &[(u64, bool)]) {
        if let Some(ix) = &mut self.kv {
            ix.publish(now, r, events);
        }
    }

    /// Instance `g` picks a replica for `req`, or `None` when no replica is a candidate.
    #[inline]
    pub fn route(
        &mut self,
        g: u16,
        req: &RequestView<'_>,
        cluster: &Cluster,
        now: SimTime,
        measured: bool,
    ) -> Option<u32> {
        let (candidates, candidates_epoch) = cluster.candidates_for(req.class);
        if candidates.is_empty() {
            return None;
        }
        if let Some(ix) = &mut self.kv {
            ix.catch_up(now);
        }
        let kv_index: &dyn KvIndex = match &self.kv {
            Some(ix) => ix,
            None => &NoKvIndex,
        };
        let gw = &mut self.gws[g as usize];
        let (queued, in_service, kv_util, loaded_model) = match &gw.scrape {
            Some(s) => (&s.queued[..], &s.in_service[..], &s.kv_util[..], &s.loaded_model[..]),
            None => (
                &cluster.queued[..],
                &cluster.in_service[..],
                &cluster.kv_util[..],
                &cluster.loaded_model[..],
            ),
        };
        let view = RouteView {
            candidates,
            candidates_epoch,
            in_flight: &gw.in_flight,
            global_in_flight: &self.global_in_flight,
            queued,
            in_service,
            kv_util,
            loaded_model,
            weights: &cluster.weights,
            replicas: &cluster.infos,
            kv_index,
            block_size: self.block_size,
            now,
        };
        let r = gw.router.route(req, &view);
        if candidates.binary_search(&r).is_err() {
            self.non_candidate += 1;
        }
        if self.trace_ids.is_some_and(|(a, b)| (a..b).contains(&req.id)) {
            kv_index.leading_matches(req.hashes, &[r], &mut self.scratch);
            self.decisions.push(Decision {
                id: req.id,
                time: now,
                gateway: g,
                class: req.class,
                replica: r,
                candidates: candidates.len() as u32,
                in_flight: gw.in_flight[r as usize],
                queued_seen: queued[r as usize],
                queued_live: cluster.queued[r as usize],
                kv_util_seen: kv_util[r as usize],
                matched_blocks: self.scratch[0],
                prompt_blocks: req.hashes.len() as u32,
            });
        }
        gw.in_flight[r as usize] += 1;
        self.global_in_flight[r as usize] += 1;
        if measured {
            self.routed[r as usize] += 1;
        }
        Some(r)
    }

    /// The first token of a request instance `g` dispatched arrived.
    #[inline]
    pub fn first_token(&mut self, g: u16, ft: &FirstToken) {
        self.gws[g as usize].router.on_first_token(ft);
    }

    /// A request instance `g` dispatched has ended; its router hears how.
    #[inline]
    pub fn release(&mut self, g: u16, done: &Completion) {
        let gw = &mut self.gws[g as usize];
        gw.in_flight[done.replica as usize] -= 1;
        self.global_in_flight[done.replica as usize] -= 1;
        gw.router.on_complete(done);
    }

    /// Routing violations: picks outside the candidate set plus in-flight counts still open
    /// (call when no request is live).
    pub fn leftover(&self) -> u64 {
        let open: u64 = self
            .gws
            .iter()
            .flat_map(|g| g.in_flight.iter())
            .chain(self.global_in_flight.iter())
            .map(|&x| u64::from(x))
            .sum();
        self.non_candidate + open
    }

    /// Max over replicas of requests in flight divided by their mean (`None` when nothing is
    /// in flight): the load-imbalance figure sampled over time.
    pub fn imbalance(&self) -> Option<f64> {
        let n = self.global_in_flight.len();
        let (mut max, mut sum) = (0u32, 0u64);
        for &x in &self.global_in_flight {
            max = max.max(x);
            sum += u64::from(x);
        }
        (sum > 0).then(|| f64::from(max) * n as f64 / sum as f64)
    }
}
