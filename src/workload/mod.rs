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
    /// Arrival process.
    pub arrival: ArrivalSpec,
    /// Service time in seconds (queue replicas), unless the pool overrides it.
    pub service_s: Option<Dist>,
    /// Prompt length in tokens.
    pub prompt_tokens: Option<Dist>,
    /// Output length in tokens.
    pub output_tokens: Option<Dist>,
    /// Deadline after arrival.
    pub timeout: Option<SimDuration>,
}

/// The attributes drawn for one request at its arrival.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draws {
    /// Uniform in (0, 1) mapped through the serving pool's service distribution.
    pub service_u: f64,
    /// Prompt tokens (0 if the class has no prompt distribution).
    pub prompt_tokens: u32,
    /// Output tokens (0 if the class has no output distribution).
    pub output_tokens: u32,
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
            arrivals: ArrivalGen::new(spec.arrival.clone(), Stream::new(run_seed, "arrivals", i)),
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
        }
    }
}

fn tokens(d: &Dist, s: &mut Stream) -> u32 {
    let x = d.quantile(s.uniform_open()).round();
    x.clamp(1.0, u32::MAX as f64) as u32
}
