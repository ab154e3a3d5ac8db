//! One download through digest's worker pipeline, for bench/digest.sh.
//!
//! `pipeline_bench URL SCRATCH_DIR` does what the worker does with a job: `digest_url` into a
//! scratch file (download + SHA-256 + BLAKE3 + type scan + write), then removes the file.
//! It prints one line of `key=value` fields on stdout:
//! `bytes`, `seconds` (the pipeline only, not process start), `mb_per_s` (10^6 bytes),
//! `max_rss_kib` (the process's peak resident memory, VmHWM), `chunks` and `max_chunk`
//! (how the body arrived), `blocks` (handed to the threads), the seconds the task feeding
//! them waited for the download (`stream_wait`) and for a free block (`block_wait`), each
//! thread's busy seconds (`sha256_busy`, `blake3_busy`, `write_busy`), the seconds the
//! SHA-256 thread waited for a block (`sha256_wait`), `direct_bytes` (written with direct
//! I/O), `writes` (the writer's system calls), `sha256`, `type`.
//!
//! And the CPU seconds the pipeline used (from its start to its end, process start not
//! included): `cpu_user` and `cpu_sys` of the whole process, `cpu_sha256`, `cpu_blake3` and
//! `cpu_write` of the three threads, and `cpu_fetch`, the rest: the thread that downloads
//! and fills the blocks (the runtime's only thread here), kernel receive work included.
//!
//! `pipeline_bench --hash-speed` instead hashes 1 GiB in memory, 1 MiB at a time on one
//! thread (the best of three tries), and prints `sha256_gb_per_s` and `blake3_gb_per_s`
//! (10^9 bytes per second of the thread's CPU time, so that other work on the machine
//! slows it less): the limits of the two hashing threads on this machine.
//!
//! It runs on a current-thread runtime, as `digest worker` does. The fetcher allows loopback
//! (the benchmark serves from 127.0.0.1) and up to 64 GiB.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use digest_app::fetch::{FetchPolicy, Fetcher};
use digest_app::pipeline::{Stages, digest_url_measured, thread_cpu};
use sha2::Digest;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args == ["--hash-speed"] {
        println!("{}", hash_speed());
        return ExitCode::SUCCESS;
    }
    let [url, scratch] = args.as_slice() else {
        eprintln!("usage: pipeline_bench URL SCRATCH_DIR | pipeline_bench --hash-speed");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pipeline_bench: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(url, PathBuf::from(scratch))) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("pipeline_bench: {error}");
            ExitCode::from(1)
        }
    }
}

async fn run(url: &str, scratch: PathBuf) -> Result<String, String> {
    let fetcher = Fetcher::new(FetchPolicy {
        allow_loopback: true,
        max_bytes: 64 << 30,
        timeout: Duration::from_secs(3600),
        max_redirects: 5,
    })
    .map_err(|e| e.to_string())?;
    let dest = scratch.join(format!("pipeline-bench-{}", std::process::id()));
    let mut chunks = 0u64;
    let mut max_chunk = 0u64;
    let mut last = 0u64;
    let mut stages = Stages::default();
    let cpu_before = process_cpu();
    let started = Instant::now();
    let result = digest_url_measured(
        &fetcher,
        url,
        &dest,
        |progress| {
            if progress.done > last {
                chunks += 1;
                max_chunk = max_chunk.max(progress.done - last);
                last = progress.done;
            }
        },
        &mut stages,
    )
    .await;
    let seconds = started.elapsed().as_secs_f64();
    let (user, sys) = process_cpu();
    let (user, sys) = (user - cpu_before.0, sys - cpu_before.1);
    let threads = stages.sha256_cpu + stages.blake3_cpu + stages.write_cpu;
    let fetch = (user + sys).saturating_sub(threads);
    let _ = std::fs::remove_file(&dest);
    let report = result.map_err(|e| e.to_string())?;
    Ok(format!(
        "bytes={} seconds={seconds:.4} mb_per_s={:.1} max_rss_kib={} chunks={chunks} max_chunk={max_chunk} \
         blocks={} stream_wait={:.3} block_wait={:.3} sha256_busy={:.3} sha256_wait={:.3} blake3_busy={:.3} \
         write_busy={:.3} direct_bytes={} writes={} cpu_user={:.3} cpu_sys={:.3} cpu_sha256={:.3} \
         cpu_blake3={:.3} cpu_write={:.3} cpu_fetch={:.3} sha256={} type={}",
        report.size,
        report.size as f64 / seconds / 1e6,
        peak_rss_kib().unwrap_or(0),
        stages.blocks,
        stages.stream_wait.as_secs_f64(),
        stages.block_wait.as_secs_f64(),
        stages.sha256.as_secs_f64(),
        stages.sha256_wait.as_secs_f64(),
        stages.blake3.as_secs_f64(),
        stages.write.as_secs_f64(),
        stages.direct_bytes,
        stages.writes,
        user.as_secs_f64(),
        sys.as_secs_f64(),
        stages.sha256_cpu.as_secs_f64(),
        stages.blake3_cpu.as_secs_f64(),
        stages.write_cpu.as_secs_f64(),
        fetch.as_secs_f64(),
        report.sha256,
        serde_json::to_value(report.file_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
    ))
}

/// The user and system CPU time of the whole process so far, threads that have ended
/// included.
fn process_cpu() -> (Duration, Duration) {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes one rusage to the pointer, which points to one.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    // SAFETY: zeroed is a valid rusage, and getrusage filled it in.
    let usage = unsafe { usage.assume_init() };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    (time(usage.ru_utime), time(usage.ru_stime))
}

/// VmHWM from /proc/self/status: the peak resident set size in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Single-thread SHA-256 (the `sha2` crate, as the pipeline uses it) and BLAKE3 speed over
/// 1 GiB, hashing a 1 MiB buffer at a time as the pipeline's threads do, per second of the
/// thread's CPU time; the best of three tries each, since a shared machine can only make
/// them slower.
fn hash_speed() -> String {
    const BLOCK: usize = 1 << 20;
    const ROUNDS: usize = 1024;
    let block: Vec<u8> = (0..BLOCK as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let best = |hash: &dyn Fn()| {
        (0..3)
            .map(|_| {
                let started = thread_cpu();
                hash();
                (thread_cpu() - started).as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let sha_seconds = best(&|| {
        let mut sha = sha2::Sha256::new();
        for _ in 0..ROUNDS {
            sha.update(&block);
        }
        std::hint::black_box(sha.finalize());
    });
    let blake_seconds = best(&|| {
        let mut blake = blake3::Hasher::new();
        for _ in 0..ROUNDS {
            blake.update(&block);
        }
        std::hint::black_box(blake.finalize());
    });
    let bytes = (BLOCK * ROUNDS) as f64;
    format!(
        "sha256_gb_per_s={:.2} blake3_gb_per_s={:.2}",
        bytes / sha_seconds / 1e9,
        bytes / blake_seconds / 1e9
    )
}
