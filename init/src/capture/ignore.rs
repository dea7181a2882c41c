//! What a capture leaves out: the original's `capture start … [include=nd]
//! [ignore=arp]`. Neighbor Discovery is left out by default, "so routine
//! address resolution does not disturb packet-count assertions"; ARP is
//! kept unless `ignore=arp`. The classes are defined in
//! `myinit_common::capture` (`IGNORE_ND`, `IGNORE_ARP`) and tested in the
//! kernel before any copy: by the TC programs (ebpf-programs'
//! capture.rs) and, for the AF_PACKET backend, by the classic BPF socket
//! filter built here.

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
    pub fn socket_filter(self, link_header: bool, snaplen: u32) -> Vec<libc::sock_filter> {
        let mut a = Asm::default();
        if self.bits() == 0 {
            a.ret(snaplen);
            return a.finish();
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
        a.label("accept");
        a.ret(snaplen);
        a.label("drop");
        a.ret(0);
        a.finish()
    }
}

// Classic BPF opcodes (linux/filter.h; libc has them as u32 constants).
const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_ST: u16 = 0x02;
const BPF_ALU: u16 = 0x04;
const BPF_JMP: u16 = 0x05;
const BPF_RET: u16 = 0x06;
const BPF_MISC: u16 = 0x07;
const BPF_H: u16 = 0x08;
const BPF_B: u16 = 0x10;
const BPF_IMM: u16 = 0x00;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MEM: u16 = 0x60;
const BPF_LEN: u16 = 0x80;
const BPF_ADD: u16 = 0x00;
const BPF_SUB: u16 = 0x10;
const BPF_LSH: u16 = 0x60;
const BPF_RSH: u16 = 0x70;
const BPF_W: u16 = 0x00;
const BPF_JA: u16 = 0x00;
const BPF_JEQ: u16 = 0x10;
const BPF_JGT: u16 = 0x20;
const BPF_JGE: u16 = 0x30;
const BPF_K: u16 = 0x00;
const BPF_X: u16 = 0x08;
const BPF_TAX: u16 = 0x00;
const BPF_TXA: u16 = 0x80;
/// Scratch memory slots: the next header, an extension header's length,
/// the EtherType after a VLAN tag.
const NEXT: u32 = 0;
const LENGTH: u32 = 1;
const ETHERTYPE: u32 = 2;

/// A tiny classic BPF assembler with labels: enough for the filter above
/// (forward jumps only, as classic BPF has).
#[derive(Default)]
struct Asm {
    code: Vec<libc::sock_filter>,
    labels: Vec<(String, usize)>,
    /// (instruction, label of jt, label of jf or None: the next one)
    jumps: Vec<(usize, String, Option<String>)>,
}

