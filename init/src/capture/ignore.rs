//! What a capture leaves out: the original's `capture start … [include=nd]
//! [ignore=arp]`. Neighbor Discovery is left out by default, "so routine
//! address resolution does not disturb packet-count assertions"; ARP is
//! kept unless `ignore=arp`. The classes are defined in
//! `myinit_common::capture` (`IGNORE_ND`, `IGNORE_ARP`) and tested in the
//! kernel before any copy: by the TC programs (ebpf-programs'
//! capture.rs) and, for the AF_PACKET backend, by the classic BPF socket
//! filter built here.

use std::collections::HashMap;

use crate::filter::bpf::{
    Builder, Label, BPF_ABS, BPF_ADD, BPF_ALU, BPF_B, BPF_H, BPF_IMM, BPF_IND, BPF_JEQ, BPF_JGE,
    BPF_JGT, BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_LSH, BPF_MEM, BPF_MISC, BPF_RET,
    BPF_RSH, BPF_ST, BPF_SUB, BPF_TAX, BPF_TXA, BPF_W, BPF_X,
};
use crate::filter::LiveFilter;
use myinit_common::capture::{IGNORE_ARP, IGNORE_ND, ND_EXTENSION_HEADERS};

/// The classes left out. The default is the original's: ND.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ignore {
    pub nd: bool,
    pub arp: bool,
}

impl Default for Ignore {
    fn default() -> Self {
        Ignore {
            nd: true,
            arp: false,
        }
    }
}

impl Ignore {
    /// Applies one `include=LIST` or `ignore=LIST` word (also `--include=`
    /// and `--ignore=`; LIST is `nd`, `arp` or both, comma-separated), in
    /// the order the words come, as the original does. `Ok(false)`: not
    /// such a word. The errors are the original's.
    pub fn apply(&mut self, word: &str) -> Result<bool, String> {
        let word = word.strip_prefix("--").unwrap_or(word);
        let (keep, list) = if let Some(list) = word.strip_prefix("include=") {
            (true, list)
        } else if let Some(list) = word.strip_prefix("ignore=") {
            (false, list)
        } else {
            return Ok(false);
        };
        let what = if keep { "include" } else { "ignore" };
        if list.is_empty() {
            return Err(format!("{what} list must not be empty"));
        }
        for class in list.split(',') {
            match class {
                "nd" => self.nd = !keep,
                "arp" => self.arp = !keep,
                other => return Err(format!("unknown capture {what} class {other:?}")),
            }
        }
        Ok(true)
    }

    /// The `IGNORE_*` bits the TC programs take.
    pub fn bits(self) -> u8 {
        (if self.nd { IGNORE_ND } else { 0 }) | (if self.arp { IGNORE_ARP } else { 0 })
    }

    /// `nd`, `nd,arp`, `arp` or `` (the original's order).
    pub fn names(self) -> String {
        let mut names = Vec::new();
        if self.nd {
            names.push("nd");
        }
        if self.arp {
            names.push("arp");
        }
        names.join(",")
    }

