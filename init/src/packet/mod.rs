//! The packet model shared by the commands that read, write and send
//! packets: pcap/pcapng records and writers, link types and interface
//! types, MAC addresses, and the layer model with its JSONL form.

pub mod jsonl;
pub mod layers;
pub mod linktype;
pub mod mac;
pub mod pcap;
// capture and json2pcap are the writers' users to come; tests use them now.
#[cfg_attr(not(test), allow(dead_code))]
pub mod pcap_writer;

pub use mac::MacAddr;
