//! The `routelab` binary: parse the command line, run, map errors to exit codes.
//! Exit codes: 0 ok; 1 a check or gate failed; 2 bad input (scenario, flag, path) or a run
//! that hit a limit; 3 an invariant violation (a simulator bug: please report it).

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = routelab::cli::Cli::parse();
    match routelab::cli::execute(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