    /// A classic BPF socket filter that accepts `snaplen` bytes of every
    /// packet but those of the ignored classes (0 bytes: not queued at
    /// all). `link_header`: the packet data starts with an Ethernet
    /// header (else with the IP header, on TUN-like interfaces). A VLAN
    /// tag the device took out of the frame is not in the data; up to two
    /// tags still in it are skipped.
    pub fn socket_filter(
        self,
        link_header: bool,
        snaplen: u32,
        filter: Option<&LiveFilter>,
    ) -> Vec<libc::sock_filter> {
        let mut a = Asm::default();
        if self.bits() == 0 {
            if filter.is_none() {
                a.ret(snaplen);
                return a.finish();
            }
            return a.accept(snaplen, filter);
        }
        // A load past the packet's end would end the filter with 0 (the
        // packet left out): every load is guarded by the length.
        if link_header {
            // A = EtherType, X = where the network header starts.
            a.op(BPF_LDX | BPF_IMM, 0);
            a.need(14, "accept");
            a.op(BPF_LD | BPF_H | BPF_ABS, 12);
            a.op(BPF_LDX | BPF_IMM, 14);
            for tag in 0..2 {
                let next = format!("untagged{tag}");
                for tpid in [0x8100, 0x88a8, 0x9100] {
                    a.jeq(tpid, &format!("tag{tag}"), None);
                }
                a.ja(&next);
                a.label(&format!("tag{tag}"));
                a.need(8, "accept");
                // The EtherType after the tag, kept while X moves past it.
                a.op(BPF_LD | BPF_H | BPF_IND, 2);
                a.op(BPF_ST, ETHERTYPE);
                a.op(BPF_MISC | BPF_TXA, 0);
                a.op(BPF_ALU | BPF_ADD | BPF_K, 4);
                a.op(BPF_MISC | BPF_TAX, 0);
                a.op(BPF_LD | BPF_MEM, ETHERTYPE);
                a.label(&next);
            }
            if self.arp {
                a.jeq(0x0806, "drop", None);
            }
            if !self.nd {
                a.ja("accept");
            }
            a.jeq(0x86dd, "ipv6", Some("accept"));
        } else {
            a.op(BPF_LDX | BPF_IMM, 0);
            a.need(1, "accept");
            a.op(BPF_LD | BPF_B | BPF_ABS, 0);
            a.op(BPF_ALU | BPF_RSH | BPF_K, 4);
            if !self.nd {
                a.ja("accept");
            }
            a.jeq(6, "ipv6", Some("accept"));
        }
        // IPv6 at X: hop limit 255, then the extension headers to ICMPv6.
        a.label("ipv6");
        a.need(40, "accept");
        a.op(BPF_LD | BPF_B | BPF_IND, 7);
        a.jeq(255, "hop255", Some("accept"));
        a.label("hop255");
        a.op(BPF_LD | BPF_B | BPF_IND, 6);
        a.op(BPF_ST, NEXT);
        a.op(BPF_MISC | BPF_TXA, 0);
        a.op(BPF_ALU | BPF_ADD | BPF_K, 40);
        a.op(BPF_MISC | BPF_TAX, 0);
        for step in 0..ND_EXTENSION_HEADERS {
            let (eight, four, next) = (
                format!("ext8_{step}"),
                format!("ext4_{step}"),
                format!("step{}", step + 1),
            );
            a.op(BPF_LD | BPF_MEM, NEXT);
            a.jeq(58, "icmpv6", None);
            for header in [0, 43, 60] {
                a.jeq(header, &eight, None);
            }
            a.jeq(51, &four, Some("accept"));
            // The header's length, X moved past it, its next header kept.
            for (label, add, shift) in [(&eight, 1, 3), (&four, 2, 2)] {
                a.label(label);
                a.need(2, "accept");
                a.op(BPF_LD | BPF_B | BPF_IND, 0);
                a.op(BPF_ST, NEXT);
                a.op(BPF_LD | BPF_B | BPF_IND, 1);
                a.op(BPF_ALU | BPF_ADD | BPF_K, add);
                a.op(BPF_ALU | BPF_LSH | BPF_K, shift);
                a.op(BPF_ST, LENGTH);
                a.op(BPF_MISC | BPF_TXA, 0);
                a.op(BPF_LDX | BPF_MEM, LENGTH);
                a.op(BPF_ALU | BPF_ADD | BPF_X, 0);
                a.op(BPF_MISC | BPF_TAX, 0);
                a.ja(&next);
            }
            a.label(&next);
        }
        a.ja("accept");
        a.label("icmpv6");
        a.need(2, "accept");
        a.op(BPF_LD | BPF_B | BPF_IND, 0);
        a.jge(133, "type_low_ok", "accept");
        a.label("type_low_ok");
        a.jgt(137, "accept", "type_ok");
        a.label("type_ok");
        a.op(BPF_LD | BPF_B | BPF_IND, 1);
        a.jeq(0, "drop", Some("accept"));
        a.accept(snaplen, filter)
    }
}

/// Scratch memory slots: the next header, an extension header's length,
/// the EtherType after a VLAN tag.
const NEXT: u32 = 0;
const LENGTH: u32 = 1;
const ETHERTYPE: u32 = 2;

