//! Logs: what `up`, `down` and the user-mode engine do, as structured events.
//!
//! How it works: the crates emit `tracing` events (a DHCP lease given, an advertisement
//! sent, an engine started or gone, a plan change applied); this module installs the one
//! subscriber, on stderr, at start. Two formats:
//! - `text` (default), for people: one line per event, `netbind up: MESSAGE`, with
//!   `warning: `/`error: `/`debug: ` before the message of those levels. Every event's
//!   message is a whole sentence that names what it is about, so the text shows the
//!   message alone;
//! - `json`, for log collectors: one JSON object per line with `timestamp`, `level`,
//!   `target` (the module), `message` and every field of the event.
//!
//! `-v` adds debug events (each renewal, each dropped request and why), `-vv` trace;
//! `-q` leaves warnings and errors only, `-qq` errors. An engine that `up` starts gets the
//! same options ([`child_args`]), so its lines join `up`'s in one format.
//!
//! A log file (`passt --log-file`) may be kept under a size ([`LogFile`], passt's
//! `--log-size`): when a line would take it past the limit, the older half of the file
//! is dropped, from a line boundary on, and a line says so.
//!
//! What holds: every event is one write of one whole line (the subscriber formats into a
//! buffer first), so the lines of `up`'s threads and of its engines never interleave.
//! Diagnostics about the manifest (located violations, carets) are not logs: they go to
//! stderr as they are, whatever the format.

use std::fmt;
use std::sync::OnceLock;

use clap::ValueEnum;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// Log lines as `text` for people or `json` (one object per line) for collectors.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    /// More log detail: `-v` debug, `-vv` trace.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Less: `-q` warnings and errors only, `-qq` errors only.
    #[arg(short = 'q', long = "quiet", action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    quiet: u8,
}

static CHOSEN: OnceLock<LogArgs> = OnceLock::new();

impl LogArgs {
    fn level(&self) -> LevelFilter {
        match (self.verbose, self.quiet) {
            (0, 0) => LevelFilter::INFO,
            (1, _) => LevelFilter::DEBUG,
            (_, 0) => LevelFilter::TRACE,
            (_, 1) => LevelFilter::WARN,
            _ => LevelFilter::ERROR,
        }
    }
}

/// Installs the subscriber; `program` starts each text line (`netbind up`).
pub fn init(args: &LogArgs, program: &'static str) {
    let _ = CHOSEN.set(args.clone());
    install(args.level(), args.log_format, program, None);
}

