//! The words users type and read for the wire enums: flags, `list`'s KIND
//! column, `list --json`, problem lines. The wire carries numbers; these are
//! their only spellings, so what the CLI accepts, what it prints and what the
//! coordinator says in its messages cannot drift apart.

use crate::common::ProblemKind;
use crate::coordinator::{
    BackupMethod, BackupState, BackupType, Consistency, PitrLevel, PitrUnit, RestoreGrammar,
    SnapshotLevel,
};

/// A wire enum with user-facing words.
pub trait Named: Copy + TryFrom<i32> + 'static {
    /// The values a user may name, in the order they are offered.
    const NAMED: &'static [Self];

    /// The word for this value. UNSPECIFIED has the word of the default it
    /// stands for, or "" when it stands for none.
    fn name(self) -> &'static str;

    /// Other words accepted when typed, as mo_br always has.
    fn aliases(self) -> &'static [&'static str] {
        &[]
    }

    /// The word for a field's raw value; "" for a value this build does not
    /// know (a newer peer's), so it is never shown as a known one.
    fn word(raw: i32) -> &'static str {
        Self::try_from(raw).map_or("", Self::name)
    }

    /// The value a typed word names, in any case, blanks around it ignored.
    fn parse(word: &str) -> Option<Self> {
        let word = word.trim();
        Self::NAMED.iter().copied().find(|v| {
            std::iter::once(v.name())
                .chain(v.aliases().iter().copied())
                .any(|w| w.eq_ignore_ascii_case(word))
        })
    }

    /// The words offered, for error messages: "full or incremental".
    fn choices() -> String {
        let names: Vec<&str> = Self::NAMED.iter().map(|v| v.name()).collect();
        match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.concat(),
        }
    }
}

impl Named for BackupType {
    const NAMED: &'static [Self] = &[BackupType::Full, BackupType::Incremental];

    fn name(self) -> &'static str {
        match self {
            BackupType::Unspecified | BackupType::Full => "full",
            BackupType::Incremental => "incremental",
        }
    }
}

impl Named for Consistency {
    const NAMED: &'static [Self] = &[Consistency::Cold, Consistency::Online];

    fn name(self) -> &'static str {
        match self {
            Consistency::Unspecified => "",
            Consistency::Cold => "cold",
            Consistency::Online => "online",
        }
    }
}

impl Named for BackupMethod {
    const NAMED: &'static [Self] = &[BackupMethod::Agents, BackupMethod::Matrixone];

    /// Unspecified comes from coordinators that knew one way only: agents.
    fn name(self) -> &'static str {
        match self {
            BackupMethod::Unspecified | BackupMethod::Agents => "agents",
            BackupMethod::Matrixone => "matrixone",
        }
    }
}

impl Named for BackupState {
    const NAMED: &'static [Self] = &[
        BackupState::Running,
        BackupState::Complete,
        BackupState::Failed,
        BackupState::Deleting,
    ];

    fn name(self) -> &'static str {
        match self {
            BackupState::Unspecified => "",
            BackupState::Running => "running",
            BackupState::Complete => "complete",
            BackupState::Failed => "failed",
            BackupState::Deleting => "deleting",
        }
    }
}

impl Named for SnapshotLevel {
    const NAMED: &'static [Self] = &[
        SnapshotLevel::Cluster,
        SnapshotLevel::Account,
        SnapshotLevel::Database,
        SnapshotLevel::Table,
    ];

    /// Unspecified is inferred from the names given, so it has no word.
    fn name(self) -> &'static str {
        match self {
            SnapshotLevel::Unspecified => "",
            SnapshotLevel::Cluster => "cluster",
            SnapshotLevel::Account => "account",
            SnapshotLevel::Database => "database",
            SnapshotLevel::Table => "table",
        }
    }

    fn aliases(self) -> &'static [&'static str] {
        match self {
            SnapshotLevel::Account => &["tenant"],
            SnapshotLevel::Database => &["db"],
            _ => &[],
        }
    }
}

impl Named for RestoreGrammar {
    const NAMED: &'static [Self] = &[
        RestoreGrammar::Auto,
        RestoreGrammar::Current,
        RestoreGrammar::Old,
    ];

    fn name(self) -> &'static str {
        match self {
            RestoreGrammar::Unspecified | RestoreGrammar::Auto => "auto",
            RestoreGrammar::Current => "current",
            RestoreGrammar::Old => "old",
        }
    }
}

