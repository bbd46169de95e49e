//! A VMM handing a guest's device over to another device, with the session API
//! (`vfio_harness::migration::session`).
//!
//! Shaped like a VMM: it owns its guest memory (a `vm-memory` `GuestMemoryMmap`), and where
//! `/dev/kvm` exists its own KVM VM (`kvm-ioctls`) with that memory registered; a "vCPU"
//! thread keeps writing guest memory until it is paused. The device is migrated step by step:
//! pre-copy while the guest runs, until little is pending; pause the vCPUs; stop the source
//! and send the rest; load the destination and run it; leave the source **stopped**, as a
//! VMM does once the guest lives on the destination.
//!
//! ```sh
//! cargo run --example vmm_handoff                      # sim:state=16M,seed=7 -> sim:state=16M,verify-seed=7
//! cargo run --example vmm_handoff -- SRC DST           # two kernel devices (mdev UUIDs, ...)
//! ```
//!
//! The destination is checked to run the source's state: on the simulator the destination
//! refuses any state but seed 7's (`verify-seed`); on a kernel device a marker is written
//! into the source before the handoff and read back from the destination (4 KiB at the start
//! of BAR2 when the device has one, as vhgpu's VRAM; else mtty's scratch register, BAR0
//! offset 7).
//!
//! What the library takes from the VMM:
//! - its VM: the KVM-VFIO device created on the VMM's own `VmFd`
//!   (`KvmVfioDevice::create`), handed in as `OpenOptions::kvm_device`, so that the devices
//!   are registered with the VMM's VM (not with a private one) before they are opened;
//! - its guest memory: every region of its `GuestMemoryMmap` mapped for the devices' DMA at
//!   IOVA = guest address (`VfioContext::map_guest_memory`), while the vCPU keeps writing
//!   it, and unmapped once the handoff is done. The simulator has no IOMMU: nothing is
//!   mapped there.

use std::error::Error;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use vfio_harness::device::{Device, DeviceSpec, MigState, OpenOptions};
use vfio_harness::migration::driver_for;
use vfio_harness::migration::session::{DestinationSession, EndState, SourceSession};
use vfio_harness::vfio::{GuestMemoryDma, KernelDevice, KvmVfioDevice};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

type Res<T> = Result<T, Box<dyn Error>>;

/// The default source and destination: simulated devices, the destination refusing any
/// state but the source's.
pub const DEFAULT_SPECS: [&str; 2] = ["sim:state=16M,seed=7", "sim:state=16M,verify-seed=7"];

/// What the handoff did.
#[derive(Debug)]
pub struct Outcome {
    /// Pre-copy rounds run while the guest ran.
    pub rounds: usize,
    /// Bytes sent while the guest ran, and after it was paused.
    pub precopy_bytes: u64,
    /// Bytes sent after the source stopped.
    pub stopcopy_bytes: u64,
    /// From pausing the vCPUs to the destination running, seconds.
    pub downtime_seconds: f64,
    /// The source's state at the end (STOP).
    pub source_state: MigState,
    /// The destination's state at the end (RUNNING).
    pub destination_state: MigState,
    /// How the destination's state was checked.
    pub verified_by: &'static str,
    /// Whether the VMM had a KVM VM.
    pub kvm: bool,
    /// Kernel devices: what the library says about their KVM registration (the VMM's VM).
    pub kvm_note: Option<String>,
    /// Kernel devices: the guest memory mapped for DMA, as (guest address, IOVA, length).
    pub dma: Vec<(u64, u64, u64)>,
}

