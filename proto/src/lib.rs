//! gRPC services of mo-br and the in-process transport of the embedded mode.
//!
//! - [`common`]: storage and source descriptions shared by both services.
//! - [`agent`]: the service every agent serves to the coordinator.
//! - [`coordinator`]: the service the coordinator serves to the CLI.
//! - [`names`]: the words users type and read for the wire enums.
//! - [`standard`]: the standard gRPC health and reflection services both
//!   daemons serve beside their own.
//! - [`inproc`]: a tonic channel to a server in the same process, over
//!   in-memory pipes, so the embedded default runs the same gRPC code as a
//!   cluster, minus the network.

pub mod common {
    tonic::include_proto!("mobr.common");
}
pub mod agent {
    tonic::include_proto!("mobr.agent");
}
pub mod coordinator {
    tonic::include_proto!("mobr.coordinator");
}
mod convert;
pub mod inproc;
pub mod names;
pub mod standard;
