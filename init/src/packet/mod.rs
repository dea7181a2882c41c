//! The packet model shared by the commands that read, write and send
//! packets: pcap/pcapng records and writers, link types and interface
//! types, MAC addresses, and the layer model with its JSONL form.

pub mod jsonl;
pub mod layers;
pub mod linktype;
pub mod mac;
pub mod pcap;
// json2pcap uses the writers; capture, their other user, is to come.
#[cfg_attr(not(test), allow(dead_code))]
pub mod pcap_writer;

pub use mac::MacAddr;
