//! How much memory a generation may use: the device's free memory on a GPU; on the CPU the least of available
//! memory, the address-space limit (`ulimit -v`) and the cgroup limit, each less what the process already uses;
//! and never more than a configured limit (`--memory-budget`). Each source keeps a margin for what the estimate
//! does not see (allocator slack, per-thread arenas, cuBLAS and cuDNN workspaces).

use std::fmt;

use candle_core::Device;

use crate::error::PipelineError;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Kept back on a GPU: a twentieth of the card plus 512 MiB (cuBLAS/cuDNN handles and workspaces, the stream
/// allocator's slack).
pub fn cuda_reserve(total: u64) -> u64 {
    total / 20 + 512 * MIB
}

/// The share of free GPU memory (after the reserve) the estimate may fill. candle allocates through CUDA's
/// stream-ordered pool, which keeps freed blocks for reuse until the stream synchronises, so the device holds more
/// than the live bytes: on an H100 (im2col build, 1024², guided) the peaks were about 1.2× the estimate through
/// the steps and 1.4× in the f32 decode (BENCHMARKS.md: 11,380 MiB and 26,321 MiB with 6.8 GiB of weights).
pub const CUDA_SHARE: (u64, u64) = (2, 3);

/// Kept back on the CPU: a fifth of what is left, at least 256 MiB (glibc reserves 64 MiB of address space for
/// each thread's arena, and freed memory is not always returned at once).
pub fn cpu_reserve(headroom: u64) -> u64 {
    (headroom / 5).max(256 * MIB)
}

/// Where the OS says nothing (not Linux), the CPU budget assumed unless one is configured.
pub const ASSUMED_CPU_BUDGET: u64 = 8 * GIB;

/// What bounds the budget, to name it when a job does not fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// `--memory-budget` / `GAMEFORGE_MEMORY_BUDGET`.
    Configured,
    /// Free device memory after the weights were loaded, of the card's total.
    DeviceFree {
        free: u64,
        total: u64,
    },
    /// `MemAvailable` in `/proc/meminfo`.
    AvailableMemory {
        available: u64,
    },
    /// The address-space limit, less the address space already in use.
    AddressSpace {
        limit: u64,
        used: u64,
    },
    /// The cgroup's `memory.max`, less its `memory.current`.
    Cgroup {
        max: u64,
        current: u64,
    },
    Assumed,
}

/// A memory budget in bytes and what sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    pub limit: Limit,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use super::plan::bytes;
        match self {
            Limit::Configured => write!(f, "set by --memory-budget / GAMEFORGE_MEMORY_BUDGET"),
            Limit::DeviceFree { free, total } => {
                write!(f, "GPU memory free after loading the weights: {} of {}", bytes(*free), bytes(*total))
            }
            Limit::AvailableMemory { available } => write!(f, "available system memory: {}", bytes(*available)),
            Limit::AddressSpace { limit, used } => {
                write!(f, "address-space limit (ulimit -v) of {} with {} in use", bytes(*limit), bytes(*used))
            }
            Limit::Cgroup { max, current } => {
                write!(f, "cgroup memory limit of {} with {} in use", bytes(*max), bytes(*current))
            }
            Limit::Assumed => write!(f, "assumed: this OS does not report its memory; set --memory-budget"),
        }
    }
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.limit {
            Limit::Configured | Limit::Assumed => write!(f, "{}", self.limit),
            Limit::DeviceFree { .. } => write!(f, "{}, less a reserve and the allocator's slack", self.limit),
            _ => write!(f, "{}, less a margin", self.limit),
        }
    }
}

impl Budget {
    /// The smaller of two budgets, keeping the name of the one that binds.
    pub fn min(self, other: Budget) -> Budget {
        if other.bytes < self.bytes { other } else { self }
    }

    /// The budget on `device` now, never above `configured`.
    pub fn measure(device: &Device, configured: Option<u64>) -> Result<Budget, PipelineError> {
        let measured = if device.is_cuda() { cuda(device)? } else { cpu(&CpuFacts::read()) };
        Ok(match configured {
            Some(bytes) => measured.min(Budget { bytes, limit: Limit::Configured }),
            None => measured,
        })
    }
}

