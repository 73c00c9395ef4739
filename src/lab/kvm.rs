//! Is KVM really usable here? A `/dev/kvm` that opens is not enough (this test bed has one whose
//! guests never run), so the probe runs one instruction in a real KVM guest: it creates a VM
//! with one page of memory holding `hlt`, points a vCPU at it in real mode and expects the
//! vCPU to exit with HLT within a few seconds.

use std::sync::mpsc;
use std::time::Duration;

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VcpuExit};

/// How long the probe guest may take to execute its single `hlt`.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs the probe guest in a thread and waits at most `timeout` for it. `Ok(())` means KVM
/// works; the error says why not (no device, ioctl refused, wrong exit, no answer).
pub fn probe(timeout: Duration) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    // A broken KVM may never return from KVM_RUN: the thread is then left behind (it ends
    // with the process) and the answer is "unusable".
    std::thread::Builder::new()
        .name("kvm-probe".into())
        .spawn(move || {
            let _ = tx.send(run_hlt_guest());
        })
        .map_err(|e| format!("cannot start the probe thread: {e}"))?;
    match rx.recv_timeout(timeout) {
        Ok(result) => result,
        Err(_) => Err(format!(
            "a KVM guest did not execute one instruction within {}s",
            timeout.as_secs()
        )),
    }
}

/// Guest memory for the probe: one anonymous page, unmapped on drop.
struct Page {
    addr: *mut libc::c_void,
    len: usize,
}

impl Page {
    fn new(len: usize) -> Result<Page, String> {
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_ANONYMOUS | libc::MAP_SHARED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(format!("mmap: {}", std::io::Error::last_os_error()));
        }
        Ok(Page { addr, len })
    }
}

impl Drop for Page {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `Page::new`.
        unsafe {
            libc::munmap(self.addr, self.len);
        }
    }
}

fn run_hlt_guest() -> Result<(), String> {
    const GUEST_ADDR: u64 = 0x1000;
    const MEM: usize = 0x1000;
    let kvm = Kvm::new().map_err(|e| format!("/dev/kvm: {e}"))?;
    let vm = kvm.create_vm().map_err(|e| format!("KVM_CREATE_VM: {e}"))?;
    let page = Page::new(MEM)?;
    // SAFETY: `page` is a valid mapping of MEM bytes that outlives the VM (dropped after it).
    unsafe {
        std::ptr::write_bytes(page.addr as *mut u8, 0xf4, MEM); // hlt everywhere
        vm.set_user_memory_region(kvm_userspace_memory_region {
            slot: 0,
            guest_phys_addr: GUEST_ADDR,
            memory_size: MEM as u64,
            userspace_addr: page.addr as u64,
            flags: 0,
        })
        .map_err(|e| format!("KVM_SET_USER_MEMORY_REGION: {e}"))?;
    }
    let mut vcpu = vm
        .create_vcpu(0)
        .map_err(|e| format!("KVM_CREATE_VCPU: {e}"))?;
    let mut sregs = vcpu
        .get_sregs()
        .map_err(|e| format!("KVM_GET_SREGS: {e}"))?;
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    vcpu.set_sregs(&sregs)
        .map_err(|e| format!("KVM_SET_SREGS: {e}"))?;
    let mut regs = vcpu.get_regs().map_err(|e| format!("KVM_GET_REGS: {e}"))?;
    regs.rip = GUEST_ADDR;
    regs.rflags = 2;
    vcpu.set_regs(&regs)
        .map_err(|e| format!("KVM_SET_REGS: {e}"))?;
    let outcome = match vcpu.run() {
        Ok(VcpuExit::Hlt) => Ok(()),
        Ok(other) => Err(format!("the probe guest exited with {other:?} instead of HLT")),
        Err(e) => Err(format!("KVM_RUN: {e}")),
    };
    drop(vcpu);
    drop(vm);
    drop(page);
    outcome
}