impl Asm {
    fn op(&mut self, code: u16, k: u32) {
        self.code.push(libc::sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        });
    }

    /// Goes on only if `n` bytes are left in the packet from X; else to
    /// `otherwise`. Clobbers A.
    fn need(&mut self, n: u32, otherwise: &str) {
        let (test, ok) = (
            format!("need{}", self.code.len()),
            format!("needok{}", self.code.len()),
        );
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
        self.labels.push((name.to_string(), self.code.len()));
    }

    fn cond(&mut self, kind: u16, k: u32, yes: &str, no: Option<&str>) {
        self.jumps
            .push((self.code.len(), yes.to_string(), no.map(str::to_string)));
        self.op(BPF_JMP | kind | BPF_K, k);
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

    /// An unconditional jump (its offset is in k).
    fn ja(&mut self, to: &str) {
        self.jumps.push((self.code.len(), to.to_string(), None));
        self.op(BPF_JMP | BPF_JA, 0);
    }

    fn finish(mut self) -> Vec<libc::sock_filter> {
        let at = |labels: &[(String, usize)], name: &str| {
            labels
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, at)| *at)
                .unwrap_or_else(|| panic!("classic BPF label {name} is not defined"))
        };
        for (i, yes, no) in std::mem::take(&mut self.jumps) {
            let offset = |target: usize| {
                assert!(target > i, "classic BPF jumps go forward ({yes} at {i})");
                target - i - 1
            };
            let yes = offset(at(&self.labels, &yes));
            let insn = &mut self.code[i];
            if insn.code == BPF_JMP | BPF_JA {
                insn.k = yes as u32;
                continue;
            }
            let no = no.map_or(0, |n| offset(at(&self.labels, &n)));
            // Conditional offsets are 8 bits: the filter above stays short.
            insn.jt = u8::try_from(yes).expect("short jump");
            insn.jf = u8::try_from(no).expect("short jump");
        }
        self.code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let (mut a, mut x, mut mem) = (0u32, 0u32, [0u32; 16]);
        let mut pc = 0;
        let load = |at: usize, size: usize| -> Option<u32> {
            let b = packet.get(at..at + size)?;
            Some(b.iter().fold(0, |v, &b| (v << 8) | u32::from(b)))
        };
        loop {
            let i = filter[pc];
            pc += 1;
            let size = match i.code & 0x18 {
                BPF_H => 2,
                BPF_B => 1,
                _ => 4,
            };
            match i.code & 0x07 {
                0x00 => {
                    let v = match i.code & 0xe0 {
                        BPF_LEN => Some(packet.len() as u32),
                        BPF_ABS => load(i.k as usize, size),
                        BPF_IND => load((x as usize).wrapping_add(i.k as i32 as usize), size),
                        BPF_MEM => Some(mem[i.k as usize]),
                        _ => Some(i.k),
                    };
                    // Out of the packet: the kernel ends the filter with 0.
                    let Some(v) = v else { return 0 };
                    a = v;
                }
                0x01 => {
                    x = match i.code & 0xe0 {
                        BPF_MEM => mem[i.k as usize],
                        _ => i.k,
                    }
                }
                0x02 => mem[i.k as usize] = a,
                0x04 => {
                    let v = if i.code & BPF_X != 0 { x } else { i.k };
                    a = match i.code & 0xf0 {
                        BPF_ADD => a.wrapping_add(v),
                        BPF_SUB => a.wrapping_sub(v),
                        BPF_LSH => a << v,
                        BPF_RSH => a >> v,
                        other => panic!("ALU op {other:#x}"),
                    }
                }
                0x05 => {
                    let taken = match i.code & 0xf0 {
                        BPF_JA => {
                            pc += i.k as usize;
                            continue;
                        }
                        BPF_JEQ => a == i.k,
                        BPF_JGT => a > i.k,
                        BPF_JGE => a >= i.k,
                        other => panic!("jump {other:#x}"),
                    };
                    pc += usize::from(if taken { i.jt } else { i.jf });
                }
                0x06 => return i.k,
                0x07 => {
                    if i.code & BPF_TXA != 0 {
                        a = x
                    } else {
                        x = a
                    }
                }
                other => panic!("class {other}"),
            }
        }
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
            let filter = Ignore::default().socket_filter(link, 1514);
            for (what, packet, left_out) in cases {
                let got = run(&filter, &frame(packet));
                let want = if *left_out { 0 } else { 1514 };
                assert_eq!(got, want, "{what} (link header: {link})");
            }
            let keep_all = Ignore {
                nd: false,
                arp: false,
            }
            .socket_filter(link, 1514);
            assert_eq!(keep_all.len(), 1);
            assert_eq!(run(&keep_all, &frame(&nd)), 1514);
            let include_nd = Ignore {
                nd: false,
                arp: true,
            }
            .socket_filter(link, 99);
            assert_eq!(run(&include_nd, &frame(&nd)), 99);
        }
        // ARP, and ND behind VLAN tags still in the frame.
        let arp = ethernet(0x0806, &[], &[0; 28]);
        let ignore_arp = Ignore {
            nd: true,
            arp: true,
        }
        .socket_filter(true, 1514);
        assert_eq!(run(&ignore_arp, &arp), 0);
        assert_eq!(
            run(&Ignore::default().socket_filter(true, 1514), &arp),
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
            run(&Ignore::default().socket_filter(false, 1514), &[]),
            1514
        );
    }
}
