//! Network checks from the shell: `ping` (ICMP/ICMPv6 echo, iputils'
//! output) and `nc` (a TCP/UDP netcat), on the plumbing of `net/`.

pub mod netcat;
pub mod ping;
