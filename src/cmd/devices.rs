//! `medseg devices`: the compute devices this build can run on.

use anyhow::Result;
use medseg_model::{NO_ADAPTER_FIX, wgpu_adapters};

/// List the compute devices: the CPU (`--device flex`) and every wgpu adapter (`--device
/// wgpu:N`; `--device wgpu` takes the first listed: a discrete GPU before an integrated one,
/// a GPU before a CPU adapter such as Mesa's lavapipe).
///
/// GPU support needs a build with `cargo build --release --features wgpu` and a Vulkan (Linux,
/// Windows), Metal (macOS) or DX12 (Windows) driver.
#[derive(clap::Args, Debug)]
pub struct DevicesArgs {}

pub fn run(_: &DevicesArgs) -> Result<()> {
    println!(
        "{:<8} CPU: burn's flex backend with medseg's kernels, {} threads (--threads, RAYON_NUM_THREADS)",
        "flex",
        rayon::current_num_threads()
    );
    match wgpu_adapters() {
        Ok(adapters) if adapters.is_empty() => {
            println!("{:<8} no adapter found: {NO_ADAPTER_FIX}", "wgpu");
        }
        Ok(adapters) => {
            for a in adapters {
                let chosen = if a.index == 0 {
                    "  (--device wgpu)"
                } else {
                    ""
                };
                let id = format!("wgpu:{}", a.index);
                println!("{id:<8} {} ({}){chosen}", a.name, a.kind);
            }
        }
        Err(e) => println!("{:<8} {e}", "wgpu"),
    }
    Ok(())
}
