//! `mo_br snapshot create|show|drop|restore`: parsed with every flag of the
//! reference, but they need a MatrixOne (MySQL protocol) connection, which
//! this build does not have yet. They say so and exit 2.

pub const NOT_AVAILABLE: &str =
    "mo_br snapshot: not available in this build yet (needs the MatrixOne connection, coming next)";

pub fn run(_cmd: &crate::args::SnapshotCommand) -> u8 {
    eprintln!("{NOT_AVAILABLE}");
    2
}