impl Named for PitrLevel {
    const NAMED: &'static [Self] = &[
        PitrLevel::Cluster,
        PitrLevel::Account,
        PitrLevel::Database,
        PitrLevel::Table,
    ];

    /// Unspecified is inferred from the names given, so it has no word.
    fn name(self) -> &'static str {
        match self {
            PitrLevel::Unspecified => "",
            PitrLevel::Cluster => "cluster",
            PitrLevel::Account => "account",
            PitrLevel::Database => "database",
            PitrLevel::Table => "table",
        }
    }

    /// The same synonyms as snapshot levels, so both commands take the
    /// same words.
    fn aliases(self) -> &'static [&'static str] {
        match self {
            PitrLevel::Account => &["tenant"],
            PitrLevel::Database => &["db"],
            _ => &[],
        }
    }
}

/// MatrixOne's own unit words: they go into `RANGE n '<unit>'` as they
/// are, and MatrixOne refuses any other (`invalid pitr unit day`).
impl Named for PitrUnit {
    const NAMED: &'static [Self] = &[
        PitrUnit::Hour,
        PitrUnit::Day,
        PitrUnit::Month,
        PitrUnit::Year,
    ];

    fn name(self) -> &'static str {
        match self {
            PitrUnit::Hour => "h",
            PitrUnit::Unspecified | PitrUnit::Day => "d",
            PitrUnit::Month => "mo",
            PitrUnit::Year => "y",
        }
    }
}

impl Named for ProblemKind {
    const NAMED: &'static [Self] = &[
        ProblemKind::Missing,
        ProblemKind::Truncated,
        ProblemKind::Corrupt,
        ProblemKind::SizeMismatch,
        ProblemKind::Io,
        ProblemKind::UnsafePath,
        ProblemKind::Unavailable,
    ];

    fn name(self) -> &'static str {
        match self {
            ProblemKind::Unspecified => "",
            ProblemKind::Missing => "missing",
            ProblemKind::Truncated => "truncated",
            ProblemKind::Corrupt => "corrupt",
            ProblemKind::SizeMismatch => "size mismatch",
            ProblemKind::Io => "io",
            ProblemKind::UnsafePath => "unsafe path",
            ProblemKind::Unavailable => "unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_words_in_any_case_and_synonyms() {
        assert_eq!(
            BackupType::parse(" Incremental "),
            Some(BackupType::Incremental)
        );
        assert_eq!(BackupType::parse("differential"), None);
        assert_eq!(
            BackupType::parse(""),
            None,
            "no word is the caller's default"
        );
        assert_eq!(SnapshotLevel::parse("TENANT"), Some(SnapshotLevel::Account));
        assert_eq!(SnapshotLevel::parse("db"), Some(SnapshotLevel::Database));
        assert_eq!(RestoreGrammar::parse("OLD"), Some(RestoreGrammar::Old));
        assert_eq!(RestoreGrammar::parse("new"), None);
        assert_eq!(PitrUnit::parse("MO"), Some(PitrUnit::Month));
        assert_eq!(PitrUnit::parse("day"), None, "MatrixOne's words only");
        assert_eq!(PitrLevel::parse("db"), Some(PitrLevel::Database));
    }

    #[test]
    fn unspecified_reads_as_its_default() {
        assert_eq!(BackupType::word(BackupType::Unspecified as i32), "full");
        assert_eq!(RestoreGrammar::Unspecified.name(), "auto");
        assert_eq!(Consistency::word(0), "");
        assert_eq!(BackupMethod::word(0), "agents");
        assert_eq!(BackupMethod::word(2), "matrixone");
        assert_eq!(
            BackupState::word(99),
            "",
            "an unknown value is no known word"
        );
    }

    #[test]
    fn choices_as_a_sentence() {
        assert_eq!(BackupType::choices(), "full or incremental");
        assert_eq!(
            SnapshotLevel::choices(),
            "cluster, account, database or table"
        );
        assert_eq!(RestoreGrammar::choices(), "auto, current or old");
        assert_eq!(PitrUnit::choices(), "h, d, mo or y");
        assert_eq!(PitrUnit::Unspecified.name(), "d", "days by default");
    }
}
