//! How one attempt ended, as the gateway that sent it observes it.
//!
//! Every attempt a gateway dispatches ends in exactly one [`AttemptResult`]; the health
//! mechanisms (`nginx_passive`, `outlier`, `circuit_breaker`), the retry policy (`retry`) and
//! the client outcome are all derived from it. HTTP statuses are the ones the simulated
//! replicas can produce: 5xx from an `errors` fault, 429 from a full replica queue.

/// The result of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx response served to its end.
    Success,
    /// An HTTP error status from the replica (500 and 503 from `errors` faults, 429 from a full
    /// replica queue).
    Status(u16),
    /// The connection broke after the request was sent (the replica crashed mid-request).
    Reset,
    /// The connection could not be made: refused (the replica is down) or timed out (a
    /// partition between this gateway and the replica).
    ConnectFailure,
    /// No response within the per-try timeout (a hung or very slow replica).
    Timeout,
}

impl AttemptResult {
    /// Whether the attempt succeeded.
    #[inline]
    pub fn is_success(self) -> bool {
        self == AttemptResult::Success
    }

    /// Whether it is a 5xx response.
    #[inline]
    pub fn is_5xx(self) -> bool {
        matches!(self, AttemptResult::Status(c) if (500..600).contains(&c))
    }

    /// Whether it originates locally at the gateway (no HTTP response came back): connect
    /// failures, resets and timeouts.
    #[inline]
    pub fn is_local_origin(self) -> bool {
        matches!(
            self,
            AttemptResult::Reset | AttemptResult::ConnectFailure | AttemptResult::Timeout
        )
    }
}
