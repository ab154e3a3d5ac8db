//! The `shoal` command: parses arguments, runs the subcommand, and turns its result into an
//! exit code. Everything else lives in the library crates.

mod cli;
mod commands;
mod exit;
mod report;

use clap::Parser;

// The router allocates per request; mimalloc is markedly cheaper than glibc's malloc there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = cli::Cli::parse();
    let code = match commands::run(cli) {
        Ok(code) => code,
        Err(err) => report::error(&err),
    };
    std::process::exit(code);
}
