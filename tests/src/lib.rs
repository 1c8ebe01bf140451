//! Test harness: real processes (`s3s-fs`, `mo-br-coordinator`,
//! `mo-br-agent`, `mo_br`) on loopback, sample nodes and tree comparison.
pub mod browser;
pub mod faultproxy;
pub mod fixtures;
pub mod group;
pub mod mosim;
pub mod procs;
pub mod s3server;
pub mod tlsproxy;
pub mod trees;