/// Named labels over the filter module's classic BPF builder, for the
/// program above (written with names, as it reads best).
#[derive(Default)]
struct Asm {
    b: Builder,
    labels: HashMap<String, Label>,
}

impl Asm {
    fn at(&mut self, name: &str) -> Label {
        if let Some(l) = self.labels.get(name) {
            return *l;
        }
        let l = self.b.label();
        self.labels.insert(name.to_string(), l);
        l
    }

    fn op(&mut self, code: u16, k: u32) {
        self.b.stmt(code, k);
    }

    /// Goes on only if `n` bytes are left in the packet from X; else to
    /// `otherwise`. Clobbers A.
    fn need(&mut self, n: u32, otherwise: &str) {
        let test = format!("need{}", self.labels.len());
        let ok = format!("needok{}", self.labels.len());
        self.op(BPF_LD | BPF_W | BPF_LEN, 0);
        self.op(BPF_ALU | BPF_SUB | BPF_X, 0);
        // A wrapped below 0 (X past the end) is a large number: also no.
        self.jgt(0xffff, otherwise, &test);
        self.label(&test);
        self.jge(n, &ok, otherwise);
        self.label(&ok);
    }

    fn ret(&mut self, k: u32) {
        self.op(BPF_RET | BPF_K, k);
    }

    fn label(&mut self, name: &str) {
        let l = self.at(name);
        self.b.mark(l);
    }

    /// A conditional jump; `no` None: the next instruction.
    fn cond(&mut self, kind: u16, k: u32, yes: &str, no: Option<&str>) {
        let yes = self.at(yes);
        let (no, next) = match no {
            Some(n) => (self.at(n), None),
            None => {
                let l = self.b.label();
                (l, Some(l))
            }
        };
        self.b.cond(BPF_JMP | kind | BPF_K, k, yes, no);
        if let Some(l) = next {
            self.b.mark(l);
        }
    }

    fn jeq(&mut self, k: u32, yes: &str, no: Option<&str>) {
        self.cond(BPF_JEQ, k, yes, no);
    }

    fn jge(&mut self, k: u32, yes: &str, no: &str) {
        self.cond(BPF_JGE, k, yes, Some(no));
    }

    fn jgt(&mut self, k: u32, yes: &str, no: &str) {
        self.cond(BPF_JGT, k, yes, Some(no));
    }

    fn ja(&mut self, to: &str) {
        let l = self.at(to);
        self.b.ja(l);
    }

    /// What is not left out goes through the user's filter, if any, and
    /// is kept with `snaplen` bytes.
    fn accept(mut self, snaplen: u32, filter: Option<&LiveFilter>) -> Vec<libc::sock_filter> {
        self.label("accept");
        if let Some(f) = filter {
            let (keep, drop) = (self.at("keep"), self.at("drop"));
            // Checked to fit when the filter was compiled.
            let _ = crate::filter::gen::emit(&f.expr, f.link, &mut self.b, keep, drop);
            self.label("keep");
        }
        self.ret(snaplen);
        self.label("drop");
        self.ret(0);
        self.finish()
    }

    fn finish(self) -> Vec<libc::sock_filter> {
        self.b
            .finish()
            .into_iter()
            .map(|i| libc::sock_filter {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::bpf;

    #[test]
    fn include_and_ignore_words_apply_left_to_right() {
        let mut i = Ignore::default();
        assert_eq!(i.names(), "nd");
        assert_eq!(i.apply("ignore=arp"), Ok(true));
        assert_eq!(i.names(), "nd,arp");
        assert_eq!(i.apply("--include=nd,arp"), Ok(true));
        assert_eq!(i.names(), "");
        assert_eq!(i.apply("ignore=nd"), Ok(true));
        assert_eq!(i.apply("include=nd"), Ok(true));
        assert_eq!(i.names(), "");
        assert_eq!(i.apply("pcap"), Ok(false));
        assert_eq!(
            i.apply("ignore=dns"),
            Err("unknown capture ignore class \"dns\"".into())
        );
        assert_eq!(
            i.apply("include="),
            Err("include list must not be empty".into())
        );
    }

    /// Runs a classic filter the way the kernel does, on `packet`.
    fn run(filter: &[libc::sock_filter], packet: &[u8]) -> u32 {
        let program: Vec<bpf::Insn> = filter
            .iter()
            .map(|i| bpf::Insn {
                code: i.code,
                jt: i.jt,
                jf: i.jf,
                k: i.k,
            })
            .collect();
        bpf::run(&program, packet, packet.len() as u32)
    }

    fn ipv6(next: u8, hop_limit: u8, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, 0, payload.len() as u8, next, hop_limit];
        p.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 2]);
        p.extend_from_slice(payload);
        p
    }

