//! Gives heap memory the process has freed back to the operating system.
//!
//! glibc's allocator returns memory to the system only from the top of the heap. After a
//! burst (a sidecar's spike of connections) the buffers freed in the middle of the heap
//! stay resident for good, and the footprint becomes the busiest moment's. Trimming now
//! and then lets the process shrink back, as Envoy's allocator releases freed memory in
//! the background.

use std::time::Duration;

/// How often freed memory is handed back: within a second or two of a burst's end. A
/// trim with nothing to release takes a few microseconds; after a burst, a few hundred.
pub const RELEASE_PERIOD: Duration = Duration::from_secs(1);

/// Releases freed heap memory every `period`, until the task is dropped. The sidecar
/// spawns it beside its work. (The `bosun` binary, which runs the control plane, uses
/// mimalloc, which returns freed memory on its own.)
pub async fn release_periodically(period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        release_freed();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn release_freed() {
    // SAFETY: `malloc_trim` has no preconditions; it takes the allocator's own locks and
    // only returns whole free pages to the kernel. No safe binding of it exists.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn release_freed() {}
