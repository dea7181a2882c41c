//! Classic BPF → eBPF, at run time, for the hooks a socket filter cannot
//! reach: TC (capture's eBPF backend) and the kfree_skb tracer. The
//! translated program is the filter alone. On a match it tail-calls the
//! capability's own program through a `PROG_ARRAY` slot (the context is
//! handed on untouched); on a miss it returns the hook's "not mine"
//! value, so nothing is reserved or copied for a packet it rejects. The
//! capability's entry program tail-calls the filter first.
//!
//! Registers: r6 the context, r7 A, r8 X, r9 where the packet starts (an
//! offset into the skb's data at TC, a kernel address in the tracer);
//! the scratch words M[] live on the stack. Loads go through a helper
//! (`bpf_skb_load_bytes` at TC, `bpf_probe_read_kernel` in the tracer),
//! so a load past what can be read rejects the packet, as in classic BPF,
//! instead of ending the program with 0 (`TC_ACT_OK` would end a TCX
//! chain). Comparisons are 32-bit (JMP32), as classic BPF's.

use thiserror::Error;

use super::bpf::{self, Insn as CInsn};
use crate::ebpf::raw::Insn;

/// The largest filter translated, in classic instructions (the cap of
/// pwru, ptcpdump and retis, and of the kernel's own classic filters).
use super::gen::MAX_INSNS as MAX_CLASSIC;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TranslateError {
    #[error("the filter is {0} classic BPF instructions; at most {MAX_CLASSIC} are taken")]
    TooLong(usize),
    #[error("classic instruction {0} ({1:#06x}) has no eBPF translation here")]
    Unsupported(usize, u16),
    #[error("the filter's eBPF translation is too long for eBPF's jumps")]
    JumpTooFar,
}

/// Where the packet's bytes are and how the verdict goes on.
#[derive(Clone, Copy, Debug)]
pub enum Hook {
    /// A TC classifier (`__sk_buff` context). `base_map`: a per-CPU array
    /// whose element 0 holds (base, len) of the packet in the skb's data,
    /// set by the entry program (L3 interfaces, where the packet need not
    /// start at the data); None: the data is the packet.
    Tc { base_map: Option<i32> },
    /// `kfree_skb` in the tracer: the packet from the MAC header when a
    /// 14-byte one is set before the network header (the Ethernet
    /// variant), else from the network header (the raw-IP variant): the
    /// bytes `droptrace save` writes. Only the linear data is read.
    Tracer { skb: SkbSource, offsets: SkbFields },
}

/// How the tracer's program finds the `sk_buff`.
#[derive(Clone, Copy, Debug)]
pub enum SkbSource {
    /// tp_btf: the first argument, a BTF pointer whose members are plain
    /// loads.
    BtfArg,
    /// The classic tracepoint: the record's `skbaddr` at this offset, a
    /// number read through `bpf_probe_read_kernel`.
    Record(u32),
}

/// Member offsets of `struct sk_buff` (from the running kernel's BTF).
#[derive(Clone, Copy, Debug)]
pub struct SkbFields {
    pub head: u32,
    pub data: u32,
    pub len: u32,
    pub tail: u32,
    pub network_header: u32,
    pub mac_header: u32,
}

/// What the program does once it has a verdict.
#[derive(Clone, Copy, Debug)]
pub enum Verdict {
    /// Match: tail-call slot `index` of the PROG_ARRAY `map` (an fd); if
    /// that fails, and on a miss: return `miss`.
    TailCall { map: i32, index: u32, miss: i32 },
    /// Return 1 on a match, 0 on a miss (tests and benches).
    Return,
}

// eBPF opcodes (include/uapi/linux/bpf.h, bpf_common.h).
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const JMP32: u8 = 0x06;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const K: u8 = 0x00;
const X: u8 = 0x08;
const MOV: u8 = 0xb0;
const ADD: u8 = 0x00;
const SUB: u8 = 0x10;
const AND: u8 = 0x50;
const LSH: u8 = 0x60;
const END_TO_BE: u8 = 0xd8;
const JA: u8 = 0x00;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JNE: u8 = 0x50;
const JLE: u8 = 0xb0;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;
const PSEUDO_MAP_FD: u8 = 1;

const HELPER_MAP_LOOKUP: i32 = 1;
const HELPER_TAIL_CALL: i32 = 12;
const HELPER_SKB_LOAD_BYTES: i32 = 26;
const HELPER_PROBE_READ_KERNEL: i32 = 113;

