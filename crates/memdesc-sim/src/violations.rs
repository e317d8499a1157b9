//! Violations: anything the simulator saw that the core promised cannot
//! happen. Counted exactly; the first few are kept with their details.

/// How many violations each recorder keeps in full.
pub(crate) const KEPT: usize = 16;

/// A count of violations and the details of the first [`KEPT`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Violations {
    count: u64,
    first: Vec<String>,
}

impl Violations {
    /// Records one violation; `describe` runs only for the first few.
    pub(crate) fn record(&mut self, describe: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.len() < KEPT {
            self.first.push(describe());
        }
    }

    /// Records `n` violations described together.
    pub(crate) fn record_many(&mut self, n: u64, describe: impl FnOnce() -> String) {
        self.count += n;
        if n > 0 && self.first.len() < KEPT {
            self.first.push(describe());
        }
    }

    /// Adds `other`'s violations after ours.
    pub(crate) fn merge(&mut self, other: Violations) {
        self.count += other.count;
        let room = KEPT.saturating_sub(self.first.len());
        self.first.extend(other.first.into_iter().take(room));
    }

    /// How many were recorded.
    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    /// The details kept.
    pub(crate) fn into_first(self) -> Vec<String> {
        self.first
    }
}