/// A budget from free and total device memory.
pub fn from_device_memory(free: u64, total: u64) -> Budget {
    let usable = free.saturating_sub(cuda_reserve(total));
    let bytes = usable / CUDA_SHARE.1 * CUDA_SHARE.0;
    Budget { bytes, limit: Limit::DeviceFree { free, total } }
}

#[cfg(feature = "cuda")]
fn cuda(device: &Device) -> Result<Budget, PipelineError> {
    let cuda = device.as_cuda_device()?;
    let (free, total) = cuda
        .cuda_stream()
        .context()
        .mem_get_info()
        .map_err(|e| PipelineError::Unsupported(format!("cannot read the GPU's free memory: {e}")))?;
    Ok(from_device_memory(free as u64, total as u64))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_device: &Device) -> Result<Budget, PipelineError> {
    Err(PipelineError::Unsupported("a CUDA device in a build without the `cuda` feature".into()))
}

/// What Linux says about this process's memory; `None` where a file is missing or says "unlimited".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpuFacts {
    pub available: Option<u64>,
    pub address_space_limit: Option<u64>,
    pub address_space_used: Option<u64>,
    pub cgroup_max: Option<u64>,
    pub cgroup_current: Option<u64>,
}

impl CpuFacts {
    pub fn read() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let cgroup = read("/proc/self/cgroup").and_then(|s| cgroup_dir(&s));
        let cgroup_file = |name: &str| cgroup.as_ref().and_then(|dir| read(&format!("/sys/fs/cgroup{dir}/{name}")));
        Self {
            available: read("/proc/meminfo").and_then(|s| meminfo_available(&s)),
            address_space_limit: read("/proc/self/limits").and_then(|s| address_space_limit(&s)),
            address_space_used: read("/proc/self/status").and_then(|s| vm_size(&s)),
            cgroup_max: cgroup_file("memory.max").and_then(|s| s.trim().parse().ok()),
            cgroup_current: cgroup_file("memory.current").and_then(|s| s.trim().parse().ok()),
        }
    }
}

/// The CPU budget: the tightest of the limits Linux reports, each less a margin.
pub fn cpu(facts: &CpuFacts) -> Budget {
    tightest(facts, |headroom| headroom.saturating_sub(cpu_reserve(headroom)))
}

/// The tightest of the limits Linux reports, with no margin: what a load of weights may not exceed.
pub fn cpu_headroom(facts: &CpuFacts) -> Budget {
    tightest(facts, |headroom| headroom)
}

fn tightest(facts: &CpuFacts, less_margin: impl Fn(u64) -> u64) -> Budget {
    let mut candidates = Vec::new();
    if let Some(available) = facts.available {
        candidates.push(Budget { bytes: less_margin(available), limit: Limit::AvailableMemory { available } });
    }
    if let Some(limit) = facts.address_space_limit {
        let used = facts.address_space_used.unwrap_or(0);
        candidates.push(Budget {
            bytes: less_margin(limit.saturating_sub(used)),
            limit: Limit::AddressSpace { limit, used },
        });
    }
    if let (Some(max), Some(current)) = (facts.cgroup_max, facts.cgroup_current) {
        candidates
            .push(Budget { bytes: less_margin(max.saturating_sub(current)), limit: Limit::Cgroup { max, current } });
    }
    candidates.into_iter().reduce(Budget::min).unwrap_or(Budget { bytes: ASSUMED_CPU_BUDGET, limit: Limit::Assumed })
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    let value: u64 = line[field.len()..].split_whitespace().next()?.parse().ok()?;
    value.checked_mul(1024)
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn meminfo_available(meminfo: &str) -> Option<u64> {
    kib_field(meminfo, "MemAvailable:")
}

/// `VmSize` from `/proc/self/status`, in bytes.
pub fn vm_size(status: &str) -> Option<u64> {
    kib_field(status, "VmSize:")
}

/// The soft address-space limit from `/proc/self/limits`, in bytes; `None` when unlimited.
pub fn address_space_limit(limits: &str) -> Option<u64> {
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..].split_whitespace().next()?.parse().ok()
}

/// The cgroup v2 folder of this process from `/proc/self/cgroup` (`0::/path`).
pub fn cgroup_dir(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(|p| p.trim_end_matches('/').to_string())
}

