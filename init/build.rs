// Builds ebpf-programs for bpfel-unknown-none (nightly, bpf-linker) and puts
// one object per capability in OUT_DIR, where each capability's ebpf.rs
// embeds its own (`include_bytes_aligned!(concat!(env!("OUT_DIR"), "/NAME"))`).
fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let workspace = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow::anyhow!("init/ has no parent directory"))?;
    let ebpf_dir = workspace.join("ebpf-programs");
    // The shared types change the object too.
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("common").display()
    );
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "myinit-ebpf",
            root_dir: ebpf_dir
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}
