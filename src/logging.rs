//! Logging for the long-running commands: one `tracing` subscriber on stderr, text or JSON.
//!
//! Lines are handed to a background writer thread, so a review never waits on stderr: when the
//! log sink is slower than the reviews (a blocked pipe, a slow collector), lines beyond the
//! buffer are dropped and counted (`meshguard_log_lines_dropped_total`) instead of stalling the
//! webhook. Colours only when stderr is a terminal.

use clap::ValueEnum;
use std::io::IsTerminal;
use std::sync::OnceLock;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Lines buffered for the writer thread before new ones are dropped.
const BUFFERED_LINES: usize = 64 * 1024;

/// Counts the lines the writer dropped (the sink could not keep up).
static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// Keeps the writer thread alive; dropping it flushes the lines still buffered.
#[must_use = "logging stops (and buffered lines are lost) when the guard is dropped"]
pub struct LoggingGuard {
    _writer: Option<WorkerGuard>,
}

/// Install the process-wide subscriber. `filter` is tracing's EnvFilter syntax; an invalid one
/// falls back to `info`. A second call (tests start several servers) is a no-op.
pub fn init(format: LogFormat, filter: &str) -> LoggingGuard {
    init_to(format, filter, std::io::stderr())
}

/// [`init`] with another sink than stderr (the load benchmark discards the lines but pays for
/// them exactly as `serve` does).
pub fn init_to(
    format: LogFormat,
    filter: &str,
    sink: impl std::io::Write + Send + 'static,
) -> LoggingGuard {
    use tracing_subscriber::EnvFilter;
    if DROPPED.get().is_some() {
        return LoggingGuard { _writer: None };
    }
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("meshguard-log")
        .finish(sink);
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
    if installed.is_err() {
        return LoggingGuard { _writer: None }; // another subscriber is in place (tests)
    }
    let _ = DROPPED.set(dropped);
    LoggingGuard {
        _writer: Some(guard),
    }
}

/// Lines dropped so far because the log sink was slower than the reviews.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}
