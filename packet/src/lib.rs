//! The packet model shared by the commands that read, write and send
//! packets: pcap/pcapng records and writers, link types and interface
//! types, MAC addresses, and the layer model with its JSONL form. A crate
//! of its own so that the test kit and the bench build frames on it
//! without building myinit's eBPF programs.

pub mod convert;
pub mod edit;
pub mod files;
pub mod jsonl;
pub mod layers;
pub mod linktype;
pub mod mac;
pub mod pcap;
pub mod pcap_writer;

pub use mac::MacAddr;

/// An I/O error as users read it: "No such file or directory", without
/// std's "(os error 2)" suffix.
pub fn io_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}
