//! Compiles `proto/raft.proto`, the transport of the raft group; this crate
//! is its only user.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // As in mo-br-proto's build script: a system protoc wins, else the
    // vendored one, set only for this build script (raft-proto's own build
    // wants protoc 3 and must not see it).
    if std::env::var_os("PROTOC").is_none() && which_protoc().is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    tonic_prost_build::configure().compile_protos(&["proto/raft.proto"], &["proto"])?;
    Ok(())
}

fn which_protoc() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("protoc"))
        .find(|p| p.is_file())
}