    fn ethernet(ethertype: u16, tags: &[u16], payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x33, 0x33, 0, 0, 0, 1, 2, 0, 0, 0, 0, 1];
        for tpid in tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&[0, 7]);
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn the_socket_filter_leaves_out_what_the_classes_say() {
        let ns = |typ: u8, code: u8| {
            let mut body = vec![typ, code, 0, 0];
            body.resize(24, 0);
            body
        };
        let nd = ipv6(58, 255, &ns(135, 0));
        let hbh_nd = ipv6(
            0,
            255,
            &[&[58, 0, 5, 2, 0, 0, 1, 0][..], &ns(133, 0)].concat(),
        );
        let frag = ipv6(
            44,
            255,
            &[&[58, 0, 0, 0, 0, 0, 0, 1][..], &ns(135, 0)].concat(),
        );
        let cases: &[(&str, Vec<u8>, bool)] = &[
            ("NS", nd.clone(), true),
            ("RA behind hop-by-hop", hbh_nd, true),
            ("a fragment is never ND", frag, false),
            ("hop limit 64", ipv6(58, 64, &ns(135, 0)), false),
            ("code 1", ipv6(58, 255, &ns(136, 1)), false),
            ("echo request", ipv6(58, 255, &ns(128, 0)), false),
            ("redirect (137)", ipv6(58, 255, &ns(137, 0)), true),
            ("type 138", ipv6(58, 255, &ns(138, 0)), false),
            ("UDP", ipv6(17, 255, &[0; 8]), false),
            ("truncated", nd[..41].to_vec(), false),
        ];
        for link in [true, false] {
            let frame = |p: &[u8]| {
                if link {
                    ethernet(0x86dd, &[], p)
                } else {
                    p.to_vec()
                }
            };
            let filter = Ignore::default().socket_filter(link, 1514, None);
            for (what, packet, left_out) in cases {
                let got = run(&filter, &frame(packet));
                let want = if *left_out { 0 } else { 1514 };
                assert_eq!(got, want, "{what} (link header: {link})");
            }
            let keep_all = Ignore {
                nd: false,
                arp: false,
            }
            .socket_filter(link, 1514, None);
            assert_eq!(keep_all.len(), 1);
            assert_eq!(run(&keep_all, &frame(&nd)), 1514);
            let include_nd = Ignore {
                nd: false,
                arp: true,
            }
            .socket_filter(link, 99, None);
            assert_eq!(run(&include_nd, &frame(&nd)), 99);
        }
        // ARP, and ND behind VLAN tags still in the frame.
        let arp = ethernet(0x0806, &[], &[0; 28]);
        let ignore_arp = Ignore {
            nd: true,
            arp: true,
        }
        .socket_filter(true, 1514, None);
        assert_eq!(run(&ignore_arp, &arp), 0);
        assert_eq!(
            run(&Ignore::default().socket_filter(true, 1514, None), &arp),
            1514
        );
        assert_eq!(run(&ignore_arp, &ethernet(0x0806, &[0x8100], &[0; 28])), 0);
        for tags in [&[0x8100][..], &[0x88a8, 0x8100]] {
            let tagged = ethernet(0x86dd, tags, &nd);
            assert_eq!(run(&ignore_arp, &tagged), 0, "{tags:x?}");
        }
        assert_eq!(run(&ignore_arp, &ethernet(0x0800, &[], &[0x45; 20])), 1514);
        // Too short to tell: kept, never cut off by a load past the end.
        assert_eq!(run(&ignore_arp, &[0xff; 10]), 1514);
        assert_eq!(
            run(&Ignore::default().socket_filter(false, 1514, None), &[]),
            1514
        );
    }
}
