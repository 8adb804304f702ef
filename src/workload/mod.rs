//! The workload: request classes, their arrival processes and per-request attributes.
//!
//! A [`ClassGen`] produces one class's requests one at a time, from one of three sources:
//! - **synthetic open loop**: arrival times from stream `arrivals`/class; per request a
//!   service uniform, prompt and output lengths from streams `service`, `prompt_tokens` and
//!   `output_tokens` keyed by the class, and (with `prefix:`) the shared system prompt from
//!   stream `prefix`/class (Zipf popularity over the groups), in arrival order;
//! - **sessions** (`session:`): each synthetic arrival is turn 1 of a new conversation, drawn
//!   as above; later turns come from [`ClassGen::next_turn`], whose draws use the session's own
//!   stream `session`/key (see [`session`]);
//! - **trace replay** (`trace:`): arrivals, lengths and Mooncake block hashes from a
//!   [`trace::TraceReader`], read lazily (O(1) requests held); service uniforms still come
//!   from stream `service`/class.
//!
//! Invariants: none of these streams is touched by a policy and session draws are keyed by the
//! session's ordinal in arrival order, so every policy in a cell sees exactly the same requests
//! (common random numbers). Output lengths are capped by `max_tokens`; synthetic prompts have
//! at least 1 token. Requests are produced one at a time, never stored as a whole trace; a
//! trace read error ends the class's arrivals and is kept for [`ClassGen::take_error`], never
//! a panic.

pub mod arrival;
pub mod dist;
pub mod prefix;
pub mod session;
pub mod trace;

use crate::rng::Stream;
use crate::time::{SimDuration, SimTime};
use arrival::{ArrivalGen, ArrivalSpec};
use dist::Dist;
use prefix::Zipf;
pub use session::Session;
use std::collections::VecDeque;
use trace::{TraceError, TraceReader, TraceRequest};

/// A validated workload class.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassSpec {
    /// Class name.
    pub name: String,
    /// Arrival process of requests (or of sessions, with `session`); `None` for trace classes.
    pub arrival: Option<ArrivalSpec>,
    /// Service time in seconds (queue replicas), unless the pool overrides it.
    pub service_s: Option<Dist>,
    /// Prompt length in tokens.
    pub prompt_tokens: Option<Dist>,
    /// Output length in tokens.
    pub output_tokens: Option<Dist>,
    /// Deadline after arrival.
    pub timeout: Option<SimDuration>,
    /// Model the requests ask for (`None`: any pool; queue pools serve every class).
    pub model: Option<String>,
    /// Cap on output tokens (the request's `max_tokens`).
    pub max_tokens: Option<u32>,
    /// Shared system prompts.
    pub prefix: Option<PrefixSpec>,
    /// Closed-loop multi-turn sessions.
    pub session: Option<SessionSpec>,
    /// Tenant label (default: the class name).
    pub tenant: String,
    /// Scheduling priority on `priority`-policy replicas (lower first).
    pub priority: i32,
    /// Latency objectives for goodput.
    pub slo: Slo,
    /// Trace replay instead of synthetic arrivals and lengths.
    pub trace: Option<TraceSpec>,
    /// Client behaviour: time-to-first-token timeout, retries.
    pub client: crate::spec::client::ClientSpec,
    /// Tier at the gateway.
    pub tier: crate::spec::client::Tier,
}

/// `prefix:` — `groups` system prompts of `group_tokens` tokens each; a request picks one with
/// Zipf popularity (`P(rank k) ∝ k^-zipf_s`) and its prompt starts with it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrefixSpec {
    /// Number of distinct shared prefixes.
    pub groups: u32,
    /// Tokens of each shared prefix (counted inside `prompt_tokens`; a prompt shorter than
    /// this is all prefix).
    pub group_tokens: u32,
    /// Zipf exponent of group popularity (0 = uniform).
    pub zipf_s: f64,
}

/// `session:` — each arrival starts a session of several turns; turn `k + 1` is sent a think
/// time after turn `k` ends, and its prompt is the whole conversation so far (previous prompt
/// and answer) plus a new user message drawn from `prompt_tokens`.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    /// Turns per session (rounded, at least 1).
    pub turns: Dist,
    /// Think time between an answer and the next turn, seconds.
    pub think_time_s: Dist,
    /// Context cap: a turn whose prompt would exceed it ends the session instead.
    pub max_context_tokens: u32,
    /// Each turn resends the conversation so far; `false`: turns are independent requests
    /// (a closed-loop client) that share only the class's prefix group.
    pub history: bool,
}

