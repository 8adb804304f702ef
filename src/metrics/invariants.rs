//! End-of-run invariant checks. Violations are counted while the run goes (each check is O(1)
//! at the point where it can break) and judged once at the end, so a broken invariant ends the
//! run with a `RunError` naming the seed instead of silently skewing results.
//!
//! - conservation: `arrivals = completed + timed_out + rejected + errors + failed +
//!   unfinished`, for all requests
//!   and for measured ones, with nothing left in flight;
//! - causality: `arrival <= service start <= done` for every request that completed;
//! - monotone clock: no event is processed at an earlier time than the one before it;
//! - work conservation: no replica has a free slot while a live request waits in its queue,
//!   checked after every change to the replica;
//! - routing: every pick is a candidate (a ready replica able to serve the request), and every
//!   gateway's in-flight counters, retry slots and admission queues return to zero.

use super::Recorder;

/// Violation counters gathered during a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Violations {
    /// Completions with `start < arrival` or `done < start`.
    pub causality: u64,
    /// Events popped out of time order.
    pub clock: u64,
    /// Replica states with a free slot and a waiting request.
    pub work_conservation: u64,
    /// KV block manager states with `allocated + free + cached != capacity` (or broken
    /// bookkeeping), checked after every `llm` iteration in debug runs and at the end.
    pub kv_conservation: u64,
    /// Requests whose TTFT is shorter than the prefill time of their uncached prompt alone.
    pub ttft_below_prefill: u64,
    /// Requests whose TPOT is below the shortest iteration their replica can run.
    pub tpot_below_iteration: u64,
    /// Routing picks outside the candidate set, plus gateway in-flight counts left at the end.
    pub routing: u64,
}

/// Checks every end-of-run invariant; `Err` describes the first broken one.
pub fn check(rec: &Recorder, v: &Violations, in_flight_at_end: u64) -> Result<(), String> {
    for (name, c) in [("all", rec.all), ("measured", rec.measured)] {
        if c.arrivals != c.ended() {
            return Err(format!(
                "conservation ({name} requests): arrivals {} != completed {} + timed_out {} + rejected {} + errors {} + failed {} + unfinished {}",
                c.arrivals, c.completed, c.timed_out, c.rejected, c.errors, c.failed, c.unfinished
            ));
        }
    }
    if in_flight_at_end != 0 {
        return Err(format!(
            "conservation: {in_flight_at_end} requests still in flight at the end"
        ));
    }
    if v.causality > 0 {
        return Err(format!(
            "causality: {} requests finished before they started or arrived",
            v.causality
        ));
    }
    if v.clock > 0 {
        return Err(format!("monotone clock: {} events went back in time", v.clock));
    }
    if v.kv_conservation > 0 {
        return Err(format!("KV block conservation broken {} times", v.kv_conservation));
    }
    if v.ttft_below_prefill > 0 {
        return Err(format!(
            "TTFT below the prefill time of the uncached prompt for {} requests",
            v.ttft_below_prefill
        ));
    }
    if v.tpot_below_iteration > 0 {
        return Err(format!(
            "TPOT below the smallest iteration time for {} requests",
            v.tpot_below_iteration
        ));
    }
    if v.routing > 0 {
        return Err(format!(
            "routing: {} picks outside the candidate set or gateway counts (in flight, retry slots, queued) left over",
            v.routing
        ));
    }
    if v.work_conservation > 0 {
        return Err(format!(
            "work conservation: {} times a replica had a free slot while a request waited",
            v.work_conservation
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Outcome;

    #[test]
    fn detects_each_broken_invariant() {
        let mut rec = Recorder::default();
        rec.all.arrivals = 2;
        rec.all.add(Outcome::Completed);
        assert!(check(&rec, &Violations::default(), 0).expect_err("lost").contains("conservation"));
        rec.all.add(Outcome::TimedOut);
        assert!(check(&rec, &Violations::default(), 0).is_ok());
        assert!(check(&rec, &Violations::default(), 1).is_err());
        for v in [
            Violations { causality: 1, ..Default::default() },
            Violations { clock: 1, ..Default::default() },
            Violations { work_conservation: 1, ..Default::default() },
            Violations { kv_conservation: 1, ..Default::default() },
            Violations { ttft_below_prefill: 1, ..Default::default() },
            Violations { tpot_below_iteration: 1, ..Default::default() },
            Violations { routing: 1, ..Default::default() },
        ] {
            assert!(check(&rec, &v, 0).is_err());
        }
    }
}