/// `__sk_buff` members (UAPI): len, vlan_present, vlan_tci, data, data_end.
const SKB_CTX_LEN: i16 = 0;
const SKB_CTX_VLAN_PRESENT: i16 = 20;
const SKB_CTX_VLAN_TCI: i16 = 24;
const SKB_CTX_DATA: i16 = 76;
const SKB_CTX_DATA_END: i16 = 80;
/// Classic BPF's ancillary loads (SKF_AD_OFF + n) that have a TC form.
const SKF_AD_OFF: u32 = 0xffff_f000;
const SKF_AD_VLAN_TAG: u32 = 44;
const SKF_AD_VLAN_TAG_PRESENT: u32 = 48;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const CTX: u8 = 6;
const A: u8 = 7;
const XR: u8 = 8;
const BASE: u8 = 9;
const FP: u8 = 10;

// Stack slots (negative offsets from the frame pointer).
const BUF: i16 = -8;
const KEY: i16 = -16;
const LINEAR: i16 = -24;
const PKT_LEN: i16 = -32;
const HEAD: i16 = -40;
const DATA: i16 = -48;
const SKB_LEN: i16 = -56;
const TAIL: i16 = -64;
const NETWORK: i16 = -72;
const MAC: i16 = -80;
const SKB: i16 = -88;
const VARIANT: i16 = -96;
const MEM_BASE: i16 = -104;

/// A `skb->*_header` value meaning "not set".
const HEADER_UNSET: i32 = 0xffff;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Label(usize);

struct Asm {
    code: Vec<Insn>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn new() -> Self {
        Asm {
            code: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
        }
    }

    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn mark(&mut self, l: Label) {
        self.labels[l.0] = Some(self.code.len());
    }

    fn raw(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        });
    }

    fn mov64(&mut self, dst: u8, src: u8) {
        self.raw(ALU64 | MOV | X, dst, src, 0, 0);
    }

    fn mov32_imm(&mut self, dst: u8, imm: u32) {
        self.raw(ALU | MOV | K, dst, 0, 0, imm as i32);
    }

    fn add64_imm(&mut self, dst: u8, imm: i32) {
        self.raw(ALU64 | ADD | K, dst, 0, 0, imm);
    }

    fn load(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.raw(LDX | MEM | size, dst, src, off, 0);
    }

    /// A big-endian value of `size` at `src + off` into `dst`, in host order.
    fn load_network_order(&mut self, size: u8, dst: u8, src: u8, off: i16) {
        self.load(size, dst, src, off);
        let bits = match size {
            W => 32,
            H => 16,
            _ => return,
        };
        self.raw(ALU | END_TO_BE, dst, 0, 0, bits);
    }

    fn store(&mut self, size: u8, dst: u8, off: i16, src: u8) {
        self.raw(STX | MEM | size, dst, src, off, 0);
    }

    fn store_imm(&mut self, size: u8, dst: u8, off: i16, imm: i32) {
        self.raw(ST | MEM | size, dst, 0, off, imm);
    }

    fn call(&mut self, helper: i32) {
        self.raw(JMP | CALL, 0, 0, 0, helper);
    }

    fn exit(&mut self) {
        self.raw(JMP | EXIT, 0, 0, 0, 0);
    }

    fn jump(&mut self, code: u8, dst: u8, src: u8, imm: i32, to: Label) {
        self.fixups.push((self.code.len(), to));
        self.raw(code, dst, src, 0, imm);
    }

    /// Whether any jump goes to `l`.
    fn used(&self, l: Label) -> bool {
        self.fixups.iter().any(|&(_, to)| to == l)
    }

    fn ja(&mut self, to: Label) {
        self.jump(JMP | JA, 0, 0, 0, to);
    }

    fn ld_map_fd(&mut self, dst: u8, fd: i32) {
        self.raw(LD | IMM | DW, dst, PSEUDO_MAP_FD, 0, fd);
        self.raw(0, 0, 0, 0, 0);
    }

    fn finish(mut self) -> Result<Vec<Insn>, TranslateError> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            let target = self.labels[label.0].expect("every label is marked");
            let off = target as i64 - at as i64 - 1;
            self.code[at].off = i16::try_from(off).map_err(|_| TranslateError::JumpTooFar)?;
        }
        Ok(self.code)
    }
}