/// The VMM's "vCPU": writes a counter into guest memory until it is paused.
struct Vcpu {
    pause: Arc<AtomicBool>,
    paused: mpsc::Receiver<u64>,
    writes: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Vcpu {
    fn start(mem: Arc<GuestMemoryMmap>) -> Vcpu {
        let pause = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let (tx, paused) = mpsc::channel();
        let (p, w) = (pause.clone(), writes.clone());
        let thread = std::thread::spawn(move || {
            let mut n = 0u64;
            while !p.load(Ordering::Acquire) {
                n += 1;
                // A guest dirtying its memory; a failed write would be a bug in this example.
                if mem.write_obj(n, GuestAddress((n % 4096) * 8)).is_ok() {
                    w.store(n, Ordering::Release);
                }
                std::thread::yield_now();
            }
            // Acknowledge: from here on, no guest code runs.
            let _ = tx.send(n);
        });
        Vcpu {
            pause,
            paused,
            writes,
            thread,
        }
    }

    /// Pauses the vCPU and waits until it has stopped; returns the last value it wrote.
    fn pause(self) -> Res<u64> {
        self.pause.store(true, Ordering::Release);
        let last = self.paused.recv()?;
        self.thread.join().map_err(|_| "the vCPU thread panicked")?;
        let _ = self.writes.load(Ordering::Acquire);
        Ok(last)
    }
}

/// The VMM's own KVM VM with the guest memory registered, where `/dev/kvm` exists.
fn create_vm(mem: &GuestMemoryMmap) -> Res<Option<kvm_ioctls::VmFd>> {
    if !Path::new("/dev/kvm").exists() {
        return Ok(None);
    }
    let kvm = kvm_ioctls::Kvm::new()?;
    let vm = kvm.create_vm()?;
    for (slot, r) in mem.iter().enumerate() {
        let host = r.get_host_address(vm_memory::MemoryRegionAddress(0))?;
        let region = kvm_bindings::kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: r.start_addr().0,
            memory_size: r.len(),
            userspace_addr: host as u64,
        };
        // SAFETY: the region is `memory_size` bytes of this process's mapping, which the
        // caller keeps alive for as long as the VM (`run` drops the VM first).
        unsafe { vm.set_user_memory_region(region)? };
    }
    Ok(Some(vm))
}

/// Where a marker is written on a kernel device, to check the destination got the state:
/// (region index, offset, length).
fn marker_spot(dev: &dyn Device) -> (u32, u64, usize) {
    let bar2 = dev.info().regions.iter().find(|r| r.index == 2);
    match bar2 {
        Some(r) if r.size >= 4096 && r.readable() && r.writable() => (2, 0, 4096),
        _ => (0, 7, 1),
    }
}

fn marker(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ 0x5a)
        .collect()
}

