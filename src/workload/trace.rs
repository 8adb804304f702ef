//! Trace replay: streaming readers of the Mooncake FAST'25 JSONL and Azure LLM inference 2023
//! CSV request traces, yielding one [`TraceRequest`] at a time.
//!
//! Formats (see `data/traces/README.md`):
//! - **Mooncake** — one JSON object per line: `timestamp` (integer milliseconds from the trace
//!   start), `input_length`, `output_length` (tokens) and `hash_ids`, the ids of the prompt's
//!   [`MOONCAKE_BLOCK_TOKENS`]-token blocks (512; the last one may be partial) under chained
//!   hashing: block *i*'s id identifies the whole prefix up to block *i*. Each id becomes the
//!   block hash `mix64(id ^ salt)`, so ids of one trace keep their identity and never collide
//!   with synthetic prefix hashes or with another trace's ids (different salt). Unknown fields
//!   are ignored; `hash_ids` may be shorter than the prompt's blocks but not longer.
//! - **Azure 2023** — CSV with a header naming `TIMESTAMP`, `ContextTokens` and
//!   `GeneratedTokens` (other columns are ignored); `TIMESTAMP` is a wall-clock string
//!   `YYYY-MM-DD HH:MM:SS[.fffffff]` (any number of fractional digits up to 9, optional
//!   `+HH:MM`/`-HH:MM`/`Z` zone), turned into seconds from the first row. No block hashes.
//!
//! Options ([`TraceOptions`]): `start_s` and `duration_s` select the window
//! `[start_s, start_s + duration_s)` of the *trace's own clock* (seconds from its first
//! request); the window is replayed from simulated time 0, compressed by `time_scale`
//! (2 = twice as fast): `arrival = (t_trace − start_s) / time_scale`.
//!
//! Invariants: the file is read line by line (memory O(one line)); arrivals are non-decreasing
//! (a trace whose timestamps go backwards is an error, not silently reordered); every malformed
//! line is a typed [`TraceError`] naming `file:line` and the problem — never a panic. Reading
//! stops at the first error.

use crate::rng::{fnv1a64, mix64};
use crate::time::{SimDuration, SimTime, NANOS_PER_S};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Tokens per `hash_ids` block in the Mooncake traces.
pub const MOONCAKE_BLOCK_TOKENS: u32 = 512;

/// A trace file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// Azure LLM inference 2023 CSV.
    Azure,
    /// Mooncake FAST'25 JSONL.
    Mooncake,
}

/// How a trace is replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceOptions {
    /// Speed-up factor (> 0): 2 replays twice as fast.
    pub time_scale: f64,
    /// Start of the replayed window on the trace's clock, seconds (>= 0).
    pub start_s: f64,
    /// Length of the replayed window on the trace's clock, seconds; `None` = to the end.
    pub duration_s: Option<f64>,
    /// Salt of the block hashes; `None` = derived from the file name.
    pub salt: Option<u64>,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions { time_scale: 1.0, start_s: 0.0, duration_s: None, salt: None }
    }
}

/// One request of a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceRequest {
    /// Arrival time in the replay.
    pub arrival: SimTime,
    /// Prompt (input) tokens.
    pub prompt_tokens: u32,
    /// Output tokens.
    pub output_tokens: u32,
    /// Chained hashes of the prompt's [`MOONCAKE_BLOCK_TOKENS`]-token blocks (Mooncake only;
    /// empty for Azure).
    pub block_hashes: Vec<u64>,
}