fn size_of(code: u16) -> (u8, i32) {
    match code & 0x18 {
        bpf::BPF_W => (W, 4),
        bpf::BPF_H => (H, 2),
        _ => (B, 1),
    }
}

/// Translates `ethernet` (and, for the tracer, `raw`: the raw-IP variant,
/// None when the expression has none, so such packets never match).
pub fn translate(
    ethernet: &[CInsn],
    raw: Option<&[CInsn]>,
    hook: Hook,
    verdict: Verdict,
) -> Result<Vec<Insn>, TranslateError> {
    for p in std::iter::once(ethernet).chain(raw) {
        if p.len() > MAX_CLASSIC {
            return Err(TranslateError::TooLong(p.len()));
        }
    }
    let mut t = Translator {
        asm: Asm::new(),
        hook,
        matched: Label(0),
        reject: Label(0),
    };
    t.matched = t.asm.label();
    t.reject = t.asm.label();
    t.asm.mov64(CTX, R1);
    match hook {
        Hook::Tc { base_map } => {
            if let Some(map) = base_map {
                // (base, len) the entry program left for this packet.
                t.asm.store_imm(W, FP, KEY, 0);
                t.asm.ld_map_fd(R1, map);
                t.asm.mov64(R2, FP);
                t.asm.add64_imm(R2, KEY as i32);
                t.asm.call(HELPER_MAP_LOOKUP);
                t.asm.jump(JMP | JEQ | K, R0, 0, 0, t.reject);
                t.asm.load(W, BASE, R0, 0);
                t.asm.load(W, R1, R0, 4);
                t.asm.store(DW, FP, PKT_LEN, R1);
            }
            t.body(ethernet)?;
        }
        Hook::Tracer { skb, offsets } => {
            let raw_body = t.asm.label();
            t.tracer_setup(skb, offsets);
            t.asm.load(DW, R0, FP, VARIANT);
            t.asm.jump(JMP | JNE | K, R0, 0, 0, raw_body);
            t.body(ethernet)?;
            t.asm.mark(raw_body);
            match raw {
                Some(raw) => t.body(raw)?,
                None => t.asm.ja(t.reject),
            }
        }
    }
    let (matched, reject) = (t.matched, t.reject);
    // A block no jump reaches is left out (the verifier refuses
    // unreachable code): `ret #0` alone never matches.
    let (any_match, any_reject) = (t.asm.used(matched), t.asm.used(reject));
    match verdict {
        Verdict::Return => {
            if any_match {
                t.asm.mark(matched);
                t.asm.mov32_imm(R0, 1);
                t.asm.exit();
            }
            if any_reject {
                t.asm.mark(reject);
                t.asm.mov32_imm(R0, 0);
                t.asm.exit();
            }
        }
        Verdict::TailCall { map, index, miss } => {
            if any_match {
                t.asm.mark(matched);
                t.asm.mov64(R1, CTX);
                t.asm.ld_map_fd(R2, map);
                t.asm.mov32_imm(R3, index);
                t.asm.call(HELPER_TAIL_CALL);
            }
            // Also where a failed tail call lands.
            t.asm.mark(reject);
            t.asm.raw(ALU64 | MOV | K, R0, 0, 0, miss);
            t.asm.exit();
        }
    }
    t.asm.finish()
}

/// Which instructions (and the end, at `program.len()`) can be reached
/// from the first.
fn reachable(program: &[CInsn]) -> Vec<bool> {
    let mut seen = vec![false; program.len() + 1];
    let mut todo = vec![0usize];
    while let Some(pc) = todo.pop() {
        if pc > program.len() || seen[pc] {
            continue;
        }
        seen[pc] = true;
        let Some(i) = program.get(pc) else {
            continue;
        };
        match i.code & 0x07 {
            bpf::BPF_RET => {}
            bpf::BPF_JMP if i.code & 0xf0 == bpf::BPF_JA => todo.push(pc + 1 + i.k as usize),
            bpf::BPF_JMP => {
                todo.push(pc + 1 + usize::from(i.jt));
                todo.push(pc + 1 + usize::from(i.jf));
            }
            _ => todo.push(pc + 1),
        }
    }
    seen
}

struct Translator {
    asm: Asm,
    hook: Hook,
    matched: Label,
    reject: Label,
}

