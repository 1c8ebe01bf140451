//! Test harness.
pub mod s3server;
