//! Rendering: aligned tables and `key: value` blocks for people, JSON for
//! scripts, progress on stderr. stdout carries only data that can be piped.

use banger_api::Event;
use std::io::IsTerminal;

pub use banger_client::print::{error, fields, json};

/// Prints an aligned table; every column but the last is padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Shows progress events on stderr: a spinner with the current phase on a
/// terminal, plain lines otherwise (logs, CI), nothing with `quiet`.
pub struct ProgressView {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
}

impl ProgressView {
    pub fn new(quiet: bool) -> ProgressView {
        let tty = std::io::stderr().is_terminal();
        let bar = (tty && !quiet).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(100));
            b
        });
        ProgressView { bar, quiet }
    }

    pub fn event(&mut self, e: &Event) {
        if self.quiet {
            return;
        }
        match (e, &self.bar) {
            (Event::Phase { message, .. }, Some(b)) => {
                b.set_length(0);
                b.set_style(indicatif::ProgressStyle::default_spinner());
                b.set_message(message.clone());
            }
            (Event::Phase { message, .. }, None) => eprintln!("{message}"),
            (Event::Progress { label, current, total }, Some(b)) => {
                if let Some(t) = total {
                    if b.length() != Some(*t) {
                        b.set_length(*t);
                        b.set_style(
                            indicatif::ProgressStyle::with_template(
                                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                            )
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                        );
                        b.set_message(label.clone());
                    }
                }
                b.set_position(*current);
            }
            (Event::Progress { .. }, None) => {}
            (Event::Log { line }, Some(b)) => b.println(line),
            (Event::Log { line }, None) => eprintln!("{line}"),
            _ => {}
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl Drop for ProgressView {
    fn drop(&mut self) {
        self.finish();
    }
}

/// "3m ago"-style age of an RFC 3339 time.
pub fn age(rfc3339: &str) -> String {
    let Ok(t) = humantime::parse_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let secs = std::time::SystemTime::now().duration_since(t).map(|d| d.as_secs()).unwrap_or(0);
    match secs {
        0..=59 => format!("{secs}s ago"),
        60..=3599 => format!("{}m ago", secs / 60),
        3600..=86399 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// A byte count for people: `512 B`, `3.4 MiB`, `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A byte-count bar on stderr for a copy, shown only on a terminal; with no
/// total, a spinner counting bytes.
#[derive(Clone, Default)]
pub struct ByteBar(Option<indicatif::ProgressBar>);

impl ByteBar {
    /// A bar labelled `label` for `total` bytes (unknown: `None`); hidden
    /// when `show` is false or stderr is not a terminal.
    pub fn new(label: &str, total: Option<u64>, show: bool) -> ByteBar {
        if !show || !std::io::stderr().is_terminal() {
            return ByteBar(None);
        }
        let b = match total {
            Some(t) => indicatif::ProgressBar::new(t),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = format!("{label}{{bytes}}/{{total_bytes}} {{bytes_per_sec}} eta {{eta}} [{{bar:30}}]");
        b.set_style(
            indicatif::ProgressStyle::with_template(&template)
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        ByteBar(Some(b))
    }

    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }

    /// What a copy calls with the bytes done so far (kept within the total).
    pub fn updater(&self) -> impl FnMut(u64) + use<> {
        let b = self.0.clone();
        move |n| {
            if let Some(b) = &b {
                b.set_position(b.length().map_or(n, |t| n.min(t)));
            }
        }
    }

    pub fn finish(self) {
        if let Some(b) = self.0 {
            b.finish_and_clear();
        }
    }
}
