//! The one place that knows which burn backends exist: `--device` → a burn [`Device`].
//!
//! `flex` (burn's pure-Rust CPU backend) is the default and works everywhere; `wgpu` runs the same
//! code on any GPU through Vulkan, Metal or DX12 (and on Mesa's software Vulkan, lavapipe, in CI).
//! `vulkan` and `metal` pin wgpu to one graphics API; `cpu` (CubeCL's CPU backend) and `cuda` are
//! behind cargo features of the same names. `auto` takes burn's `Device::default()`: the first
//! enabled backend in burn's order (GPUs before CPUs).

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A backend as `--device` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// burn's `Device::default()`.
    Auto,
    /// burn-flex, the pure-Rust CPU backend.
    #[default]
    Flex,
    /// CubeCL's CPU backend (cargo feature `cpu`).
    Cpu,
    /// wgpu on whatever graphics API the machine offers.
    Wgpu,
    /// wgpu pinned to Vulkan (cargo feature `vulkan`).
    Vulkan,
    /// wgpu pinned to Metal (cargo feature `metal`).
    Metal,
    /// CUDA (cargo feature `cuda`).
    Cuda,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Auto => "auto",
            DeviceKind::Flex => "flex",
            DeviceKind::Cpu => "cpu",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Vulkan => "vulkan",
            DeviceKind::Metal => "metal",
            DeviceKind::Cuda => "cuda",
        }
    }
}

/// A chosen device and what to record about it.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The device, without autodiff (training wraps it with `.autodiff()`).
    pub device: Device,
    /// The backend as asked for (`flex`, `wgpu`, ...).
    pub backend: String,
    /// The adapter's name where the backend reports one (the GPU), else the backend's debug name.
    pub adapter: String,
}

fn not_built(kind: DeviceKind) -> Error {
    Error::flag(
        "--device",
        format!(
            "{} is not in this build; rebuild with `--features {}` (built: {})",
            kind.as_str(),
            kind.as_str(),
            built().join(", ")
        ),
    )
}

/// The backends this binary was built with.
pub fn built() -> Vec<&'static str> {
    let mut out = vec!["auto"];
    if cfg!(feature = "flex") {
        out.push("flex");
    }
    if cfg!(feature = "cpu") {
        out.push("cpu");
    }
    if cfg!(feature = "wgpu") {
        out.push("wgpu");
    }
    if cfg!(feature = "vulkan") {
        out.push("vulkan");
    }
    if cfg!(feature = "metal") {
        out.push("metal");
    }
    if cfg!(feature = "cuda") {
        out.push("cuda");
    }
    out
}

/// Turns `--device` into a burn device.
pub fn select(kind: DeviceKind) -> Result<Selected> {
    let device: Device = match kind {
        DeviceKind::Auto => Device::default(),
        #[cfg(feature = "flex")]
        DeviceKind::Flex => Device::flex(),
        #[cfg(feature = "cpu")]
        DeviceKind::Cpu => Device::cpu(),
        #[cfg(feature = "wgpu")]
        DeviceKind::Wgpu => Device::wgpu(Default::default()),
        #[cfg(feature = "vulkan")]
        DeviceKind::Vulkan => Device::vulkan(Default::default()),
        #[cfg(feature = "metal")]
        DeviceKind::Metal => Device::metal(Default::default()),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Device::cuda(0),
        #[allow(unreachable_patterns)]
        other => return Err(not_built(other)),
    };
    let adapter = adapter_name(&device);
    Ok(Selected {
        device,
        backend: kind.as_str().to_string(),
        adapter,
    })
}

/// burn's own knob for its default device (burn-dispatch 0.22.1, `device.rs`, `impl Default for
/// Device`): a backend's name, else the first enabled backend in burn's order, GPUs first.
pub const BURN_DEVICE: &str = "BURN_DEVICE";

/// [`select`] for a whole process (the command line): also pins burn's default device to the
/// selection. burn materialises a loaded optimizer state on its *default* device and moves it to
/// the parameters' device only at the next step (burn-optim 0.22.1,
/// `optim/module/module_optimizer.rs:247`, `load_record`: `let device = Device::default();`).
/// With the default features that device is wgpu, so every resumed flex run (a checkpoint's
/// optimizer) brought up a GPU backend for nothing: the Vulkan driver and its threads in a CPU
/// process, a GPU held on a shared machine, and a panic where the machine has no adapter or the
/// environment names a backend this build lacks. Sets `BURN_DEVICE`, so call it before the
/// process starts threads; `auto` leaves burn's choice (and a `BURN_DEVICE` set by the user,
/// checked here) alone.
pub fn select_for_process(kind: DeviceKind) -> Result<Selected> {
    if kind == DeviceKind::Auto {
        if let Ok(name) = std::env::var(BURN_DEVICE) {
            let built = built();
            if name == "auto" || !built.contains(&name.to_lowercase().as_str()) {
                return Err(Error::Invalid {
                    origin: "the environment".into(),
                    field: BURN_DEVICE.into(),
                    message: format!(
                        "`{name}` is not a backend of this build (built: {})",
                        built[1..].join(", ")
                    ),
                });
            }
        }
    } else {
        std::env::set_var(BURN_DEVICE, kind.as_str());
    }
    select(kind)
}

/// The machine a run runs on, for its record: the CPU's model name (from Linux's /proc/cpuinfo,
/// where it has one), the logical CPUs this process may use, the OS and the architecture, e.g.
/// `AMD EPYC 7B13, 2 logical CPUs, linux x86_64`. A GPU's name is the run's `adapter`.
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_string())
            })
        });
    format!(
        "{}{cpus} logical CPUs, {} {}",
        model.map(|m| format!("{m}, ")).unwrap_or_default(),
        std::env::consts::OS,
        std::env::consts::ARCH
    )
}

#[cfg(feature = "wgpu")]
fn adapter_name(device: &Device) -> String {
    // GPU backends report the part's name; flex does not.
    device
        .identity()
        .map(|id| id.name)
        .unwrap_or_else(|| format!("{device:?}"))
}

#[cfg(not(feature = "wgpu"))]
fn adapter_name(device: &Device) -> String {
    format!("{device:?}")
}

/// mimalloc's `mi_option_purge_delay` (its `mi_option_t` enum in `mimalloc.h`, v2 and v3: the
/// option after `mi_option_deprecated_eager_commit_delay` = 14, which libmimalloc-sys names, and
/// before `mi_option_use_numa_nodes` = 16; checked: `MIMALLOC_PURGE_DELAY=777` reads back as 777
/// through this index, and the default as v3's 1000).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc, the global allocator of the binary and the benches, never hand freed pages
/// back to the kernel: a training step on the CPU frees and reallocates the same tensor buffers
/// every step, and with mimalloc's default delay (1 s) the pages it purges come back as fresh
/// zeroed (huge) pages, about 4% of a step of the base's model (docs/performance.md). The process
/// keeps its peak footprint instead (+3% there). Harmless where mimalloc is not the allocator.
pub fn keep_freed_pages() {
    // SAFETY: sets one integer option of the allocator; mimalloc reads options atomically and
    // accepts -1 ("no purging at all", mimalloc.h) for this one.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}