impl Translator {
    /// Reads the skb's members into their stack slots, picks the variant
    /// and leaves BASE, LINEAR and PKT_LEN set (see Hook::Tracer).
    fn tracer_setup(&mut self, skb: SkbSource, f: SkbFields) {
        let a = &mut self.asm;
        match skb {
            SkbSource::BtfArg => a.load(DW, BASE, CTX, 0),
            SkbSource::Record(off) => a.load(DW, BASE, CTX, off as i16),
        }
        a.store(DW, FP, SKB, BASE);
        let members = [
            (HEAD, f.head, DW),
            (DATA, f.data, DW),
            (SKB_LEN, f.len, W),
            (TAIL, f.tail, W),
            (NETWORK, f.network_header, H),
            (MAC, f.mac_header, H),
        ];
        for (slot, off, size) in members {
            match skb {
                SkbSource::BtfArg => {
                    // A member of a BTF pointer: a plain load the verifier
                    // checks against BTF (fault-safe).
                    a.load(size, R1, BASE, off as i16);
                    a.store(DW, FP, slot, R1);
                }
                SkbSource::Record(_) => {
                    let bytes = match size {
                        DW => 8,
                        W => 4,
                        _ => 2,
                    };
                    a.store_imm(DW, FP, slot, 0);
                    a.mov64(R1, FP);
                    a.add64_imm(R1, slot as i32);
                    a.mov32_imm(R2, bytes);
                    a.load(DW, R3, FP, SKB);
                    a.add64_imm(R3, off as i32);
                    a.call(HELPER_PROBE_READ_KERNEL);
                    a.jump(JMP | JNE | K, R0, 0, 0, self.reject);
                    // The member's own size from the slot's start: right on
                    // either byte order.
                    a.load(size, R1, FP, slot);
                    a.store(DW, FP, slot, R1);
                }
            }
        }
        let raw_start = a.label();
        let common = a.label();
        a.load(DW, R1, FP, NETWORK);
        a.jump(JMP | JEQ | K, R1, 0, HEADER_UNSET, self.reject);
        a.load(DW, R2, FP, MAC);
        a.jump(JMP | JEQ | K, R2, 0, HEADER_UNSET, raw_start);
        a.jump(JMP | JLE | X, R1, R2, 0, raw_start);
        a.mov64(R4, R1);
        a.raw(ALU64 | SUB | X, R4, R2, 0, 0);
        a.jump(JMP | JNE | K, R4, 0, 14, raw_start);
        // Ethernet: from the MAC header.
        a.store_imm(DW, FP, VARIANT, 0);
        a.mov64(R1, R2);
        a.ja(common);
        a.mark(raw_start);
        a.store_imm(DW, FP, VARIANT, 1);
        a.mark(common);
        // R1: the start (an offset from head).
        a.load(DW, R2, FP, TAIL);
        a.jump(JMP | JLE | X, R2, R1, 0, self.reject);
        a.load(DW, R3, FP, HEAD);
        a.mov64(BASE, R3);
        a.raw(ALU64 | ADD | X, BASE, R1, 0, 0);
        // The packet's length from the start: skb->len counts from data.
        a.load(DW, R4, FP, DATA);
        a.raw(ALU64 | SUB | X, R4, R3, 0, 0);
        a.load(DW, R5, FP, SKB_LEN);
        a.raw(ALU | ADD | X, R5, R4, 0, 0);
        a.raw(ALU | SUB | X, R5, R1, 0, 0);
        a.store(DW, FP, PKT_LEN, R5);
        // Readable: the linear bytes from the start, at most the packet.
        a.raw(ALU64 | SUB | X, R2, R1, 0, 0);
        let fits = a.label();
        a.jump(JMP | JLE | X, R2, R5, 0, fits);
        a.mov64(R2, R5);
        a.mark(fits);
        a.store(DW, FP, LINEAR, R2);
    }

    /// One classic program, from A = X = 0 to its verdict.
    fn body(&mut self, program: &[CInsn]) -> Result<(), TranslateError> {
        let labels: Vec<Label> = (0..=program.len()).map(|_| self.asm.label()).collect();
        self.asm.mov32_imm(A, 0);
        self.asm.mov32_imm(XR, 0);
        // Classic BPF's scratch words start at 0 here (the kernel's own
        // checker refuses a read before a write; this makes it moot).
        for i in 0..bpf::MEMWORDS as i16 {
            self.asm.store_imm(DW, FP, MEM_BASE - 8 * i, 0);
        }
        // Only what can run: the verifier refuses unreachable code.
        let reachable = reachable(program);
        for (pc, i) in program.iter().enumerate() {
            if reachable[pc] {
                self.asm.mark(labels[pc]);
                self.insn(pc, i, &labels)?;
            }
        }
        // Falling off the end rejects.
        if reachable[program.len()] {
            self.asm.mark(labels[program.len()]);
            self.asm.ja(self.reject);
        }
        Ok(())
    }