/// `slo:` — a completed request meets its SLO when every objective given holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slo {
    /// Time to first token.
    pub ttft: Option<SimDuration>,
    /// Time per output token (mean over the request's decode).
    pub tpot: Option<SimDuration>,
}

/// `trace:` — replay a request trace file.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSpec {
    /// The file, resolved against the scenario file's directory.
    pub path: std::path::PathBuf,
    /// File format.
    pub format: trace::TraceFormat,
    /// Window and speed.
    pub options: trace::TraceOptions,
}

/// Which shared KV blocks a request's prompt starts with; resolved into block hashes by
/// [`prefix::block_hashes`] when a replica admits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefixRef {
    /// Identity of the shared system prompt (class and group mixed); 0 = none.
    pub group_key: u64,
    /// Tokens of that shared prompt this request carries: `min(group_tokens, prompt)` of the
    /// request, or of its session's first turn (a conversation that opened with a truncated
    /// system prompt keeps sharing only that part).
    pub group_tokens: u32,
    /// Identity of the conversation (0 = not a session): every full prompt block after the
    /// group prefix is hashed from it, so a later turn reuses the earlier turns' prompt blocks.
    pub session_key: u64,
}

/// The attributes drawn for one request at its arrival.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Draws {
    /// Uniform in (0, 1) mapped through the serving pool's service distribution.
    pub service_u: f64,
    /// Prompt tokens (0 if the class has no prompt distribution).
    pub prompt_tokens: u32,
    /// Output tokens (0 if the class has no output distribution), after `max_tokens`.
    pub output_tokens: u32,
    /// Shared prefix of the prompt.
    pub prefix: PrefixRef,
}

/// The per-run generator state of one class.
///
/// Call protocol: each [`ClassGen::next_after`] yields one new arrival; each
/// [`ClassGen::draw`] returns the attributes of the oldest yielded arrival not yet drawn (for
/// synthetic classes every draw is fresh, so only traces hold yielded requests: at most two
/// when the caller schedules the next arrival before drawing the current one).
#[derive(Debug)]
pub struct ClassGen {
    index: usize,
    run_seed: u64,
    source: Source,
    service: Stream,
    prompt: Option<(Dist, Stream)>,
    output: Option<(Dist, Stream)>,
    max_tokens: Option<u32>,
    prefix: Option<PrefixGen>,
    session: Option<SessionSpec>,
    sessions_started: u64,
}

#[derive(Debug)]
enum Source {
    Synthetic(ArrivalGen),
    Trace(Box<TraceSource>),
    /// Neither an arrival process nor a trace (validation refuses such a class): no arrivals.
    Idle,
}

#[derive(Debug)]
struct TraceSource {
    reader: TraceReader,
    /// Requests whose arrival was yielded and which `draw` has not consumed yet.
    yielded: VecDeque<TraceRequest>,
    /// The read error that ended the arrivals, until taken.
    error: Option<TraceError>,
}

