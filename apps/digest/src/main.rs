//! `digest`: shoal's reference app. One binary, one subcommand per process type of the
//! Procfile: `web`, `worker`, and `migrate` (the `release` step).
//!
//! Exit codes: 0 done (or stopped by SIGTERM/SIGINT), 1 a backing service failed (the database
//! or session store cannot be reached, the port is taken), 2 wrong usage or configuration.

use std::process::ExitCode;

use digest_app::config::{Config, ConfigError};
use digest_app::db::{self, Db, schema};

const USAGE: &str = "usage: digest <web|worker|migrate>

  web      serve the pages and the JSON API on $PORT
  worker   take URL jobs from the queue, download and digest them
  migrate  create or update the database tables, then exit

Configuration comes from the environment (DATABASE_URL, SESSION_URL, DIGEST_MAX_BYTES,
DIGEST_ALLOW_LOOPBACK, DIGEST_LEASE_SECS, DIGEST_MAX_ATTEMPTS, DIGEST_POLL_MAX_MS);
see apps/digest/README.md.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.as_slice() {
        [c] if matches!(c.as_str(), "web" | "worker" | "migrate") => c.clone(),
        [h] if matches!(h.as_str(), "-h" | "--help" | "help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("digest: expected one of `web`, `worker`, `migrate`\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("digest: {e}");
            return ExitCode::from(2);
        }
    };
    // A worker does one job at a time: on one thread, the download's connection and the
    // loop reading its body hand chunks over without waking another thread for each (the
    // hashes and the scratch file have threads of their own). That is about a third faster
    // per GiB than the multi-threaded runtime the web process uses.
    let runtime = if command == "web" {
        tokio::runtime::Runtime::new()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(r) => r,
        Err(e) => {
            eprintln!("digest: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match command.as_str() {
            "web" => digest_app::web::serve(config).await,
            "worker" => digest_app::worker::run(config).await,
            _ => migrate(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("digest {command}: {}", chain(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let db = Db::connect(&config.database).await?;
    let applied = schema::migrate(&db).await?;
    if applied.is_empty() {
        eprintln!(
            "digest migrate: `{}` is up to date (schema version {})",
            config.database.masked(),
            schema::latest_version()
        );
    } else {
        eprintln!(
            "digest migrate: `{}`: applied schema version(s) {applied:?}",
            config.database.masked()
        );
    }
    db.close().await;
    Ok(())
}

/// 2 for configuration that can never work (a malformed URL), 1 for everything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    let config = e.chain().any(|c| {
        c.is::<ConfigError>()
            || matches!(
                c.downcast_ref::<db::ConnectError>(),
                Some(db::ConnectError::InvalidUrl { .. })
            )
            || matches!(
                c.downcast_ref::<shoal_kit::ConnectError>(),
                Some(
                    shoal_kit::ConnectError::InvalidUrl { .. }
                        | shoal_kit::ConnectError::InvalidNamespace(_)
                )
            )
            || matches!(
                c.downcast_ref::<shoal_kit::ListenError>(),
                Some(shoal_kit::ListenError::InvalidPort(_))
            )
    });
    if config { 2 } else { 1 }
}

/// An error and its causes on one line.
fn chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
