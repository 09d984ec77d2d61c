//! Progress lines while the mesh starts: a spinner on a terminal, plain lines otherwise.

use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How start-up progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Nothing is printed (tests driving a mesh in-process).
    Quiet,
    /// One line per finished step (logs, CI).
    Plain,
    /// A spinner per step, replaced by its result line (a terminal).
    Spinner,
}

impl ProgressMode {
    /// A spinner when stdout is a terminal, plain lines otherwise.
    pub fn for_stdout() -> Self {
        use std::io::IsTerminal as _;
        if std::io::stdout().is_terminal() {
            Self::Spinner
        } else {
            Self::Plain
        }
    }

    pub fn note(self, message: &str) {
        if self != Self::Quiet {
            println!("{message}");
        }
    }

    /// Starts showing a step that is under way.
    pub fn step(self, message: impl Into<String>) -> Step {
        let message = message.into();
        let spinner = (self == Self::Spinner).then(|| {
            let spinner = ProgressBar::new_spinner().with_message(message.clone());
            if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
                spinner.set_style(style);
            }
            spinner.enable_steady_tick(Duration::from_millis(100));
            spinner
        });
        Step {
            mode: self,
            spinner,
            started: Instant::now(),
        }
    }
}

/// A step under way; finish it with [`Step::done`] or [`Step::failed`].
pub struct Step {
    mode: ProgressMode,
    spinner: Option<ProgressBar>,
    started: Instant,
}

impl Step {
    pub fn done(self, message: &str) {
        let line = format!("✓ {message} ({:.1}s)", self.started.elapsed().as_secs_f64());
        self.finish(line);
    }

    pub fn failed(self, message: &str) {
        self.finish(format!("✗ {message}"));
    }

    fn finish(mut self, line: String) {
        match self.spinner.take() {
            Some(spinner) => {
                Step::style_finished(&spinner);
                spinner.finish_with_message(line);
            }
            None => self.mode.note(&line),
        }
    }
}

impl Step {
    /// Replaces the spinner's template so the finished line shows only the message.
    fn style_finished(spinner: &ProgressBar) {
        if let Ok(style) = ProgressStyle::with_template("{msg}") {
            spinner.set_style(style);
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(spinner) = &self.spinner
            && !spinner.is_finished()
        {
            spinner.finish_and_clear();
        }
    }
}
