fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A system protoc wins; otherwise the vendored one, set only for this
    // build script so other crates' build scripts (raft-proto wants protoc 3)
    // never see it.
    if std::env::var_os("PROTOC").is_none() && which_protoc().is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        // For server reflection (grpcurl, grpcui).
        .file_descriptor_set_path(out.join("mobr_descriptor.bin"))
        // Its Debug is written by hand so secrets never reach a log line.
        .skip_debug([
            "mobr.common.S3Storage",
            "mobr.coordinator.MoLogin",
            "mobr.coordinator.SnapshotRequest",
            "mobr.coordinator.PitrRequest",
            "mobr.coordinator.BackupRequest",
            "mobr.coordinator.ListRequest",
            "mobr.coordinator.CheckRequest",
            "mobr.coordinator.DeleteRequest",
            "mobr.coordinator.RestoreRequest",
            "mobr.coordinator.AttachRequest",
            "mobr.coordinator.RebuildRequest",
            "mobr.coordinator.ExpireRequest",
            "mobr.coordinator.CopyRequest",
            "mobr.agent.InventoryRequest",
        ])
        .compile_protos(
            &[
                "proto/common.proto",
                "proto/coordinator.proto",
                "proto/agent.proto",
            ],
            &["proto"],
        )?;
    Ok(())
}

fn which_protoc() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("protoc"))
        .find(|p| p.is_file())
}
