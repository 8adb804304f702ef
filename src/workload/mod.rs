//! The workload: request classes, their arrival processes and per-request attributes.
//!
//! A class draws its arrival times from stream `arrivals`/class and its request attributes
//! (service uniform, prompt and output lengths) from streams `service`, `prompt_tokens` and
//! `output_tokens` keyed by the class, in arrival order. None of these streams is touched by a
//! policy, so every policy in a cell sees exactly the same requests (common random numbers).
//! Requests are produced one at a time, never stored as a whole trace.

pub mod arrival;
pub mod dist;
pub mod trace;

use crate::rng::Stream;
use crate::time::SimDuration;
use arrival::{ArrivalGen, ArrivalSpec};
use dist::Dist;

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
    /// Latency objectives for goodput.
    pub slo: Slo,
    /// Trace replay instead of synthetic arrivals and lengths.
    pub trace: Option<TraceSpec>,
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
    /// Tokens of that shared prompt.
    pub group_tokens: u32,
    /// Identity of the conversation (0 = not a session): every full prompt block after the
    /// group prefix is hashed from it, so a later turn reuses the earlier turns' prompt blocks.
    pub session_key: u64,
}

/// The attributes drawn for one request at its arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
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
#[derive(Debug, Clone)]
pub struct ClassGen {
    /// Arrival process state.
    pub arrivals: ArrivalGen,
    service: Stream,
    prompt: Option<(Dist, Stream)>,
    output: Option<(Dist, Stream)>,
}

impl ClassGen {
    /// The generator of class `index` for the run with seed `run_seed`.
    pub fn new(spec: &ClassSpec, index: usize, run_seed: u64) -> ClassGen {
        let i = index as u64;
        ClassGen {
            arrivals: ArrivalGen::new(
                spec.arrival.clone().expect("synthetic class"),
                Stream::new(run_seed, "arrivals", i),
            ),
            service: Stream::new(run_seed, "service", i),
            prompt: spec
                .prompt_tokens
                .clone()
                .map(|d| (d, Stream::new(run_seed, "prompt_tokens", i))),
            output: spec
                .output_tokens
                .clone()
                .map(|d| (d, Stream::new(run_seed, "output_tokens", i))),
        }
    }

    /// Draws the attributes of the next request of this class.
    #[inline]
    pub fn draw(&mut self) -> Draws {
        Draws {
            service_u: self.service.uniform_open(),
            prompt_tokens: self.prompt.as_mut().map_or(0, |(d, s)| tokens(d, s)),
            output_tokens: self.output.as_mut().map_or(0, |(d, s)| tokens(d, s)),
            prefix: PrefixRef::default(),
        }
    }
}

fn tokens(d: &Dist, s: &mut Stream) -> u32 {
    let x = d.quantile(s.uniform_open()).round();
    x.clamp(1.0, u32::MAX as f64) as u32
}
