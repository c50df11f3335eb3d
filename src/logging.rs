//! Logging for the long-running commands: one `tracing` subscriber on stderr, text or JSON.
//!
//! A review never waits on stderr, and never wakes another thread to log: the subscriber
//! formats each line into a shared in-memory batch (a mutex held for one copy), and a writer
//! thread takes the whole batch every [`FLUSH_EVERY`], or as soon as it passes [`FLUSH_BYTES`],
//! and writes it with one call. When the log sink is slower than the reviews (a blocked pipe, a
//! slow collector), the batch stops growing at [`MAX_BYTES`]: further lines are dropped and
//! counted (`meshguard_log_lines_dropped_total`), the webhook is never stalled. Colours only
//! when stderr is a terminal.
//!
//! Why not `tracing-appender`'s non-blocking writer: it hands each line to its thread through a
//! channel, which wakes that thread (a futex call) for nearly every line when lines are
//! sparse — the denied reviews' lines, at a few thousand reviews per second. Batching by time
//! does one write per interval instead (docs/benchmarks.md).

use clap::ValueEnum;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// How long a line may wait in the batch.
pub(crate) const FLUSH_EVERY: Duration = Duration::from_millis(50);
/// A batch this large is written at once, without waiting for the interval.
pub(crate) const FLUSH_BYTES: usize = 64 * 1024;
/// A batch this large takes no more lines until the writer has taken it (the sink is behind).
pub(crate) const MAX_BYTES: usize = 8 * 1024 * 1024;