/// Installs the subscriber at `level`, on stderr or appending to `file`.
pub fn install(
    level: LevelFilter,
    format: LogFormat,
    program: &'static str,
    file: Option<LogFile>,
) {
    use tracing_subscriber::fmt::writer::BoxMakeWriter;
    let writer = match file {
        Some(f) => BoxMakeWriter::new(std::sync::Mutex::new(f)),
        None => BoxMakeWriter::new(std::io::stderr),
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(writer);
    // A second init (there is none; tests of this crate do not call it) would only fail
    // to replace the first subscriber, which is harmless.
    let _ = match format {
        LogFormat::Text => builder.event_format(Text { program }).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}

/// A log file opened for appending, kept under `limit` bytes if there is one.
pub struct LogFile {
    file: std::fs::File,
    len: u64,
    limit: Option<u64>,
}

impl LogFile {
    /// `file` must be open for reading and appending.
    pub fn new(file: std::fs::File, limit: Option<u64>) -> std::io::Result<LogFile> {
        let len = file.metadata()?.len();
        Ok(LogFile { file, len, limit })
    }

    /// Drops the older half of the file (up to the line boundary after it), noting it.
    /// Seek, read, truncate and write: the calls the engine's seccomp filter allows.
    fn make_room(&mut self, limit: u64) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut kept = Vec::new();
        self.file
            .seek(SeekFrom::Start(self.len.saturating_sub(limit / 2)))?;
        self.file.read_to_end(&mut kept)?;
        let from = kept
            .iter()
            .position(|&b| b == b'\n')
            .map_or(kept.len(), |i| i + 1);
        self.file.set_len(0)?;
        let note = format!("(older lines dropped: the log is kept under {limit} bytes)\n");
        self.file.write_all(note.as_bytes())?;
        self.file.write_all(&kept[from..])?;
        self.len = (note.len() + kept.len() - from) as u64;
        Ok(())
    }
}

impl std::io::Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(limit) = self.limit
            && self.len + buf.len() as u64 > limit
        {
            self.make_room(limit)?;
        }
        let n = self.file.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The options to give a child `netbind` (an engine) so that it logs as this process does.
pub fn child_args() -> Vec<String> {
    let Some(args) = CHOSEN.get() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if args.log_format == LogFormat::Json {
        out.extend(["--log-format".to_string(), "json".to_string()]);
    }
    out.extend((0..args.verbose).map(|_| "-v".to_string()));
    out.extend((0..args.quiet).map(|_| "-q".to_string()));
    out
}

/// The text format: `PROGRAM: [LEVEL: ]MESSAGE`, no timestamp (a supervisor or `kubectl
/// logs` stamps lines; people at a terminal do not need one), no fields (they repeat what
/// the message says; JSON carries them).
struct Text {
    program: &'static str,
}

impl<S, N> FormatEvent<S, N> for Text
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        write!(w, "{}: ", self.program)?;
        match *event.metadata().level() {
            Level::ERROR => write!(w, "error: ")?,
            Level::WARN => write!(w, "warning: ")?,
            Level::INFO => {}
            Level::DEBUG => write!(w, "debug: ")?,
            Level::TRACE => write!(w, "trace: ")?,
        }
        let _ = ctx;
        let mut message = Message(String::new());
        event.record(&mut message);
        writeln!(w, "{}", message.0)
    }
}

/// Picks the `message` field out of an event.
struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            use fmt::Write;
            let _ = write!(self.0, "{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn a_log_file_with_a_size_limit_keeps_its_newest_whole_lines_under_it() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passt.log");
        let open = || {
            std::fs::OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(&path)
                .unwrap()
        };
        let mut log = LogFile::new(open(), Some(4096)).unwrap();
        for n in 0..1000 {
            log.write_all(format!("line {n:04} of the engine's log\n").as_bytes())
                .unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() <= 4096, "{} bytes", text.len());
        assert!(text.ends_with("line 0999 of the engine's log\n"));
        assert!(!text.contains("line 0000"));
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("(older lines dropped: the log is kept under 4096 bytes)")
        );
        assert!(lines.all(|l| l.starts_with("line ") && l.ends_with(" log")));
        // Reopened (a restarted engine), the file's size so far counts.
        let before = std::fs::metadata(&path).unwrap().len();
        let mut log = LogFile::new(open(), Some(4096)).unwrap();
        log.write_all(&[b'x'; 100]).unwrap();
        let after = std::fs::metadata(&path).unwrap().len();
        assert!(after <= 4096 && (after == before + 100 || after < before));
    }

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogArgs,
    }

    fn level(args: &[&str]) -> LevelFilter {
        Cli::parse_from(std::iter::once("netbind").chain(args.iter().copied()))
            .log
            .level()
    }

    #[test]
    fn info_by_default_debug_with_v_trace_with_vv() {
        assert_eq!(level(&[]), LevelFilter::INFO);
        assert_eq!(level(&["-v"]), LevelFilter::DEBUG);
        assert_eq!(level(&["-vv"]), LevelFilter::TRACE);
    }

    #[test]
    fn warnings_with_q_errors_only_with_qq() {
        assert_eq!(level(&["-q"]), LevelFilter::WARN);
        assert_eq!(level(&["-qq"]), LevelFilter::ERROR);
    }

    #[test]
    fn v_and_q_together_are_refused() {
        assert!(Cli::try_parse_from(["netbind", "-v", "-q"]).is_err());
    }
}
