//! The host's TSC frequency, which a guest under TCG must be told.
//!
//! Under TCG the guest's time stamp counter is the host's. The guest kernel
//! calibrates it against the emulated PIT, and under TCG that calibration
//! fails about half the time (translation and host scheduling make the PIT
//! reads too slow); the kernel then marks the TSC unstable and hangs early in
//! boot. Passing `tsc_early_khz=` with the host's rate skips the guesswork,
//! so the driver measures the rate once per process.
//!
//! Later the kernel's clocksource watchdog compares the TSC with jiffies,
//! whose ticks TCG delivers late under load, and may declare the (correct)
//! TSC unstable and fall back to a coarse jiffies clock. The TSC of a TCG
//! guest is the host's invariant TSC, so the driver also passes
//! `tsc=reliable`, which turns that watchdog off for the TSC.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long one measurement counts TSC ticks against the monotonic clock.
const WINDOW: Duration = Duration::from_millis(25);

/// The host's TSC rate in kHz, measured once per process; `None` when two
/// measurements disagree by more than 0.1 %.
pub fn host_tsc_khz() -> Option<u64> {
    static KHZ: OnceLock<Option<u64>> = OnceLock::new();
    *KHZ.get_or_init(measure)
}

fn measure() -> Option<u64> {
    let first = measure_once();
    let second = measure_once();
    let spread = first.abs_diff(second);
    if first == 0 || spread * 1000 > first {
        tracing::warn!(first, second, "the host tsc rate is not steady");
        return None;
    }
    let khz = first.min(second);
    tracing::debug!(khz, "host tsc rate");
    Some(khz)
}

fn measure_once() -> u64 {
    let start = Instant::now();
    let tsc_start = rdtsc();
    std::thread::sleep(WINDOW);
    let tsc_end = rdtsc();
    let elapsed = start.elapsed();

    let ticks = tsc_end.wrapping_sub(tsc_start) as u128;
    let nanos = elapsed.as_nanos().max(1);
    u64::try_from(ticks * 1_000_000 / nanos).unwrap_or(0)
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` reads a counter; it touches no memory and exists on
    // every x86_64 CPU.
    unsafe { std::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn rdtsc() -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_plausible() {
        let khz = host_tsc_khz().expect("a steady tsc");
        assert!((100_000..10_000_000).contains(&khz), "{khz} kHz");
    }
}