/// A trace that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file cannot be opened or read.
    #[error("{path}: cannot read trace: {source}")]
    Io {
        /// The trace file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {problem}")]
    Line {
        /// The trace file.
        path: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// The replay options are invalid.
    #[error("trace options: {0}")]
    Options(String),
}

/// A streaming reader over one trace file: an iterator of requests in arrival order.
#[derive(Debug)]
pub struct TraceReader {
    input: BufReader<File>,
    path: String,
    format: TraceFormat,
    opts: TraceOptions,
    salt: u64,
    line_no: u64,
    buf: String,
    /// Azure: column indices of timestamp, context tokens, generated tokens.
    columns: [usize; 3],
    /// Trace time (ns, absolute for Azure) of the first row.
    origin_ns: Option<i128>,
    last_ns: i128,
    start_ns: i128,
    end_ns: Option<i128>,
    done: bool,
}

#[derive(serde::Deserialize)]
struct MooncakeRow {
    timestamp: u64,
    input_length: u32,
    output_length: u32,
    #[serde(default)]
    hash_ids: Vec<u64>,
}

impl TraceReader {
    /// Opens `path` (and, for Azure, reads its header).
    pub fn open(path: &Path, format: TraceFormat, opts: TraceOptions) -> Result<Self, TraceError> {
        let shown = path.display().to_string();
        if !(opts.time_scale.is_finite() && opts.time_scale > 0.0) {
            return Err(TraceError::Options(format!(
                "time_scale must be > 0, got {}",
                opts.time_scale
            )));
        }
        if !(opts.start_s.is_finite() && opts.start_s >= 0.0) {
            return Err(TraceError::Options(format!("start_s must be >= 0, got {}", opts.start_s)));
        }
        if let Some(d) = opts.duration_s {
            if !(d.is_finite() && d > 0.0) {
                return Err(TraceError::Options(format!("duration_s must be > 0, got {d}")));
            }
        }
        let file =
            File::open(path).map_err(|source| TraceError::Io { path: shown.clone(), source })?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let start_ns = i128::from(SimDuration::from_secs_f64(opts.start_s).as_nanos());
        let mut r = TraceReader {
            input: BufReader::new(file),
            path: shown,
            format,
            opts,
            salt: opts.salt.unwrap_or_else(|| fnv1a64(&format!("trace:{name}"))),
            line_no: 0,
            buf: String::new(),
            columns: [0, 1, 2],
            origin_ns: None,
            last_ns: i128::MIN,
            start_ns,
            end_ns: opts
                .duration_s
                .map(|d| start_ns + i128::from(SimDuration::from_secs_f64(d).as_nanos())),
            done: false,
        };
        if format == TraceFormat::Azure {
            r.read_header()?;
        }
        Ok(r)
    }

    /// The file as named in errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The block hash a Mooncake `hash_id` maps to in this trace.
    pub fn block_hash(&self, hash_id: u64) -> u64 {
        mix64(hash_id ^ self.salt)
    }

    fn err(&self, problem: impl Into<String>) -> TraceError {
        TraceError::Line { path: self.path.clone(), line: self.line_no, problem: problem.into() }
    }

    /// Reads the next non-empty line into `buf`; false at end of file.
    fn next_line(&mut self) -> Result<bool, TraceError> {
        loop {
            self.buf.clear();
            let n = self
                .input
                .read_line(&mut self.buf)
                .map_err(|source| TraceError::Io { path: self.path.clone(), source })?;
            if n == 0 {
                return Ok(false);
            }
            self.line_no += 1;
            if !self.buf.trim().is_empty() {
                return Ok(true);
            }
        }
    }

    fn read_header(&mut self) -> Result<(), TraceError> {
        if !self.next_line()? {
            self.line_no = 1;
            return Err(
                self.err("empty file: expected a header TIMESTAMP,ContextTokens,GeneratedTokens")
            );
        }
        let names: Vec<&str> = self.buf.trim().split(',').map(str::trim).collect();
        let mut columns = [0; 3];
        for (slot, want) in
            columns.iter_mut().zip(["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
        {
            *slot = names.iter().position(|n| *n == want).ok_or_else(|| {
                self.err(format!("header lacks column `{want}` (found {})", names.join(",")))
            })?;
        }
        self.columns = columns;
        Ok(())
    }

    /// Parses the current line: (trace time ns, prompt, output, hashes).
    fn parse_line(&self) -> Result<(i128, u32, u32, Vec<u64>), TraceError> {
        let line = self.buf.trim();
        match self.format {
            TraceFormat::Mooncake => {
                let row: MooncakeRow = serde_json::from_str(line)
                    .map_err(|e| self.err(format!("not a Mooncake JSON record: {e}")))?;
                let blocks = row.input_length.div_ceil(MOONCAKE_BLOCK_TOKENS) as usize;
                if row.hash_ids.len() > blocks {
                    return Err(self.err(format!(
                        "{} hash_ids for input_length {} (at most {blocks} blocks of {MOONCAKE_BLOCK_TOKENS} tokens)",
                        row.hash_ids.len(),
                        row.input_length
                    )));
                }
                let hashes = row.hash_ids.iter().map(|&id| self.block_hash(id)).collect();
                let t = i128::from(row.timestamp) * 1_000_000;
                Ok((t, row.input_length, row.output_length, hashes))
            }
            TraceFormat::Azure => {
                let fields: Vec<&str> = line.split(',').map(str::trim).collect();
                let field = |i: usize, name: &str| {
                    fields.get(self.columns[i]).copied().ok_or_else(|| {
                        self.err(format!("missing column `{name}` ({} fields)", fields.len()))
                    })
                };
                let ts = field(0, "TIMESTAMP")?;
                let t = parse_wall_clock_ns(ts).ok_or_else(|| {
                    self.err(format!("bad TIMESTAMP `{ts}` (want YYYY-MM-DD HH:MM:SS.fffffff)"))
                })?;
                let num = |i: usize, name: &str| -> Result<u32, TraceError> {
                    let v = field(i, name)?;
                    v.parse::<u32>()
                        .map_err(|_| self.err(format!("bad {name} `{v}`: not a token count")))
                };
                Ok((t, num(1, "ContextTokens")?, num(2, "GeneratedTokens")?, Vec::new()))
            }
        }
    }

    fn next_request(&mut self) -> Result<Option<TraceRequest>, TraceError> {
        loop {
            if !self.next_line()? {
                return Ok(None);
            }
            let (t_abs, prompt, output, hashes) = self.parse_line()?;
            if prompt == 0 || output == 0 {
                return Err(
                    self.err(format!("zero-token request (input {prompt}, output {output})"))
                );
            }
            if t_abs < self.last_ns {
                return Err(
                    self.err("timestamp earlier than the previous row: the trace must be sorted")
                );
            }
            self.last_ns = t_abs;
            let origin = *self.origin_ns.get_or_insert(match self.format {
                TraceFormat::Azure => t_abs,
                TraceFormat::Mooncake => 0,
            });
            let t = t_abs - origin;
            if t < self.start_ns {
                continue;
            }
            if self.end_ns.is_some_and(|end| t >= end) {
                return Ok(None);
            }
            let rel = (t - self.start_ns) as u64;
            let arrival = if self.opts.time_scale == 1.0 {
                SimTime(rel)
            } else {
                let secs = (rel / NANOS_PER_S) as f64 + (rel % NANOS_PER_S) as f64 * 1e-9;
                SimTime::ZERO + SimDuration::from_secs_f64(secs / self.opts.time_scale)
            };
            return Ok(Some(TraceRequest {
                arrival,
                prompt_tokens: prompt,
                output_tokens: output,
                block_hashes: hashes,
            }));
        }
    }
}

impl Iterator for TraceReader {
    type Item = Result<TraceRequest, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_request().transpose();
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }
}

/// Resolves a trace path given in a scenario: relative paths are relative to the scenario
/// file's directory.
pub fn resolve_path(scenario_file: &Path, trace: &Path) -> PathBuf {
    if trace.is_absolute() {
        return trace.to_path_buf();
    }
    scenario_file.parent().unwrap_or_else(|| Path::new("")).join(trace)
}

/// Splits each trace block hash into the hashes of the engine's `block_size`-token blocks
/// covering `prompt_tokens` (`block_size` must divide [`MOONCAKE_BLOCK_TOKENS`]): sub-block *j*
/// of trace block *i* gets `mix64(hash_i ^ mix64(j + 1))`. Chaining is preserved (a sub-block's
/// hash still determines the whole prefix of its trace block); sharing is conservative: two
/// prompts that diverge inside a trace block share none of its sub-blocks.
pub fn expand_block_hashes(trace_hashes: &[u64], block_size: u32, prompt_tokens: u32) -> Vec<u64> {
    debug_assert!(block_size > 0 && MOONCAKE_BLOCK_TOKENS % block_size == 0);
    let per = (MOONCAKE_BLOCK_TOKENS / block_size) as usize;
    let n = (prompt_tokens.div_ceil(block_size) as usize).min(trace_hashes.len() * per);
    (0..n).map(|k| mix64(trace_hashes[k / per] ^ mix64(k as u64 % per as u64 + 1))).collect()
}

/// Parses `YYYY-MM-DD HH:MM:SS[.f{1,9}][Z|±HH:MM]` (a `T` separator is accepted too) into
/// nanoseconds since 1970-01-01 UTC; `None` if malformed.
pub fn parse_wall_clock_ns(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter()
            .try_fold(0i64, |acc, &c| c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0')))
    };
    if b.len() < 19
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b' ' | b'T')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (h, mi, sec) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&mo)
        || !(1..=days_in_month(y, mo)).contains(&d)
        || h > 23
        || mi > 59
        || sec > 60
    {
        return None;
    }
    let mut i = 19;
    let mut frac_ns: i64 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        let mut end = start;
        while end < b.len() && b[end].is_ascii_digit() {
            end += 1;
        }
        let len = end - start;
        if len == 0 || len > 9 {
            return None;
        }
        frac_ns = digits(start, len)? * 10i64.pow((9 - len) as u32);
        i = end;
    }
    let offset_s: i64 = match b.get(i) {
        None => 0,
        Some(b'Z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let off = digits(i + 1, 2)? * 3600 + digits(i + 4, 2)? * 60;
            if sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset_s;
    Some(i128::from(secs) * i128::from(NANOS_PER_S) + i128::from(frac_ns))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the civil date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("data/traces").join(name)
    }

    const MOONCAKE: &str = "mooncake_conversation_trace.jsonl";
    const AZURE: &str = "AzureLLMInferenceTrace_conv.csv";

    fn read_all(name: &str, format: TraceFormat, opts: TraceOptions) -> Vec<TraceRequest> {
        TraceReader::open(&data(name), format, opts)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
    }

    /// A temporary trace file holding `text`, removed on drop.
    struct Temp(PathBuf);
    impl Temp {
        fn new(tag: &str, text: &str) -> Temp {
            let p =
                std::env::temp_dir().join(format!("routelab-trace-{}-{tag}", std::process::id()));
            std::fs::write(&p, text).unwrap();
            Temp(p)
        }
    }
    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn first_error(tag: &str, format: TraceFormat, text: &str) -> String {
        let f = Temp::new(tag, text);
        let mut r = TraceReader::open(&f.0, format, TraceOptions::default())
            .map(|r| r.collect::<Vec<_>>())
            .map_err(|e| e.to_string());
        match &mut r {
            Err(e) => e.replace(&f.0.display().to_string(), "FILE"),
            Ok(items) => {
                let pos = items.iter().position(Result::is_err).expect("an error");
                assert_eq!(pos, items.len() - 1, "reading stops at the first error");
                let e = items.pop().unwrap().unwrap_err().to_string();
                e.replace(&f.0.display().to_string(), "FILE")
            }
        }
    }

    #[test]
    fn mooncake_trace_parses_completely() {
        let reqs = read_all(MOONCAKE, TraceFormat::Mooncake, TraceOptions::default());
        assert_eq!(reqs.len(), 12_031);
        let r = TraceReader::open(&data(MOONCAKE), TraceFormat::Mooncake, TraceOptions::default())
            .unwrap();
        let first = &reqs[0];
        assert_eq!(
            (first.arrival, first.prompt_tokens, first.output_tokens),
            (SimTime::ZERO, 6758, 500)
        );
        let ids: Vec<u64> = (0..14).map(|id| r.block_hash(id)).collect();
        assert_eq!(first.block_hashes, ids);
        assert_eq!(reqs[1].block_hashes[0], r.block_hash(0));
        assert_eq!(reqs[1].block_hashes[1], r.block_hash(14));
        for q in &reqs {
            assert_eq!(
                q.block_hashes.len() as u32,
                q.prompt_tokens.div_ceil(MOONCAKE_BLOCK_TOKENS)
            );
        }
        assert!(reqs.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        // Last timestamp 3,536,999 ms (duration in the shared stats).
        assert_eq!(reqs.last().unwrap().arrival, SimTime(3_536_999_000_000));
        // Hashes are salted: the raw ids never appear.
        assert_ne!(r.block_hash(0), 0);
        let other = TraceOptions { salt: Some(7), ..TraceOptions::default() };
        let r2 = TraceReader::open(&data(MOONCAKE), TraceFormat::Mooncake, other).unwrap();
        assert_ne!(r.block_hash(0), r2.block_hash(0));
    }

    #[test]
    fn azure_trace_parses_completely() {
        let reqs = read_all(AZURE, TraceFormat::Azure, TraceOptions::default());
        assert_eq!(reqs.len(), 19_366);
        let head: Vec<_> =
            reqs[..3].iter().map(|q| (q.arrival.0, q.prompt_tokens, q.output_tokens)).collect();
        // 18:15:46.6805900 -> 18:15:50.9951690 -> 18:15:51.2224670.
        assert_eq!(head, [(0, 374, 44), (4_314_579_000, 396, 109), (4_541_877_000, 879, 55)]);
        assert!(reqs.iter().all(|q| q.block_hashes.is_empty()));
        // First 18:15:46.680590, last 19:14:08.402527 (shared stats: 3501.721937 s).
        assert_eq!(reqs.last().unwrap().arrival.0 / 1000, 3_501_721_937);
        let total: u64 = reqs.iter().map(|q| u64::from(q.prompt_tokens)).sum();
        assert_eq!(total, 22_361_870);
    }

    #[test]
    fn time_scale_compresses_gaps() {
        for (name, format) in [(AZURE, TraceFormat::Azure), (MOONCAKE, TraceFormat::Mooncake)] {
            let base = read_all(name, format, TraceOptions::default());
            let fast =
                read_all(name, format, TraceOptions { time_scale: 2.0, ..TraceOptions::default() });
            assert_eq!(base.len(), fast.len());
            for (b, f) in base.iter().zip(&fast) {
                assert!(
                    b.arrival.0.abs_diff(2 * f.arrival.0) <= 1,
                    "{} vs {}",
                    b.arrival,
                    f.arrival
                );
                assert_eq!((b.prompt_tokens, &b.block_hashes), (f.prompt_tokens, &f.block_hashes));
            }
        }
    }

    #[test]
    fn start_and_duration_select_a_window() {
        let base = read_all(AZURE, TraceFormat::Azure, TraceOptions::default());
        let opts =
            TraceOptions { start_s: 600.0, duration_s: Some(60.0), time_scale: 2.0, salt: None };
        let win = read_all(AZURE, TraceFormat::Azure, opts);
        let (lo, hi) = (600 * NANOS_PER_S, 660 * NANOS_PER_S);
        let expect: Vec<_> = base.iter().filter(|q| (lo..hi).contains(&q.arrival.0)).collect();
        assert!(expect.len() > 100);
        assert_eq!(win.len(), expect.len());
        for (w, e) in win.iter().zip(&expect) {
            assert!(w.arrival.0.abs_diff((e.arrival.0 - lo) / 2) <= 1);
            assert_eq!(w.prompt_tokens, e.prompt_tokens);
        }
        let cut = read_all(
            MOONCAKE,
            TraceFormat::Mooncake,
            TraceOptions { duration_s: Some(30.0), ..TraceOptions::default() },
        );
        // Ticks at 0, ~3 s, ..., ~27 s: ten ticks.
        assert!(cut.iter().all(|q| q.arrival.0 < 30 * NANOS_PER_S));
        let all = read_all(MOONCAKE, TraceFormat::Mooncake, TraceOptions::default());
        assert_eq!(cut.len(), all.iter().filter(|q| q.arrival.0 < 30 * NANOS_PER_S).count());
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let m = TraceFormat::Mooncake;
        let ok = r#"{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}"#;
        let e =
            first_error("m1", m, &format!("{ok}\n{ok}\n{{\"timestamp\": 1, \"input_length\": \n"));
        assert!(e.starts_with("FILE:3: not a Mooncake JSON record"), "{e}");
        let e = first_error("m2", m, &format!("{ok}\n\n{}\n", ok.replace("[1, 2]", "[1, 2, 3]")));
        assert_eq!(e, "FILE:3: 3 hash_ids for input_length 600 (at most 2 blocks of 512 tokens)");
        let e = first_error("m3", m, &format!("{}\n{ok}\n", ok.replace("0,", "5000,")));
        assert_eq!(e, "FILE:2: timestamp earlier than the previous row: the trace must be sorted");
        let e = first_error("m4", m, &ok.replace("600", "-3"));
        assert!(e.starts_with("FILE:1: not a Mooncake JSON record"), "{e}");
        let e = first_error("m5", m, &ok.replace("\"output_length\": 5", "\"output_length\": 0"));
        assert_eq!(e, "FILE:1: zero-token request (input 600, output 0)");
        let a = TraceFormat::Azure;
        let head = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
        let row = "2023-11-16 18:15:46.6805900,374,44\n";
        let e = first_error("a1", a, &format!("{head}{row}2023-11-16 18:61:00.0,1,1\n"));
        assert_eq!(
            e,
            "FILE:3: bad TIMESTAMP `2023-11-16 18:61:00.0` (want YYYY-MM-DD HH:MM:SS.fffffff)"
        );
        let e = first_error("a2", a, &format!("{head}{row}2023-11-16 18:15:47,x7,1\n"));
        assert_eq!(e, "FILE:3: bad ContextTokens `x7`: not a token count");
        let e = first_error("a3", a, &format!("{head}2023-11-16 18:15:47,12\n"));
        assert_eq!(e, "FILE:2: missing column `GeneratedTokens` (2 fields)");
        let e = first_error("a4", a, "TIMESTAMP,Context,GeneratedTokens\n");
        assert_eq!(
            e,
            "FILE:1: header lacks column `ContextTokens` (found TIMESTAMP,Context,GeneratedTokens)"
        );
        let e = first_error("a5", a, "");
        assert!(e.starts_with("FILE:1: empty file"), "{e}");
        let missing =
            TraceReader::open(Path::new("/nonexistent/t.csv"), a, TraceOptions::default());
        assert!(missing
            .unwrap_err()
            .to_string()
            .starts_with("/nonexistent/t.csv: cannot read trace"));
        let bad = TraceOptions { time_scale: 0.0, ..TraceOptions::default() };
        assert!(matches!(TraceReader::open(&data(AZURE), a, bad), Err(TraceError::Options(_))));
    }

    #[test]
    fn wall_clock_timestamps_parse_exactly() {
        // Reference value from Python's datetime (UTC).
        assert_eq!(
            parse_wall_clock_ns("2023-11-16 18:15:46.6805900"),
            Some(1_700_158_546_680_590_000)
        );
        assert_eq!(parse_wall_clock_ns("1970-01-01 00:00:00"), Some(0));
        assert_eq!(parse_wall_clock_ns("1970-01-01T00:00:01.5Z"), Some(1_500_000_000));
        assert_eq!(
            parse_wall_clock_ns("2024-05-12 00:00:00.000001+00:00"),
            parse_wall_clock_ns("2024-05-12 00:00:00.000001")
        );
        assert_eq!(parse_wall_clock_ns("1970-01-01 01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_wall_clock_ns("2024-02-29 00:00:00"),
            Some(1_709_164_800 * NANOS_PER_S as i128)
        );
        for bad in [
            "2023-02-29 00:00:00",
            "2023-11-16",
            "2023-11-16 18:15:46.",
            "2023-11-16 18:15:46.1234567890",
            "2023-11-16 18:15:46 x",
            "2023/11/16 18:15:46",
        ] {
            assert_eq!(parse_wall_clock_ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn block_hashes_expand_to_engine_blocks() {
        let h = [11u64, 22];
        let e = expand_block_hashes(&h, 128, 600);
        assert_eq!(e.len(), 5);
        let f = expand_block_hashes(&[11, 33], 128, 600);
        assert_eq!(e[..4], f[..4], "same first trace block, same sub-block hashes");
        assert_ne!(e[4], f[4]);
        assert_eq!(expand_block_hashes(&h, 512, 600).len(), 2);
        assert_eq!(expand_block_hashes(&h[..1], 16, 600).len(), 32, "stops where the hashes stop");
        let all: std::collections::BTreeSet<u64> =
            expand_block_hashes(&h, 16, 1024).into_iter().collect();
        assert_eq!(all.len(), 64);
    }

    #[test]
    fn relative_paths_resolve_against_the_scenario() {
        let s = Path::new("/a/b/scenario.yaml");
        assert_eq!(resolve_path(s, Path::new("t.csv")), Path::new("/a/b/t.csv"));
        assert_eq!(resolve_path(s, Path::new("/x/t.csv")), Path::new("/x/t.csv"));
        assert_eq!(resolve_path(Path::new("s.yaml"), Path::new("t.csv")), Path::new("t.csv"));
    }
}