/// Runs the handoff from `src` to `dst` (device specs).
pub fn run(src: &str, dst: &str) -> Res<Outcome> {
    // The VMM's guest: 64 MiB of memory, a KVM VM where there is one, a running vCPU.
    let mem = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), 32 << 20),
        (GuestAddress(1 << 32), 32 << 20),
    ])?);
    let vm = create_vm(&mem)?;
    let kvm = vm.is_some();
    // The VMM's KVM-VFIO device, on its own VM: the library registers the devices with it.
    let kvm_vfio = vm.as_ref().map(KvmVfioDevice::create).transpose()?;
    let specs: Vec<DeviceSpec> = vec![src.parse()?, dst.parse()?];
    let opts = OpenOptions {
        kvm_device: kvm_vfio.as_ref().map(KvmVfioDevice::handle),
        ..OpenOptions::default()
    };
    let devices = vfio_harness::open_all(&specs, &opts)?;
    let sim = matches!(specs[0], DeviceSpec::Sim(_));
    // Kernel devices share one IOMMU context (one open_all): the guest memory is mapped
    // into it once, for both, at IOVA = guest address.
    let kernel = devices[0].as_any().downcast_ref::<KernelDevice>();
    let kvm_note = kernel.map(|k| k.context().kvm_note().to_string());
    if let (Some(k), Some(_)) = (kernel, &kvm_vfio) {
        if !k.context().kvm_registered() {
            return Err("the devices are not registered with the VMM's VM".into());
        }
    }
    let dma: Option<GuestMemoryDma> = kernel
        .map(|k| k.context().map_guest_memory(&mem))
        .transpose()?;
    let dma_regions: Vec<(u64, u64, u64)> = dma
        .iter()
        .flat_map(|d| d.regions())
        .map(|r| (r.guest_addr, r.iova, r.len))
        .collect();
    let spot = (!sim).then(|| marker_spot(devices[0].as_ref()));
    if let Some((region, offset, len)) = spot {
        devices[0].write_region(region, offset, &marker(len))?;
    }
    let mut src_drv = driver_for(devices[0].clone())?;
    let mut dst_drv = driver_for(devices[1].clone())?;
    let vcpu = Vcpu::start(mem.clone());

    let mut source = SourceSession::new(src_drv.as_mut())?;
    let mut target = DestinationSession::new(dst_drv.as_mut())?;
    source.check_target(&target)?;
    let mut rounds = 0;
    if source
        .driver()
        .flags()
        .has(vfio_harness::device::MigFlags::PRE_COPY)
    {
        source.start_precopy()?;
        while rounds < 8 {
            source.precopy_round(&mut target)?;
            rounds += 1;
            if source.precopy_info()?.total() <= 1 << 20 {
                break;
            }
        }
    }
    // Downtime starts: the guest stops, then the device.
    let t0 = std::time::Instant::now();
    let last = vcpu.pause()?;
    let mut check = [0u8; 8];
    mem.read_slice(&mut check, GuestAddress((last % 4096) * 8))?;
    if last > 0 && u64::from_ne_bytes(check) != last {
        return Err("the paused vCPU's last write is not in guest memory".into());
    }
    source.stop_copy()?;
    source.drain(&mut target)?;
    let sent = source.finish(EndState::Stop)?;
    target.finish(EndState::Running)?;
    let downtime_seconds = t0.elapsed().as_secs_f64();

    let source_state = src_drv.state()?;
    let destination_state = dst_drv.state()?;
    if source_state != MigState::Stop || destination_state != MigState::Running {
        return Err(format!("source {source_state}, destination {destination_state}").into());
    }
    let verified_by = match spot {
        None => "the simulated destination's verify-seed",
        Some((region, offset, len)) => {
            let mut got = vec![0u8; len];
            devices[1].read_region(region, offset, &mut got)?;
            if got != marker(len) {
                return Err(format!(
                    "the destination's region {region} at {offset:#x} does not hold the source's marker"
                )
                .into());
            }
            if region == 2 {
                "a 4 KiB marker in BAR2"
            } else {
                "a marker in BAR0 offset 7"
            }
        }
    };
    // The DMA mappings go first, then the devices, then the VMM's KVM-VFIO device and the
    // VM (before the memory registered in it).
    if let Some(d) = dma {
        d.unmap()?;
    }
    drop((src_drv, dst_drv, devices));
    drop(kvm_vfio);
    drop(vm);
    Ok(Outcome {
        rounds,
        precopy_bytes: sent.precopy_bytes,
        stopcopy_bytes: sent.stopcopy_bytes,
        downtime_seconds,
        source_state,
        destination_state,
        verified_by,
        kvm,
        kvm_note,
        dma: dma_regions,
    })
}

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (src, dst) = match args.as_slice() {
        [] => (DEFAULT_SPECS[0], DEFAULT_SPECS[1]),
        [s, d] => (s.as_str(), d.as_str()),
        _ => return Err("usage: vmm_handoff [SRC DST]".into()),
    };
    let o = run(src, dst)?;
    println!(
        "handoff {src} -> {dst}: {} pre-copy round(s), {} bytes pre-copied, {} bytes stop-copied, downtime {:.3} ms; source {}, destination {}; state verified by {}; KVM VM: {}",
        o.rounds,
        o.precopy_bytes,
        o.stopcopy_bytes,
        o.downtime_seconds * 1e3,
        o.source_state,
        o.destination_state,
        o.verified_by,
        if o.kvm { "yes" } else { "no (/dev/kvm absent)" },
    );
    if let Some(note) = &o.kvm_note {
        println!("KVM: {note}");
    }
    if !o.dma.is_empty() {
        let spans: Vec<String> = o
            .dma
            .iter()
            .map(|(g, iova, len)| format!("guest {g:#x} -> IOVA {iova:#x} len {len:#x}"))
            .collect();
        println!("DMA: guest memory mapped: {}", spans.join(", "));
    }
    println!("PASS vmm_handoff");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hands_off_on_the_simulator() {
        let o = super::run(super::DEFAULT_SPECS[0], super::DEFAULT_SPECS[1]).unwrap();
        assert_eq!(o.source_state, vfio_harness::device::MigState::Stop);
        assert_eq!(o.destination_state, vfio_harness::device::MigState::Running);
        assert!(o.stopcopy_bytes > 0);
        // The simulator has no IOMMU and no VFIO files: nothing is mapped or registered.
        assert!(o.dma.is_empty() && o.kvm_note.is_none());
        assert_eq!(o.kvm, std::path::Path::new("/dev/kvm").exists());
    }

    #[test]
    fn a_destination_expecting_another_state_refuses_it() {
        let e = super::run("sim:state=1M,seed=7", "sim:state=1M,verify-seed=8").unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
    }
}