    fn target(labels: &[Label], pc: usize, skip: u32) -> Result<Label, TranslateError> {
        let to = pc + 1 + skip as usize;
        labels
            .get(to)
            .copied()
            .ok_or(TranslateError::Unsupported(pc, 0))
    }

    fn insn(&mut self, pc: usize, i: &CInsn, labels: &[Label]) -> Result<(), TranslateError> {
        let unsupported = || TranslateError::Unsupported(pc, i.code);
        let class = i.code & 0x07;
        let mem_slot = |k: u32| MEM_BASE - 8 * (k as usize % bpf::MEMWORDS) as i16;
        match class {
            bpf::BPF_LD | bpf::BPF_LDX => {
                let dst = if class == bpf::BPF_LD { A } else { XR };
                match i.code & 0xe0 {
                    bpf::BPF_IMM => self.asm.mov32_imm(dst, i.k),
                    bpf::BPF_MEM => self.asm.load(DW, dst, FP, mem_slot(i.k)),
                    bpf::BPF_LEN => self.len(dst),
                    bpf::BPF_ABS if i.k >= SKF_AD_OFF => {
                        self.ancillary(dst, i.k - SKF_AD_OFF, pc, i.code)?
                    }
                    bpf::BPF_ABS => {
                        let (size, n) = size_of(i.code);
                        self.asm.mov32_imm(R2, i.k);
                        self.packet_load(dst, size, n);
                    }
                    bpf::BPF_IND if class == bpf::BPF_LD => {
                        let (size, n) = size_of(i.code);
                        self.asm.raw(ALU | MOV | X, R2, XR, 0, 0);
                        self.asm.raw(ALU | ADD | K, R2, 0, 0, i.k as i32);
                        self.packet_load(dst, size, n);
                    }
                    bpf::BPF_MSH if class == bpf::BPF_LDX => {
                        self.asm.mov32_imm(R2, i.k);
                        self.packet_load(XR, B, 1);
                        self.asm.raw(ALU | AND | K, XR, 0, 0, 0xf);
                        self.asm.raw(ALU | LSH | K, XR, 0, 0, 2);
                    }
                    _ => return Err(unsupported()),
                }
            }
            bpf::BPF_ST => self.asm.store(DW, FP, mem_slot(i.k), A),
            0x03 => self.asm.store(DW, FP, mem_slot(i.k), XR),
            bpf::BPF_ALU => {
                let op = (i.code & 0xf0) as u8;
                if op == bpf::BPF_NEG as u8 {
                    self.asm.raw(ALU | op, A, 0, 0, 0);
                    return Ok(());
                }
                let by_x = i.code & bpf::BPF_X != 0;
                let divides = op == bpf::BPF_DIV as u8 || op == bpf::BPF_MOD as u8;
                let shifts = op == bpf::BPF_LSH as u8 || op == bpf::BPF_RSH as u8;
                if by_x {
                    if divides {
                        // Classic BPF rejects on a division by zero.
                        self.asm.jump(JMP32 | JEQ | K, XR, 0, 0, self.reject);
                    }
                    self.asm.raw(ALU | op | X, A, XR, 0, 0);
                } else {
                    if (divides && i.k == 0) || (shifts && i.k >= 32) {
                        return Err(unsupported());
                    }
                    self.asm.raw(ALU | op | K, A, 0, 0, i.k as i32);
                }
            }
            bpf::BPF_JMP => {
                let op = (i.code & 0xf0) as u8;
                if op == bpf::BPF_JA as u8 {
                    let to = Self::target(labels, pc, i.k)?;
                    self.asm.ja(to);
                    return Ok(());
                }
                let t = Self::target(labels, pc, u32::from(i.jt))?;
                let f = Self::target(labels, pc, u32::from(i.jf))?;
                let (src, imm, x) = if i.code & bpf::BPF_X != 0 {
                    (XR, 0, X)
                } else {
                    (0, i.k as i32, K)
                };
                if i.jt == 0 {
                    // Only the false branch jumps: the negated test.
                    if op == bpf::BPF_JEQ as u8 {
                        self.asm.jump(JMP32 | JNE | x, A, src, imm, f);
                        return Ok(());
                    }
                }
                self.asm.jump(JMP32 | op | x, A, src, imm, t);
                if i.jf != 0 {
                    self.asm.ja(f);
                }
            }
            bpf::BPF_RET => {
                if i.code & 0x18 == bpf::BPF_A {
                    self.asm.jump(JMP32 | JNE | K, A, 0, 0, self.matched);
                    self.asm.ja(self.reject);
                } else if i.k != 0 {
                    self.asm.ja(self.matched);
                } else {
                    self.asm.ja(self.reject);
                }
            }
            bpf::BPF_MISC => {
                if i.code & 0xf8 == bpf::BPF_TXA {
                    self.asm.raw(ALU | MOV | X, A, XR, 0, 0);
                } else {
                    self.asm.raw(ALU | MOV | X, XR, A, 0, 0);
                }
            }
            _ => return Err(unsupported()),
        }
        Ok(())
    }

