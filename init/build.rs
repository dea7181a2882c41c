// Builds ebpf-programs for bpfel-unknown-none (nightly, bpf-linker) and puts
// the object in OUT_DIR, where src/ebpf.rs embeds it.
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
