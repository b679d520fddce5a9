//! The one outcome policy every probe follows: `probe` (the database), `probe http` (an API
//! from outside), `probe plans` (the workload's plans) and whatever probes come later.
//!
//! A security tool is judged by its worst answer, and the worst answer is a pass that
//! attacked nothing. So every cell of every probe ends in exactly one [`Verdict`], each
//! carrying the evidence for it, and the run's exit status comes from the [`Tally`] of all
//! cells by one rule (`docs/outcome-policy.md`):
//!
//! | exit | when |
//! |---|---|
//! | 0 | no finding, and every applicable cell was really attacked |
//! | 1 | at least one finding (a leak, an existence oracle, a 5xx to an attack, a plan rule), whatever else is inconclusive |
//! | 2 | usage or connection error: nothing was judged |
//! | 3 | no finding, but some cell could not be attacked (inconclusive), or nothing applicable was found at all |
//!
//! A cell is *blocked* only with the refusal that proves it (an SQLSTATE, a row count, a
//! status whose control succeeded); when the control (the same operation on the attacker's
//! own object) also failed, the refusal proves nothing and the cell is *inconclusive*.

use std::fmt;
use std::process::ExitCode;

use serde::Serialize;

/// What one attack (one cell of a probe's matrix) showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The target refused, and the control shows the refusal is about the tenant.
    Blocked,
    /// The attack worked: another tenant's data was read, changed or referenced.
    Leaked,
    /// No data crossed, but the answer tells "exists in another tenant" apart from "does
    /// not exist" (an existence oracle).
    Distinguishable,
    /// The target answered an attack with a server error (a 5xx, or an internal error):
    /// a finding, since it is at best a crash an attacker can trigger and at worst hides
    /// what happened.
    ServerError,
    /// The attack could not be judged: synthesis failed, the model did not apply, or the
    /// control failed too. Never counted as a pass.
    Inconclusive,
    /// The attack has nothing to act on here, for a structural reason (no foreign key, no
    /// unique key, no such operation).
    NotApplicable,
}

impl Verdict {
    /// Every verdict, in report order.
    pub const ALL: [Verdict; 6] = [
        Verdict::Blocked,
        Verdict::Leaked,
        Verdict::Distinguishable,
        Verdict::ServerError,
        Verdict::Inconclusive,
        Verdict::NotApplicable,
    ];

    /// The word every probe prints for it: `blocked`, `LEAKED`, `DISTINGUISHABLE`, `5xx`,
    /// `inconclusive`, `n/a`.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Blocked => "blocked",
            Verdict::Leaked => "LEAKED",
            Verdict::Distinguishable => "DISTINGUISHABLE",
            Verdict::ServerError => "5xx",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotApplicable => "n/a",
        }
    }

    /// Whether this cell is a finding (it makes the run exit 1).
    pub fn is_finding(self) -> bool {
        matches!(
            self,
            Verdict::Leaked | Verdict::Distinguishable | Verdict::ServerError
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// How a probe run ends, by the one policy (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// 0: no finding, and every applicable cell was attacked.
    Clean,
    /// 1: at least one finding.
    Findings,
    /// 2: usage or connection error; nothing was judged.
    Error,
    /// 3: no finding, but something could not be attacked, or nothing applied at all.
    Inconclusive,
}

impl RunStatus {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            RunStatus::Clean => 0,
            RunStatus::Findings => 1,
            RunStatus::Error => 2,
            RunStatus::Inconclusive => 3,
        }
    }

    /// The process exit code, as an [`ExitCode`].
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self.code())
    }
}

/// Counts of verdicts over a run, and the run's status from them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Cells refused with proof.
    pub blocked: usize,
    /// Cells that leaked.
    pub leaked: usize,
    /// Cells that are existence oracles.
    pub distinguishable: usize,
    /// Cells answered with a server error.
    pub server_error: usize,
    /// Cells that could not be judged.
    pub inconclusive: usize,
    /// Cells with nothing to act on.
    pub not_applicable: usize,
}

impl Tally {
    /// Adds one cell.
    pub fn add(&mut self, v: Verdict) {
        match v {
            Verdict::Blocked => self.blocked += 1,
            Verdict::Leaked => self.leaked += 1,
            Verdict::Distinguishable => self.distinguishable += 1,
            Verdict::ServerError => self.server_error += 1,
            Verdict::Inconclusive => self.inconclusive += 1,
            Verdict::NotApplicable => self.not_applicable += 1,
        }
    }

    /// The tally of `verdicts`.
    pub fn of(verdicts: impl IntoIterator<Item = Verdict>) -> Self {
        let mut t = Tally::default();
        for v in verdicts {
            t.add(v);
        }
        t
    }

    /// Adds another tally to this one.
    pub fn merge(&mut self, other: Tally) {
        self.blocked += other.blocked;
        self.leaked += other.leaked;
        self.distinguishable += other.distinguishable;
        self.server_error += other.server_error;
        self.inconclusive += other.inconclusive;
        self.not_applicable += other.not_applicable;
    }

    /// Cells that are findings.
    pub fn findings(&self) -> usize {
        self.leaked + self.distinguishable + self.server_error
    }

    /// Cells that were really attacked and judged (blocked or a finding).
    pub fn attacked(&self) -> usize {
        self.blocked + self.findings()
    }

    /// The run's status: findings win over everything; then anything inconclusive, or
    /// nothing attacked at all, is inconclusive; only then clean.
    pub fn status(&self) -> RunStatus {
        if self.findings() > 0 {
            RunStatus::Findings
        } else if self.inconclusive > 0 || self.attacked() == 0 {
            RunStatus::Inconclusive
        } else {
            RunStatus::Clean
        }
    }

    /// One summary line: `2 finding(s), 40 cell(s) attacked, 3 inconclusive, 5 n/a`.
    pub fn summary(&self) -> String {
        format!(
            "{} finding(s) ({} leaked, {} distinguishable, {} 5xx), {} cell(s) attacked, {} inconclusive, {} n/a",
            self.findings(),
            self.leaked,
            self.distinguishable,
            self.server_error,
            self.attacked(),
            self.inconclusive,
            self.not_applicable
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_attacked_is_never_clean() {
        assert_eq!(Tally::default().status(), RunStatus::Inconclusive);
        let only_na = Tally::of([Verdict::NotApplicable, Verdict::NotApplicable]);
        assert_eq!(only_na.status(), RunStatus::Inconclusive);
        assert_eq!(only_na.status().code(), 3);
    }

    #[test]
    fn findings_win_over_inconclusive() {
        let t = Tally::of([Verdict::Inconclusive, Verdict::Distinguishable]);
        assert_eq!(t.status(), RunStatus::Findings);
        let t = Tally::of([Verdict::Blocked, Verdict::ServerError]);
        assert_eq!(t.status().code(), 1);
    }

    #[test]
    fn one_inconclusive_cell_spoils_a_pass() {
        let t = Tally::of([Verdict::Blocked, Verdict::Blocked, Verdict::Inconclusive]);
        assert_eq!(t.status(), RunStatus::Inconclusive);
        let t = Tally::of([Verdict::Blocked, Verdict::NotApplicable]);
        assert_eq!(t.status(), RunStatus::Clean);
        assert_eq!(t.attacked(), 1);
    }

    #[test]
    fn labels_are_the_documented_words() {
        let labels: Vec<_> = Verdict::ALL.iter().map(|v| v.label()).collect();
        assert_eq!(
            labels,
            [
                "blocked",
                "LEAKED",
                "DISTINGUISHABLE",
                "5xx",
                "inconclusive",
                "n/a"
            ]
        );
    }
}