impl TraceSource {
    fn advance(&mut self) -> Option<SimTime> {
        match self.reader.next()? {
            Ok(r) => {
                let t = r.arrival;
                self.yielded.push_back(r);
                Some(t)
            }
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

/// Group choice of a class with `prefix:`.
#[derive(Debug, Clone)]
struct PrefixGen {
    spec: PrefixSpec,
    zipf: Zipf,
    rng: Stream,
}

impl ClassGen {
    /// The generator of class `index` for the run with seed `run_seed`; for a trace class,
    /// opens its file (the error names the file). A trace class ignores `prefix`, `session`
    /// and the length distributions: the trace gives lengths and block hashes.
    pub fn new(spec: &ClassSpec, index: usize, run_seed: u64) -> Result<ClassGen, TraceError> {
        let i = index as u64;
        let source = match (&spec.trace, &spec.arrival) {
            (Some(t), _) => Source::Trace(Box::new(TraceSource {
                reader: TraceReader::open(&t.path, t.format, t.options)?,
                yielded: VecDeque::with_capacity(2),
                error: None,
            })),
            (None, Some(a)) => {
                Source::Synthetic(ArrivalGen::new(a.clone(), Stream::new(run_seed, "arrivals", i)))
            }
            (None, None) => Source::Idle,
        };
        let synthetic = matches!(source, Source::Synthetic(_));
        Ok(ClassGen {
            index,
            run_seed,
            source,
            service: Stream::new(run_seed, "service", i),
            prompt: spec
                .prompt_tokens
                .clone()
                .map(|d| (d, Stream::new(run_seed, "prompt_tokens", i))),
            output: spec
                .output_tokens
                .clone()
                .map(|d| (d, Stream::new(run_seed, "output_tokens", i))),
            max_tokens: spec.max_tokens,
            prefix: spec.prefix.filter(|_| synthetic).map(|p| PrefixGen {
                spec: p,
                zipf: Zipf::new(p.groups, p.zipf_s),
                rng: Stream::new(run_seed, "prefix", i),
            }),
            session: spec.session.clone().filter(|_| synthetic),
            sessions_started: 0,
        })
    }

    /// The class index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether the class replays a trace.
    pub fn is_trace(&self) -> bool {
        matches!(self.source, Source::Trace(_))
    }

    /// Whether each arrival starts a multi-turn session.
    pub fn has_sessions(&self) -> bool {
        self.session.is_some()
    }

    /// Sessions started so far (first turns drawn).
    pub fn sessions_started(&self) -> u64 {
        self.sessions_started
    }

    /// The next arrival: for synthetic classes the first arrival strictly after `now` (the
    /// previous arrival, or 0 at the start); for traces the next request's arrival (`now` is
    /// ignored: trace times are absolute and may repeat). `None` when the class has no further
    /// arrivals — including after a trace read error, kept for [`ClassGen::take_error`].
    pub fn next_after(&mut self, now: SimTime) -> Option<SimTime> {
        match &mut self.source {
            Source::Synthetic(a) => a.next_after(now),
            Source::Trace(t) => t.advance(),
            Source::Idle => None,
        }
    }

    /// The read error that ended a trace class's arrivals, once.
    pub fn take_error(&mut self) -> Option<TraceError> {
        match &mut self.source {
            Source::Trace(t) => t.error.take(),
            _ => None,
        }
    }

    /// Draws the attributes of the next request (the oldest yielded arrival not yet drawn).
    /// `trace_hashes` is cleared, then receives a trace request's chained block hashes of
    /// [`trace::MOONCAKE_BLOCK_TOKENS`]-token blocks (left empty for synthetic classes, whose
    /// shared blocks are described by `Draws.prefix`). For session classes the draws are turn 1
    /// of a new session and carry its `session_key`: pass them to [`ClassGen::open_session`].
    pub fn draw(&mut self, trace_hashes: &mut Vec<u64>) -> Draws {
        trace_hashes.clear();
        let service_u = self.service.uniform_open();
        if let Source::Trace(t) = &mut self.source {
            debug_assert!(!t.yielded.is_empty(), "draw without a yielded trace arrival");
            let (prompt_tokens, output_tokens) = match t.yielded.pop_front() {
                Some(r) => {
                    trace_hashes.extend_from_slice(&r.block_hashes);
                    (r.prompt_tokens, r.output_tokens)
                }
                None => (0, 0),
            };
            return Draws {
                service_u,
                prompt_tokens,
                output_tokens: cap(output_tokens, self.max_tokens),
                prefix: PrefixRef::default(),
            };
        }
        let prompt_tokens = self.prompt.as_mut().map_or(0, |(d, s)| tokens(d, s));
        let output = self.output.as_mut().map_or(0, |(d, s)| tokens(d, s));
        let mut prefix = PrefixRef::default();
        if let Some(p) = &mut self.prefix {
            let group = p.zipf.sample(p.rng.uniform_open()) - 1;
            prefix.group_key = prefix::group_key(self.index, group);
            prefix.group_tokens = p.spec.group_tokens.min(prompt_tokens);
        }
        if self.session.is_some() {
            prefix.session_key = prefix::session_key(self.index, self.sessions_started);
            self.sessions_started += 1;
        }
        Draws { service_u, prompt_tokens, output_tokens: cap(output, self.max_tokens), prefix }
    }

    /// Opens the session whose first turn is `first` (the draws just returned by
    /// [`ClassGen::draw`]); draws its number of turns from the session's own stream. `None` if
    /// the class has no sessions (or `first` carries no session key).
    pub fn open_session(&self, first: &Draws) -> Option<Session> {
        let spec = self.session.as_ref()?;
        (first.prefix.session_key != 0).then(|| Session::open(spec, self.run_seed, first))
    }

    /// The think time before the next turn of `s` and that turn's draws, after the latest
    /// turn's answer of `answer_tokens` tokens: prompt = previous prompt + `answer_tokens` + a
    /// new user message from `prompt_tokens`; output from `output_tokens` capped by
    /// `max_tokens`; same group prefix and session key. `None` when the session is over (turns
    /// exhausted, or the prompt would exceed `max_context_tokens`). Pass the turn's drawn
    /// `output_tokens` as `answer_tokens` to keep the workload independent of the policy.
    pub fn next_turn(&self, s: &mut Session, answer_tokens: u32) -> Option<(SimDuration, Draws)> {
        let laws = session::TurnLaws {
            spec: self.session.as_ref()?,
            prompt: self.prompt.as_ref().map(|(d, _)| d),
            output: self.output.as_ref().map(|(d, _)| d),
            max_tokens: self.max_tokens,
        };
        s.next_turn(laws, answer_tokens)
    }
}

/// `drawn` capped by `max_tokens`.
#[inline]
fn cap(drawn: u32, max_tokens: Option<u32>) -> u32 {
    max_tokens.map_or(drawn, |m| drawn.min(m))
}

/// A token count drawn from `d`: rounded, at least 1.
pub(crate) fn tokens(d: &Dist, s: &mut Stream) -> u32 {
    let x = d.quantile(s.uniform_open()).round();
    x.clamp(1.0, u32::MAX as f64) as u32
}

#[cfg(test)]
mod tests {
    use super::dist::Law;
    use super::*;
    use crate::rng::run_seed;
    use std::path::{Path, PathBuf};
    use trace::{TraceFormat, TraceOptions};

    fn constant(x: f64) -> Dist {
        Dist::new(Law::Constant(x), None, None)
    }

    fn class(name: &str) -> ClassSpec {
        ClassSpec {
            client: Default::default(),
            tier: Default::default(),
            name: name.into(),
            arrival: Some(ArrivalSpec::Poisson { rate_per_s: 10.0 }),
            service_s: None,
            prompt_tokens: Some(Dist::new(Dist::lognormal_law(1000.0, 1.0), None, None)),
            output_tokens: Some(Dist::new(
                Law::Pareto { alpha: 1.8, scale: 16.0 },
                None,
                Some(4096.0),
            )),
            timeout: None,
            model: None,
            max_tokens: None,
            prefix: None,
            session: None,
            tenant: name.into(),
            priority: 0,
            slo: Slo::default(),
            trace: None,
        }
    }

    fn chat(turns: Dist, max_context_tokens: u32) -> ClassSpec {
        ClassSpec {
            prefix: Some(PrefixSpec { groups: 10, group_tokens: 400, zipf_s: 1.0 }),
            session: Some(SessionSpec {
                turns,
                think_time_s: Dist::new(Law::Exponential { mean: 20.0 }, None, None),
                max_context_tokens,
                history: true,
            }),
            ..class("chat")
        }
    }

    fn gen(spec: &ClassSpec, index: usize, seed: u64) -> ClassGen {
        ClassGen::new(spec, index, run_seed(seed, 0)).unwrap()
    }

    /// The first `n` (arrival, draws) of a class, scheduling before drawing as the engine does.
    fn requests(g: &mut ClassGen, n: usize) -> Vec<(SimTime, Draws, Vec<u64>)> {
        let mut out = Vec::new();
        let mut next = g.next_after(SimTime::ZERO);
        while let Some(t) = next {
            if out.len() == n {
                break;
            }
            next = g.next_after(t);
            let mut h = vec![1, 2, 3];
            let d = g.draw(&mut h);
            out.push((t, d, h));
        }
        out
    }

    #[test]
    fn open_loop_is_deterministic_and_capped() {
        let spec = ClassSpec { max_tokens: Some(100), ..class("a") };
        let a = requests(&mut gen(&spec, 0, 1), 5000);
        assert_eq!(a, requests(&mut gen(&spec, 0, 1), 5000));
        assert_ne!(a, requests(&mut gen(&spec, 0, 2), 5000));
        assert_ne!(a, requests(&mut gen(&spec, 1, 1), 5000), "classes draw from their own streams");
        assert!(a.iter().all(|(_, d, h)| d.output_tokens <= 100
            && d.prompt_tokens >= 1
            && h.is_empty()
            && d.prefix == PrefixRef::default()));
        assert!(a.iter().any(|(_, d, _)| d.output_tokens == 100));
        assert!(a.iter().any(|(_, d, _)| d.output_tokens < 100));
        // The cap changes nothing else.
        let uncapped = requests(&mut gen(&class("a"), 0, 1), 5000);
        for ((ta, da, _), (tb, db, _)) in a.iter().zip(&uncapped) {
            assert_eq!((ta, da.service_u, da.prompt_tokens), (tb, db.service_u, db.prompt_tokens));
            assert_eq!(da.output_tokens, db.output_tokens.min(100));
        }
    }

    #[test]
    fn prefix_groups_follow_zipf_and_leave_other_draws_alone() {
        let spec = ClassSpec {
            prefix: Some(PrefixSpec { groups: 8, group_tokens: 800, zipf_s: 1.2 }),
            ..class("p")
        };
        let n = 100_000;
        let with = requests(&mut gen(&spec, 3, 7), n);
        let without = requests(&mut gen(&class("p"), 3, 7), n);
        let keys: Vec<u64> = (0..8).map(|g| prefix::group_key(3, g)).collect();
        let zipf = Zipf::new(8, 1.2);
        let mut counts = [0usize; 8];
        for ((ta, a, _), (tb, b, _)) in with.iter().zip(&without) {
            assert_eq!(
                (ta, a.service_u, a.prompt_tokens, a.output_tokens),
                (tb, b.service_u, b.prompt_tokens, b.output_tokens)
            );
            let g = keys.iter().position(|&k| k == a.prefix.group_key).expect("a group of class 3");
            counts[g] += 1;
            assert_eq!(a.prefix.group_tokens, a.prompt_tokens.min(800));
            assert_eq!(a.prefix.session_key, 0);
        }
        for (g, &c) in counts.iter().enumerate() {
            let p = zipf.probability(g as u32 + 1);
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!((c as f64 - n as f64 * p).abs() < 5.0 * sd, "group {g}: {c}");
        }
    }

    #[test]
    fn session_context_grows_until_the_cap() {
        let spec = ClassSpec {
            prompt_tokens: Some(constant(100.0)),
            output_tokens: Some(constant(50.0)),
            ..chat(constant(100.0), 1000)
        };
        let mut g = gen(&spec, 0, 3);
        assert!(g.next_after(SimTime::ZERO).is_some());
        let first = g.draw(&mut Vec::new());
        assert_ne!(first.prefix.session_key, 0, "turn 1 already carries the session key");
        let mut s = g.open_session(&first).unwrap();
        assert_eq!((s.key(), s.turns(), s.turns_sent()), (first.prefix.session_key, 100, 1));
        let mut prompts = vec![first.prompt_tokens];
        let mut answer = first.output_tokens;
        while let Some((think, d)) = g.next_turn(&mut s, answer) {
            assert!(think > SimDuration::ZERO);
            assert_eq!(d.prefix, first.prefix, "same group and session");
            assert_eq!(d.output_tokens, 50);
            prompts.push(d.prompt_tokens);
            answer = d.output_tokens;
        }
        // 100, 250, ..., 1000; the next (1150) would exceed the cap.
        assert_eq!(prompts, [100, 250, 400, 550, 700, 850, 1000]);
        assert!(s.is_over());
        assert_eq!((s.turns_sent(), s.prompt_tokens()), (7, 1000));
        assert!(g.next_turn(&mut s, 0).is_none(), "stays over");
        // Non-session classes have no sessions.
        let mut plain = gen(&class("x"), 0, 3);
        let d = plain.draw(&mut Vec::new());
        assert!(plain.open_session(&d).is_none());
        assert_eq!(d.prefix.session_key, 0);
    }

    #[test]
    fn sessions_without_history_send_independent_requests() {
        let mut spec = ClassSpec {
            prompt_tokens: Some(constant(100.0)),
            output_tokens: Some(constant(50.0)),
            ..chat(constant(5.0), 1000)
        };
        if let Some(s) = &mut spec.session {
            s.history = false;
        }
        let mut g = gen(&spec, 0, 3);
        assert!(g.next_after(SimTime::ZERO).is_some());
        let first = g.draw(&mut Vec::new());
        let mut s = g.open_session(&first).unwrap();
        let mut n = 1;
        while let Some((_, d)) = g.next_turn(&mut s, 50) {
            assert_eq!(d.prompt_tokens, 100, "the message alone, no history");
            assert_eq!(d.prefix.session_key, 0, "nothing of the conversation is shared");
            assert_eq!(d.prefix.group_key, first.prefix.group_key, "the system prompt is");
            n += 1;
        }
        assert_eq!(n, 5, "the context cap never ends a history-free session");
    }

    #[test]
    fn session_turn_counts_have_the_requested_mean() {
        // round(U(1, 7)) takes 1 and 7 with prob 1/12, 2..6 with 1/6: mean 4, sd 1.78.
        let spec = chat(Dist::new(Law::Uniform { low: 1.0, high: 7.0 }, None, None), u32::MAX);
        let mut g = gen(&spec, 1, 4);
        let n = 20_000;
        let mut total = 0u64;
        let mut hist = [0u32; 8];
        for _ in 0..n {
            let first = g.draw(&mut Vec::new());
            let mut s = g.open_session(&first).unwrap();
            let mut turns = 1;
            while g.next_turn(&mut s, 10).is_some() {
                turns += 1;
            }
            assert_eq!(turns, s.turns());
            hist[turns as usize] += 1;
            total += u64::from(turns);
        }
        let mean = total as f64 / n as f64;
        assert!((mean - 4.0).abs() < 5.0 * 1.78 / (n as f64).sqrt(), "{mean}");
        assert_eq!(hist[0], 0);
        assert!(hist[1] > 0 && hist[7] > 0 && hist[1] < hist[4]);
        assert_eq!(g.sessions_started(), n);
    }

    #[test]
    fn session_draws_do_not_depend_on_interleaving() {
        let spec = ClassSpec { max_tokens: Some(300), ..chat(constant(6.0), 1_000_000) };
        let seq = |interleave: bool| {
            let mut g = gen(&spec, 2, 9);
            let mut sessions: Vec<(Session, Vec<(SimDuration, Draws)>)> = (0..5)
                .map(|_| {
                    let first = g.draw(&mut Vec::new());
                    (g.open_session(&first).unwrap(), vec![(SimDuration::ZERO, first)])
                })
                .collect();
            let step = |g: &ClassGen, (s, log): &mut (Session, Vec<(SimDuration, Draws)>)| {
                let answer = log.last().unwrap().1.output_tokens;
                g.next_turn(s, answer).map(|t| log.push(t)).is_some()
            };
            if interleave {
                // Round robin, in reverse order of the sessions.
                let mut any = true;
                while any {
                    any = false;
                    for x in sessions.iter_mut().rev() {
                        any |= step(&g, x);
                    }
                }
            } else {
                for x in &mut sessions {
                    while step(&g, x) {}
                }
            }
            sessions.into_iter().map(|(_, log)| log).collect::<Vec<_>>()
        };
        let a = seq(false);
        assert_eq!(a, seq(true));
        let keys: std::collections::BTreeSet<u64> =
            a.iter().map(|log| log[0].1.prefix.session_key).collect();
        assert_eq!(keys.len(), 5);
        for log in &a {
            assert_eq!(log.len(), 6);
            assert!(log.iter().all(|(_, d)| d.output_tokens <= 300));
            for w in log.windows(2) {
                let grown = w[0].1.prompt_tokens + w[0].1.output_tokens;
                assert!(w[1].1.prompt_tokens > grown);
            }
        }
        // Turn k's shared blocks are a prefix of turn k+1's.
        let mut prev = Vec::new();
        let mut cur = Vec::new();
        for w in a[0].windows(2) {
            prefix::block_hashes(&w[0].1.prefix, w[0].1.prompt_tokens, 16, &mut prev);
            prefix::block_hashes(&w[1].1.prefix, w[1].1.prompt_tokens, 16, &mut cur);
            assert_eq!(prev.len() as u32, w[0].1.prompt_tokens / 16);
            assert_eq!(prev[..], cur[..prev.len()]);
        }
        // A different run seed, different sessions.
        let other = {
            let mut g = gen(&spec, 2, 10);
            let first = g.draw(&mut Vec::new());
            let mut s = g.open_session(&first).unwrap();
            g.next_turn(&mut s, first.output_tokens).unwrap().0
        };
        assert_ne!(other, a[0][1].0);
    }

    /// A temporary file holding `text`, removed on drop.
    struct Temp(PathBuf);
    impl Temp {
        fn new(tag: &str, text: &str) -> Temp {
            let p = std::env::temp_dir()
                .join(format!("routelab-workload-{}-{tag}.jsonl", std::process::id()));
            std::fs::write(&p, text).unwrap();
            Temp(p)
        }
    }
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn trace_class(path: &Path) -> ClassSpec {
        ClassSpec {
            arrival: None,
            max_tokens: Some(40),
            prefix: Some(PrefixSpec { groups: 4, group_tokens: 100, zipf_s: 0.0 }),
            trace: Some(TraceSpec {
                path: path.to_path_buf(),
                format: TraceFormat::Mooncake,
                options: TraceOptions { salt: Some(5), ..TraceOptions::default() },
            }),
            ..class("trace")
        }
    }

    const ROWS: &str = r#"{"timestamp": 0, "input_length": 600, "output_length": 30, "hash_ids": [1, 2]}
{"timestamp": 0, "input_length": 512, "output_length": 90, "hash_ids": [1]}

{"timestamp": 1500, "input_length": 1100, "output_length": 7, "hash_ids": [1, 2, 3]}
{"timestamp": 1501, "input_length": 10, "output_length": 1, "hash_ids": []}
"#;

    #[test]
    fn trace_class_replays_arrivals_lengths_and_hashes() {
        let f = Temp::new("ok", ROWS);
        let spec = trace_class(&f.0);
        let mut g = gen(&spec, 0, 1);
        assert!(g.is_trace() && !g.has_sessions());
        let reqs = requests(&mut g, 100);
        let h = |id: u64| crate::rng::mix64(id ^ 5);
        let got: Vec<_> = reqs
            .iter()
            .map(|(t, d, hs)| (t.0, d.prompt_tokens, d.output_tokens, hs.clone()))
            .collect();
        assert_eq!(
            got,
            [
                (0, 600, 30, vec![h(1), h(2)]),
                (0, 512, 40, vec![h(1)]),
                (1_500_000_000, 1100, 7, vec![h(1), h(2), h(3)]),
                (1_501_000_000, 10, 1, vec![]),
            ]
        );
        assert!(reqs.iter().all(|(_, d, _)| d.prefix == PrefixRef::default()));
        assert!(g.next_after(SimTime::MAX).is_none());
        assert!(g.take_error().is_none());
        // Draw-then-schedule order gives the same requests.
        let mut g = gen(&spec, 0, 1);
        let mut other = Vec::new();
        while let Some(t) = g.next_after(SimTime::ZERO) {
            let mut hs = Vec::new();
            let d = g.draw(&mut hs);
            other.push((t, d, hs));
        }
        assert_eq!(other, reqs);
    }

    #[test]
    fn trace_errors_end_arrivals_and_surface_once() {
        let bad =
            format!("{ROWS}{{\"timestamp\": 1400, \"input_length\": 5, \"output_length\": 5}}\n");
        let f = Temp::new("bad", &bad);
        let mut g = gen(&trace_class(&f.0), 0, 1);
        let reqs = requests(&mut g, 100);
        assert_eq!(reqs.len(), 4, "the rows before the error are replayed");
        assert!(g.next_after(SimTime::MAX).is_none());
        let e = g.take_error().expect("the error is kept").to_string();
        assert!(
            e.ends_with(":6: timestamp earlier than the previous row: the trace must be sorted"),
            "{e}"
        );
        assert!(g.take_error().is_none());
        assert!(g.next_after(SimTime::MAX).is_none());
        let missing = trace_class(Path::new("/nonexistent/trace.jsonl"));
        let e = ClassGen::new(&missing, 0, 1).unwrap_err().to_string();
        assert!(e.starts_with("/nonexistent/trace.jsonl: cannot read trace"), "{e}");
    }
}