/// A size as people write it: `17179869184`, `16GiB`, `16 GB`, `512MiB`, `1.5G` (binary units for K/M/G/T).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("{text:?} is not a size (try 16GiB or 512MiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        other => return Err(format!("{other:?} is not a size unit (use KiB, MiB, GiB or TiB)")),
    };
    let bytes = value * multiplier as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes >= u64::MAX as f64 {
        return Err(format!("{text:?} is not a usable memory size"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_files_are_read_for_the_values_that_bound_memory() {
        let meminfo = "MemTotal:       24000000 kB\nMemFree:  100 kB\nMemAvailable:   15000000 kB\n";
        assert_eq!(meminfo_available(meminfo), Some(15_000_000 * 1024));
        let status = "Name:\tsdxl-worker\nVmPeak:\t  900000 kB\nVmSize:\t  812345 kB\n";
        assert_eq!(vm_size(status), Some(812_345 * 1024));
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max address space         1610612736           1610612736           bytes\n";
        assert_eq!(address_space_limit(limits), Some(1_610_612_736));
        let unlimited = "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_space_limit(unlimited), None);
        assert_eq!(cgroup_dir("0::/user.slice/session-1.scope\n"), Some("/user.slice/session-1.scope".into()));
        assert_eq!(cgroup_dir("0::/\n"), Some(String::new()));
    }

    #[test]
    fn the_tightest_cpu_limit_sets_the_budget_and_is_named() {
        let facts = CpuFacts {
            available: Some(15 * GIB),
            address_space_limit: Some(2 * GIB),
            address_space_used: Some(GIB / 2),
            cgroup_max: Some(8 * GIB),
            cgroup_current: Some(GIB),
        };
        let budget = cpu(&facts);
        assert_eq!(budget.limit, Limit::AddressSpace { limit: 2 * GIB, used: GIB / 2 });
        let headroom = 3 * GIB / 2;
        assert_eq!(budget.bytes, headroom - headroom / 5);
        assert_eq!(cpu_headroom(&facts).bytes, headroom);
        assert!(budget.to_string().contains("ulimit -v"), "{budget}");
    }

    #[test]
    fn a_small_headroom_keeps_the_fixed_margin() {
        let facts = CpuFacts { available: Some(300 * MIB), ..CpuFacts::default() };
        assert_eq!(cpu(&facts).bytes, 44 * MIB);
        let facts = CpuFacts { available: Some(100 * MIB), ..CpuFacts::default() };
        assert_eq!(cpu(&facts).bytes, 0);
    }

    #[test]
    fn without_linux_facts_the_budget_is_assumed_and_says_so() {
        let budget = cpu(&CpuFacts::default());
        assert_eq!(budget, Budget { bytes: ASSUMED_CPU_BUDGET, limit: Limit::Assumed });
        assert!(budget.to_string().contains("--memory-budget"));
    }

    #[test]
    fn a_configured_budget_binds_only_when_it_is_smaller() {
        let device = Budget { bytes: 10 * GIB, limit: Limit::DeviceFree { free: 11 * GIB, total: 16 * GIB } };
        assert_eq!(device.clone().min(Budget { bytes: 4 * GIB, limit: Limit::Configured }).limit, Limit::Configured);
        assert_eq!(device.clone().min(Budget { bytes: 40 * GIB, limit: Limit::Configured }), device);
    }

    #[test]
    fn the_device_budget_keeps_a_reserve_and_room_for_the_allocator() {
        let budget = from_device_memory(8 * GIB, 16 * GIB);
        let usable = 8 * GIB - (16 * GIB / 20 + 512 * MIB);
        assert_eq!(budget.bytes, usable / 3 * 2);
        assert_eq!(from_device_memory(100 * MIB, 16 * GIB).bytes, 0);
    }

    #[test]
    fn sizes_are_read_with_binary_units() {
        assert_eq!(parse_size("17179869184"), Ok(16 * GIB));
        assert_eq!(parse_size("16GiB"), Ok(16 * GIB));
        assert_eq!(parse_size("16 GB"), Ok(16 * GIB));
        assert_eq!(parse_size("512MiB"), Ok(512 * MIB));
        assert_eq!(parse_size("1.5g"), Ok(3 * GIB / 2));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("99999999999TiB").is_err());
    }
}
