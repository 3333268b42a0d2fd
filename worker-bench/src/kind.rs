//! The workers being compared, and the few facts the run needs about each: its name in the
//! report, its name on the command line, and which concurrencies it is measured at.

/// One of the compared workers (a column of the table, except `OursQuiet`, which only feeds the
/// logging note).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Kind {
    Ceiling,
    Ours,
    /// Our worker on the single-threaded runtime (`flavor = "current_thread"`).
    OursCurrentThread,
    OursQuiet,
    RunpodSdk,
    PySync,
    PyAsync,
}

impl Kind {
    /// Every kind, in measuring order: what `--only` accepts.
    pub(crate) const ALL: [Kind; 7] = [
        Kind::Ceiling,
        Kind::Ours,
        Kind::OursCurrentThread,
        Kind::OursQuiet,
        Kind::RunpodSdk,
        Kind::PySync,
        Kind::PyAsync,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Ceiling => "ceiling",
            Kind::Ours => "ours",
            Kind::OursCurrentThread => "ours, current_thread",
            Kind::OursQuiet => "ours, logs off",
            Kind::RunpodSdk => "runpod-sdk",
            Kind::PySync => "Python sync",
            Kind::PyAsync => "Python async",
        }
    }
    /// The name in `--only` and log file names: `ours-logs-off`, `python-sync`, …
    pub(crate) fn slug(self) -> String {
        self.name()
            .to_lowercase()
            .replace(", ", "-")
            .replace(' ', "-")
    }
    pub(crate) fn python(self) -> bool {
        matches!(self, Kind::PySync | Kind::PyAsync)
    }
    pub(crate) fn concurrencies(self) -> &'static [usize] {
        match self {
            Kind::OursQuiet => &[1, 8],
            _ => &[1, 8, 64],
        }
    }
}
