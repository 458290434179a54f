//! The test guest outside the tests (for `examples/demo.sh`): writes the testbed's
//! initramfs (static busybox, the virtio-net modules, `/init`, the udhcpc hook) with SCRIPT
//! as the `/test.sh` that `/init` runs, and prints where kernel and initramfs are:
//!
//! ```text
//! netbind-guest-image OUT_DIR SCRIPT
//! kernel /var/cache/netbind-testbed/<version>/vmlinux
//! initrd OUT_DIR/initrd.img
//! ```
//!
//! Boot them with `qemu-system-x86_64 -kernel K -initrd I -append "console=ttyS0 panic=-1"`
//! and `-no-reboot`: the guest powers off once SCRIPT ends. Needs root (the kernel is
//! fetched into /var/cache/netbind-testbed by scripts/fetch-guest-kernel.sh when missing).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, script] = args.as_slice() else {
        eprintln!("usage: netbind-guest-image OUT_DIR SCRIPT");
        return ExitCode::from(2);
    };
    let script = match std::fs::read_to_string(script) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("netbind-guest-image: cannot read {script}: {e}");
            return ExitCode::from(2);
        }
    };
    let image = match netbind_testbed::GuestImage::get() {
        Ok(i) => i,
        Err(e) => {
            eprintln!("netbind-guest-image: {e:?}");
            return ExitCode::FAILURE;
        }
    };
    let initrd = PathBuf::from(out).join("initrd.img");
    if let Err(e) = std::fs::write(&initrd, image.initramfs_with(&script)) {
        eprintln!(
            "netbind-guest-image: cannot write {}: {e}",
            initrd.display()
        );
        return ExitCode::FAILURE;
    }
    println!("kernel {}", image.kernel.display());
    println!("initrd {}", initrd.display());
    ExitCode::SUCCESS
}
