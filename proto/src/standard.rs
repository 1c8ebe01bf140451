//! The standard gRPC services next to mo-br's own: health (grpc.health.v1,
//! what kubelet's gRPC probes and load balancers call) and server
//! reflection (v1 and v1alpha, what grpcurl and grpcui use to find the
//! methods without the .proto files).
//!
//! Who may call them is each server's policy (see
//! `mo_br_security::auth::MethodPolicy::standard_services`).

use tonic_health::server::{health_reporter, HealthReporter};

/// Our services' encoded descriptors (every .proto of this crate).
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mobr_descriptor");

/// A service name whose status is SERVING while the process runs, whatever
/// the whole server's ("") status says: for liveness probes, which must not
/// restart a coordinator replica only because its group lost its quorum.
pub const LIVENESS: &str = "liveness";

/// The health service and its reporter ("" -- the whole server -- starts
/// SERVING; set it with [`set`]).
pub fn health() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    health_reporter()
}

/// Sets the whole server's status, and `services`' (full names, e.g.
/// `mobr.coordinator.Coordinator`), to serving or not.
pub async fn set(reporter: &HealthReporter, services: &[&str], serving: bool) {
    use tonic_health::ServingStatus;
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    for s in services {
        reporter.set_service_status(*s, status).await;
    }
}

/// The reflection services (v1 and v1alpha) over our descriptors and
/// health's.
pub fn reflection() -> (
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
) {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // Only fails on a malformed descriptor set, which is built in.
    let v1 = builder()
        .build_v1()
        .expect("the built-in descriptor sets are valid");
    let v1alpha = builder()
        .build_v1alpha()
        .expect("the built-in descriptor sets are valid");
    (v1, v1alpha)
}