/// The batch and its writer thread, shared by every line writer.
#[derive(Debug, Default)]
struct Shared {
    batch: Mutex<Batch>,
    wake: Condvar,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct Batch {
    bytes: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Batch> {
        self.batch.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add one formatted line (the fmt layer writes each event with one `write_all`).
    fn push(&self, line: &[u8]) {
        let mut b = self.lock();
        if b.bytes.len() + line.len() > MAX_BYTES {
            drop(b);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let below = b.bytes.len() < FLUSH_BYTES;
        b.bytes.extend_from_slice(line);
        let crossed = below && b.bytes.len() >= FLUSH_BYTES;
        drop(b);
        if crossed {
            self.wake.notify_one();
        }
    }

    /// The writer thread: take the batch when it is due, write it, until closed.
    fn drain(&self, mut sink: impl Write) {
        let mut taken = Vec::with_capacity(FLUSH_BYTES);
        loop {
            let closed = {
                let mut b = self.lock();
                if b.bytes.len() < FLUSH_BYTES && !b.closed {
                    b = match self.wake.wait_timeout(b, FLUSH_EVERY) {
                        Ok((b, _)) => b,
                        Err(p) => p.into_inner().0,
                    };
                }
                std::mem::swap(&mut b.bytes, &mut taken);
                b.closed
            };
            if !taken.is_empty() {
                // A failing sink loses the batch; there is nowhere else to say so.
                let _ = sink.write_all(&taken).and_then(|()| sink.flush());
                taken.clear();
            }
            if closed {
                return;
            }
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

/// What the subscriber writes each line to.
#[derive(Clone, Debug)]
struct LineWriter(Arc<Shared>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.push(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LineWriter {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> LineWriter {
        self.clone()
    }
}

/// The installed writer's counters.
static INSTALLED: OnceLock<Arc<Shared>> = OnceLock::new();

/// Keeps the writer thread alive; dropping it writes the lines still batched.
#[must_use = "logging stops (and batched lines are lost) when the guard is dropped"]
pub struct LoggingGuard {
    writer: Option<(Arc<Shared>, JoinHandle<()>)>,
}

impl Drop for LoggingGuard {
    fn drop(&mut self) {
        if let Some((shared, thread)) = self.writer.take() {
            shared.close();
            let _ = thread.join();
        }
    }
}

/// Start a writer thread over `sink`.
fn start(sink: impl Write + Send + 'static) -> std::io::Result<(Arc<Shared>, JoinHandle<()>)> {
    let shared = Arc::new(Shared::default());
    let s = shared.clone();
    let thread = std::thread::Builder::new()
        .name("meshguard-log".to_owned())
        .spawn(move || s.drain(sink))?;
    Ok((shared, thread))
}

/// Install the process-wide subscriber. `filter` is tracing's EnvFilter syntax; an invalid one
/// falls back to `info`. A second call (tests start several servers) is a no-op.
pub fn init(format: LogFormat, filter: &str) -> LoggingGuard {
    init_to(format, filter, std::io::stderr())
}

/// [`init`] with another sink than stderr (the load benchmark discards the lines but pays for
/// them exactly as `serve` does).
pub(crate) fn init_to(
    format: LogFormat,
    filter: &str,
    sink: impl std::io::Write + Send + 'static,
) -> LoggingGuard {
    use tracing_subscriber::EnvFilter;
    if INSTALLED.get().is_some() {
        return LoggingGuard { writer: None };
    }
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let Ok((shared, thread)) = start(sink) else {
        return LoggingGuard { writer: None }; // no thread: no logging, rather than no webhook
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(LineWriter(shared.clone()));
    let installed = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.event_format(Text::new(Clock)).try_init(),
    };
    let guard = LoggingGuard {
        writer: Some((shared.clone(), thread)),
    };
    if installed.is_err() {
        return guard; // another subscriber is in place (tests); the guard stops the thread
    }
    let _ = INSTALLED.set(shared);
    guard
}

/// tracing-subscriber's `SystemTime` clock in the same bytes (RFC 3339 in UTC with
/// microseconds, `2026-12-07T17:01:07.923724Z`), with the date and time up to the second
/// formatted once per second on each thread instead of on every line: the calendar conversion
/// was 2.4k of the review line's 6k instructions. Times it cannot write this way (before 1970,
/// after 9999) go through `SystemTime` itself.
#[derive(Clone, Copy, Debug, Default)]
struct Clock;

/// Seconds since the epoch up to year 10000 (humantime writes no later time).
const CLOCK_MAX_SECS: u64 = 253_402_300_800;

thread_local! {
    /// The second last written on this thread and its `YYYY-MM-DDTHH:MM:SS.` text.
    static CLOCK_SECOND: std::cell::Cell<(u64, [u8; 20])> =
        const { std::cell::Cell::new((u64::MAX, [0; 20])) };
}

impl Clock {
    /// `at` as `SystemTime` writes it, or `None` (nothing written) when out of range.
    fn write(at: std::time::SystemTime, w: &mut impl std::fmt::Write) -> Option<std::fmt::Result> {
        let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
        let secs = since.as_secs();
        if secs >= CLOCK_MAX_SECS {
            return None;
        }
        let (cached, mut prefix) = CLOCK_SECOND.get();
        if cached != secs {
            let mut text = String::with_capacity(20);
            let second = std::time::UNIX_EPOCH + Duration::from_secs(secs);
            std::fmt::Write::write_fmt(
                &mut text,
                format_args!("{}", humantime::format_rfc3339_seconds(second)),
            )
            .ok()?;
            // `YYYY-MM-DDTHH:MM:SSZ`: keep all but the `Z`, then the decimal point.
            let head = text.as_bytes().get(..19).filter(|_| text.len() == 20)?;
            prefix[..19].copy_from_slice(head);
            prefix[19] = b'.';
            CLOCK_SECOND.set((secs, prefix));
        }
        let mut micros = since.subsec_micros();
        let mut tail = *b"000000Z";
        for digit in tail[..6].iter_mut().rev() {
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        let (Ok(prefix), Ok(tail)) = (std::str::from_utf8(&prefix), std::str::from_utf8(&tail))
        else {
            return None;
        };
        Some(w.write_str(prefix).and_then(|()| w.write_str(tail)))
    }
}

impl tracing_subscriber::fmt::time::FormatTime for Clock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        let now = std::time::SystemTime::now();
        match Clock::write(now, w) {
            Some(written) => written,
            None => tracing_subscriber::fmt::time::SystemTime.format_time(w),
        }
    }
}

/// The text format: tracing-subscriber's `Full` format, except that the webhook's one line per
/// denied, warned or audited review (`reviewed`, [`crate::admission`]) is written without the
/// formatting machinery, in the same bytes: at a few thousand denied reviews per second the
/// generic formatter (a `dyn Debug` call and padding per field) cost as much as judging the
/// review. Any other event, any event inside a span, and every event with colours on go through
/// `Full` itself.
struct Text<T> {
    full: tracing_subscriber::fmt::format::Format<tracing_subscriber::fmt::format::Full, T>,
    timer: T,
}

impl<T: Clone> Text<T> {
    fn new(timer: T) -> Text<T> {
        Text {
            full: tracing_subscriber::fmt::format::Format::default().with_timer(timer.clone()),
            timer,
        }
    }
}

/// The one event [`Text`] writes itself: `admission`'s per-review line.
fn is_review_line(meta: &tracing::Metadata<'_>) -> bool {
    *meta.level() == tracing::Level::INFO
        && meta.target() == "meshguard::admission"
        && meta.fields().field("rules").is_some()
        && meta.fields().field("duration_us").is_some()
}

impl<S, N, T> tracing_subscriber::fmt::FormatEvent<S, N> for Text<T>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    T: tracing_subscriber::fmt::time::FormatTime,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        if writer.has_ansi_escapes() || !is_review_line(meta) || ctx.event_scope().is_some() {
            return self.full.format_event(ctx, writer, event);
        }
        // `Full`: the time and a space, the level padded to five and a space, the target and
        // `: `, then the fields separated by spaces, the message first and bare.
        if self.timer.format_time(&mut writer).is_err() {
            writer.write_str("<unknown time>")?;
        }
        writer.write_str("  INFO ")?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            writer: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
}

/// The fields of [`is_review_line`]'s event as tracing-subscriber's `DefaultVisitor` writes
/// them: `name=` then the value's `Debug` (a string quoted and escaped, a `%` value as its
/// `Display`, a number as written).
struct Fields<'a, 'w> {
    writer: &'a mut tracing_subscriber::fmt::format::Writer<'w>,
    first: bool,
    result: std::fmt::Result,
}

impl Fields<'_, '_> {
    fn name(&mut self, field: &tracing::field::Field) {
        if self.result.is_err() {
            return;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(' ');
        }
        if field.name() != "message" {
            self.result = self
                .result
                .and_then(|()| self.writer.write_str(field.name()))
                .and_then(|()| self.writer.write_char('='));
        }
    }
}

impl tracing::field::Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            return self.record_debug(field, &format_args!("{value}"));
        }
        self.name(field);
        if self.result.is_err() {
            return;
        }
        // `Debug` of a string: printable ASCII without quotes or backslashes is written as is.
        let plain = value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\');
        self.result = if plain {
            self.writer
                .write_char('"')
                .and_then(|()| self.writer.write_str(value))
                .and_then(|()| self.writer.write_char('"'))
        } else {
            write!(self.writer, "{value:?}")
        };
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.name(field);
        if self.result.is_ok() {
            let mut digits = [0u8; 20];
            let mut at = digits.len();
            let mut v = value;
            loop {
                at -= 1;
                digits[at] = b'0' + (v % 10) as u8;
                v /= 10;
                if v == 0 {
                    break;
                }
            }
            let text = std::str::from_utf8(&digits[at..]).unwrap_or("0");
            self.result = self.writer.write_str(text);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.name(field);
        if self.result.is_ok() {
            self.result = write!(self.writer, "{value:?}");
        }
    }
}

/// Lines dropped so far because the log sink was slower than the reviews.
pub(crate) fn dropped_lines() -> u64 {
    INSTALLED
        .get()
        .map_or(0, |s| s.dropped.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// A sink that reports each write and can be held shut.
    struct Sink {
        writes: mpsc::Sender<Vec<u8>>,
        gate: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _open = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            let _ = self.writes.send(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn writer() -> (
        LoggingGuard,
        LineWriter,
        mpsc::Receiver<Vec<u8>>,
        Arc<Mutex<()>>,
    ) {
        let (tx, rx) = mpsc::channel();
        let gate = Arc::new(Mutex::new(()));
        let (shared, thread) = start(Sink {
            writes: tx,
            gate: gate.clone(),
        })
        .expect("thread");
        let line = LineWriter(shared.clone());
        (
            LoggingGuard {
                writer: Some((shared, thread)),
            },
            line,
            rx,
            gate,
        )
    }

    #[test]
    fn lines_are_written_in_batches_without_waking_the_writer_per_line() {
        let (guard, mut w, rx, _gate) = writer();
        for i in 0..100 {
            writeln!(w, "line {i}").expect("write");
        }
        // All hundred lines arrive, in order, in far fewer writes than lines.
        let mut got = Vec::new();
        let mut writes = 0;
        while got.len() < 100 {
            let batch = rx.recv_timeout(Duration::from_secs(10)).expect("a batch");
            writes += 1;
            got.extend(
                String::from_utf8(batch)
                    .expect("utf8")
                    .lines()
                    .map(str::to_owned),
            );
        }
        assert_eq!(
            got,
            (0..100).map(|i| format!("line {i}")).collect::<Vec<_>>()
        );
        assert!(writes < 10, "{writes} writes for 100 lines");
        drop(guard);
    }

    #[test]
    fn a_stuck_sink_drops_and_counts_lines_instead_of_blocking() {
        let (guard, mut w, rx, gate) = writer();
        let shut = gate.lock().expect("gate");
        // The writer takes the first batch and blocks in the sink; the next lines fill the
        // batch to MAX_BYTES, then are dropped. No write here ever waits on the sink.
        let line = vec![b'x'; 1023];
        writeln!(w, "{}", String::from_utf8_lossy(&line)).expect("write");
        std::thread::sleep(FLUSH_EVERY * 3);
        let lines = MAX_BYTES / 1024 + 100;
        for _ in 0..lines {
            w.write_all(&[b'y'; 1024]).expect("never fails");
        }
        let dropped = w.0.dropped.load(Ordering::Relaxed);
        assert!(dropped >= 99, "dropped {dropped}");
        assert!(dropped < lines as u64, "the batch took lines until full");
        drop(shut);
        // Once the sink moves again, what was batched is written.
        let mut total = 0;
        while let Ok(batch) = rx.recv_timeout(Duration::from_secs(2)) {
            total += batch.len();
        }
        assert_eq!(total, 1024 + (lines - dropped as usize) * 1024);
        drop(guard);
    }

    /// A clock that always says the same.
    #[derive(Clone)]
    struct Fixed;
    impl tracing_subscriber::fmt::time::FormatTime for Fixed {
        fn format_time(
            &self,
            w: &mut tracing_subscriber::fmt::format::Writer<'_>,
        ) -> std::fmt::Result {
            w.write_str("2026-12-07T12:00:00.000001Z")
        }
    }

    /// What a subscriber with `format` writes for the events `emit` logs.
    fn lines<F>(format: F, emit: impl Fn()) -> String
    where
        F: tracing_subscriber::fmt::FormatEvent<
                tracing_subscriber::Registry,
                tracing_subscriber::fmt::format::DefaultFields,
            > + Send
            + Sync
            + 'static,
    {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .event_format(format)
            .with_writer(move || Buffer(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        let bytes = out.lock().expect("buffer").clone();
        String::from_utf8(bytes).expect("utf8")
    }

    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_review_line_is_written_as_the_full_format_writes_it() {
        let emit = || {
            for (uid, namespace, rules, us) in [
                ("0df28fce-5b6a", "production", "a,b", 0u64),
                (
                    "u \"quoted\" \\ é\t",
                    "ns\u{1b}[31m",
                    "",
                    18_446_744_073_709_551_615,
                ),
                ("", "", "wl-x", 42),
            ] {
                tracing::info!(target: "meshguard::admission", webhook = "validate", uid = %uid, kind = "Pod", namespace = namespace,
                    operation = "CREATE", outcome = "denied", rules = %rules, duration_us = us, "reviewed");
                // Inside a span, and other events: `Full` itself.
                let span = tracing::debug_span!("review", uid = %uid);
                let _in = span.enter();
                tracing::info!(target: "meshguard::admission", webhook = "mutate", uid = %uid, kind = "Pod", namespace = namespace,
                    operation = "CREATE", outcome = "patched", rules = %rules, duration_us = us, "reviewed");
                tracing::warn!(error = %uid, "cluster lookup timed out");
            }
        };
        let full = lines(
            tracing_subscriber::fmt::format::Format::default().with_timer(Fixed),
            emit,
        );
        let ours = lines(Text::new(Fixed), emit);
        assert_eq!(ours, full);
        assert_eq!(full.lines().count(), 9, "{full}");
        assert!(full.starts_with("2026-12-07T12:00:00.000001Z  INFO meshguard::admission: reviewed webhook=\"validate\" uid=0df28fce-5b6a kind=\"Pod\""), "{full}");
    }

    #[test]
    fn the_clock_writes_what_tracing_subscribers_clock_writes() {
        use std::time::{Duration, UNIX_EPOCH};
        // Against humantime's full RFC 3339 text (the same layout as tracing-subscriber's
        // `DateTime`), across days, leap years, the cache's second boundaries and the last
        // second it writes.
        let mut times = vec![
            UNIX_EPOCH,
            UNIX_EPOCH + Duration::new(951_782_400, 1_000), // 2000-02-29
            UNIX_EPOCH + Duration::new(1_796_664_067, 923_724_999),
            UNIX_EPOCH + Duration::new(1_796_664_067, 5_000),
            UNIX_EPOCH + Duration::new(1_796_664_068, 0),
            UNIX_EPOCH + Duration::new(1_796_664_067, 999_999_000),
            UNIX_EPOCH + Duration::new(CLOCK_MAX_SECS - 1, 999_999_999),
        ];
        for i in 0..2_000u64 {
            times.push(
                UNIX_EPOCH + Duration::new(i * 7_919_993, (i * 104_729) as u32 % 1_000_000_000),
            );
        }
        for t in times {
            let mut ours = String::new();
            let written = Clock::write(t, &mut ours);
            assert!(matches!(written, Some(Ok(()))), "{t:?}");
            assert_eq!(
                ours,
                humantime::format_rfc3339_micros(t).to_string(),
                "{t:?}"
            );
        }
        // Out of range: nothing written, `SystemTime` takes over.
        let mut out = String::new();
        assert!(Clock::write(UNIX_EPOCH + Duration::from_secs(CLOCK_MAX_SECS), &mut out).is_none());
        assert!(Clock::write(UNIX_EPOCH - Duration::from_secs(1), &mut out).is_none());
        assert!(out.is_empty());
        // And against tracing-subscriber's own clock, now (again if a second ticked between).
        use tracing_subscriber::fmt::time::FormatTime;
        let same = (0..5).any(|_| {
            let (mut theirs, mut ours) = (String::new(), String::new());
            let _ = tracing_subscriber::fmt::time::SystemTime.format_time(
                &mut tracing_subscriber::fmt::format::Writer::new(&mut theirs),
            );
            let _ = Clock.format_time(&mut tracing_subscriber::fmt::format::Writer::new(&mut ours));
            theirs.len() == ours.len() && theirs.get(..20) == ours.get(..20) && ours.ends_with('Z')
        });
        assert!(same);
    }

    #[test]
    fn dropping_the_guard_writes_what_is_batched() {
        let (guard, mut w, rx, _gate) = writer();
        writeln!(w, "last words").expect("write");
        drop(guard); // before the interval is up
        let batch = rx
            .recv_timeout(Duration::from_secs(1))
            .expect("written on close");
        assert_eq!(batch, b"last words\n");
    }
}