    /// `len`: the packet's length.
    fn len(&mut self, dst: u8) {
        match self.hook {
            Hook::Tc { base_map: None } => self.asm.load(W, dst, CTX, SKB_CTX_LEN),
            _ => self.asm.load(DW, dst, FP, PKT_LEN),
        }
    }

    /// The skb metadata classic BPF reads at SKF_AD_OFF (the VLAN tag a
    /// device took out of the frame), from `__sk_buff` at TC.
    fn ancillary(
        &mut self,
        dst: u8,
        which: u32,
        pc: usize,
        code: u16,
    ) -> Result<(), TranslateError> {
        let off = match (self.hook, which) {
            (Hook::Tc { .. }, SKF_AD_VLAN_TAG_PRESENT) => SKB_CTX_VLAN_PRESENT,
            (Hook::Tc { .. }, SKF_AD_VLAN_TAG) => SKB_CTX_VLAN_TCI,
            _ => return Err(TranslateError::Unsupported(pc, code)),
        };
        self.asm.load(W, dst, CTX, off);
        Ok(())
    }

    /// `n` bytes at the packet offset in R2 (32 bits) into `dst`, in host
    /// order; a load that cannot be made rejects.
    fn packet_load(&mut self, dst: u8, size: u8, n: i32) {
        let a = &mut self.asm;
        match self.hook {
            Hook::Tc { base_map } => {
                if base_map.is_some() {
                    a.raw(ALU64 | ADD | X, R2, BASE, 0, 0);
                }
                // The linear bytes directly (a load, where a helper call
                // costs ~20 ns); past them, or past the verifier's 64 KiB
                // reach, through bpf_skb_load_bytes.
                let slow = a.label();
                let done = a.label();
                a.jump(JMP | JGT | K, R2, 0, 0xffff - n, slow);
                a.load(W, R3, CTX, SKB_CTX_DATA);
                a.load(W, R4, CTX, SKB_CTX_DATA_END);
                a.raw(ALU64 | ADD | X, R3, R2, 0, 0);
                a.mov64(R5, R3);
                a.add64_imm(R5, n);
                a.jump(JMP | JGT | X, R5, R4, 0, slow);
                a.load_network_order(size, dst, R3, 0);
                a.ja(done);
                a.mark(slow);
                a.mov64(R1, CTX);
                a.mov64(R3, FP);
                a.add64_imm(R3, BUF as i32);
                a.mov32_imm(R4, n as u32);
                a.call(HELPER_SKB_LOAD_BYTES);
                a.jump(JMP | JNE | K, R0, 0, 0, self.reject);
                a.load_network_order(size, dst, FP, BUF);
                a.mark(done);
                return;
            }
            Hook::Tracer { .. } => {
                // Within the readable bytes (R2 is below 2^32, no overflow).
                a.mov64(R1, R2);
                a.add64_imm(R1, n);
                a.load(DW, R3, FP, LINEAR);
                a.jump(JMP | JGT | X, R1, R3, 0, self.reject);
                a.mov64(R3, BASE);
                a.raw(ALU64 | ADD | X, R3, R2, 0, 0);
                a.mov64(R1, FP);
                a.add64_imm(R1, BUF as i32);
                a.mov32_imm(R2, n as u32);
                a.call(HELPER_PROBE_READ_KERNEL);
            }
        }
        a.jump(JMP | JNE | K, R0, 0, 0, self.reject);
        a.load_network_order(size, dst, FP, BUF);
    }
}
