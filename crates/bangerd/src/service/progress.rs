//! Progress reporting from long operations to whoever watches them.

use banger_api::Event;
use tokio::sync::mpsc::UnboundedSender;

/// Where an operation reports its steps. Detached (the default) when the
/// client asked for a plain response; reports then only go to the log.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    tx: Option<UnboundedSender<Event>>,
}

impl Progress {
    pub fn new(tx: UnboundedSender<Event>) -> Progress {
        Progress { tx: Some(tx) }
    }

    /// A progress sink nobody watches.
    pub fn none() -> Progress {
        Progress { tx: None }
    }

    fn send(&self, e: Event) {
        if let Some(tx) = &self.tx {
            // The client may have gone away; the operation carries on.
            let _ = tx.send(e);
        }
    }

    pub fn phase(&self, phase: &str, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(phase, "{message}");
        self.send(Event::Phase { phase: phase.to_string(), message });
    }

    pub fn progress(&self, label: &str, current: u64, total: Option<u64>) {
        self.send(Event::Progress { label: label.to_string(), current, total });
    }

    pub fn log(&self, line: impl Into<String>) {
        self.send(Event::Log { line: line.into() });
    }
}
