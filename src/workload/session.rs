//! Closed-loop multi-turn sessions: the state of one conversation between its turns.
//!
//! A session starts with an arrival of its class (turn 1, drawn by `ClassGen::draw`); each
//! later turn is sent a think time after the previous answer, with a prompt that is the whole
//! conversation so far (previous prompt + answer) plus a new user message — or, with
//! `history: false`, the new message alone (a closed-loop client of independent requests).
//!
//! Invariants: a [`Session`] is O(1) memory (a stream, a few counters, its key); every draw of
//! turns 2.. (turn count, think times, user messages, output lengths, service uniforms) comes
//! from the session's own stream `Stream::new(run_seed, "session", key)`, where `key` mixes the
//! class and the session's ordinal in its class's arrival order, in a fixed order per turn. So
//! a session's draws never depend on when its turns complete or on other sessions — policies
//! cannot shift the workload. The prompt lengths depend only on the `answer_tokens` the caller
//! reports (the turn's `output_tokens` for a policy-independent workload).

use crate::rng::Stream;
use crate::time::SimDuration;
use crate::workload::dist::Dist;
use crate::workload::{tokens, Draws, PrefixRef, SessionSpec};

/// Name of the per-session stream.
pub const STREAM: &str = "session";

/// One open conversation.
#[derive(Debug, Clone)]
pub struct Session {
    key: u64,
    rng: Stream,
    prefix: PrefixRef,
    prompt_tokens: u32,
    turns: u32,
    sent: u32,
}

/// The class attributes a session's later turns are drawn from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TurnLaws<'a> {
    pub spec: &'a SessionSpec,
    pub prompt: Option<&'a Dist>,
    pub output: Option<&'a Dist>,
    pub max_tokens: Option<u32>,
}

impl Session {
    /// The session whose first turn drew `first` (its `prefix.session_key` is the session's
    /// key, non-zero); draws the number of turns from the session's stream.
    pub(crate) fn open(spec: &SessionSpec, run_seed: u64, first: &Draws) -> Session {
        let key = first.prefix.session_key;
        let mut rng = Stream::new(run_seed, STREAM, key);
        let turns = spec.turns.quantile(rng.uniform_open()).round().clamp(1.0, f64::from(u32::MAX));
        Session {
            key,
            rng,
            prefix: first.prefix,
            prompt_tokens: first.prompt_tokens,
            turns: turns as u32,
            sent: 1,
        }
    }

    /// The session's key (also `Draws.prefix.session_key` of each of its turns).
    pub fn key(&self) -> u64 {
        self.key
    }

    /// Turns planned (at least 1; the context cap may end the session earlier).
    pub fn turns(&self) -> u32 {
        self.turns
    }

    /// Turns sent so far (the first included).
    pub fn turns_sent(&self) -> u32 {
        self.sent
    }

    /// Prompt tokens of the latest turn sent.
    pub fn prompt_tokens(&self) -> u32 {
        self.prompt_tokens
    }

    /// Whether no further turn will be sent.
    pub fn is_over(&self) -> bool {
        self.sent >= self.turns
    }

    /// The think time before the next turn and its draws, after the latest turn's answer of
    /// `answer_tokens` tokens; `None` once the session is over (turns exhausted, or the next
    /// prompt would exceed `max_context_tokens`; it then stays over).
    pub(crate) fn next_turn(
        &mut self,
        laws: TurnLaws<'_>,
        answer_tokens: u32,
    ) -> Option<(SimDuration, Draws)> {
        if self.is_over() {
            return None;
        }
        // Fixed draw order per turn, whatever happens after.
        let think = laws.spec.think_time_s.quantile(self.rng.uniform_open());
        let message = laws.prompt.map_or(0, |d| tokens(d, &mut self.rng));
        let output = laws.output.map_or(0, |d| tokens(d, &mut self.rng));
        let service_u = self.rng.uniform_open();
        let prompt = if laws.spec.history {
            u64::from(self.prompt_tokens) + u64::from(answer_tokens) + u64::from(message)
        } else {
            u64::from(message)
        };
        if prompt > u64::from(laws.spec.max_context_tokens) {
            self.turns = self.sent;
            return None;
        }
        self.sent += 1;
        self.prompt_tokens = prompt as u32;
        let draws = Draws {
            service_u,
            prompt_tokens: self.prompt_tokens,
            output_tokens: laws.max_tokens.map_or(output, |m| output.min(m)),
            prefix: if laws.spec.history {
                self.prefix
            } else {
                // An independent request: no conversation blocks to share.
                PrefixRef { session_key: 0, ..self.prefix }
            },
        };
        Some((SimDuration::from_secs_f64(think), draws))
    }
}
