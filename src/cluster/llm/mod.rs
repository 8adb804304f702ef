//! `llm` replicas (engine in progress).

pub mod spec;
