//! Compiles proto/ with the pure-Rust protox compiler, so no system protoc is needed.

fn main() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("parlor/v1/parlor.proto"),
        root.join("parlor/v1/games.proto"),
        root.join("parlor/v1/pod.proto"),
    ];
    println!("cargo:rerun-if-changed={}", root.display());
    let fds = protox::compile(files, [&root]).expect("proto/ must compile");
    prost_build::Config::new()
        .bytes(["."])
        .compile_fds(fds)
        .expect("generated code must be writable");
}
