//! Classic BPF: the instructions libpcap and the kernel's SO_ATTACH_FILTER
//! use, built with symbolic jump targets and laid out forward only; an
//! interpreter with the kernel's rules (a load past the end rejects the
//! packet), and the listing `tcpdump -d` prints.

use std::fmt::Write as _;

// Instruction classes, sizes, modes and operations (linux/filter.h,
// linux/bpf_common.h): stable UAPI numbers.
pub const BPF_LD: u16 = 0x00;
pub const BPF_LDX: u16 = 0x01;
pub const BPF_ST: u16 = 0x02;
pub const BPF_ALU: u16 = 0x04;
pub const BPF_JMP: u16 = 0x05;
pub const BPF_RET: u16 = 0x06;
pub const BPF_MISC: u16 = 0x07;
pub const BPF_W: u16 = 0x00;
pub const BPF_H: u16 = 0x08;
pub const BPF_B: u16 = 0x10;
pub const BPF_IMM: u16 = 0x00;
pub const BPF_ABS: u16 = 0x20;
pub const BPF_IND: u16 = 0x40;
pub const BPF_MEM: u16 = 0x60;
pub const BPF_LEN: u16 = 0x80;
pub const BPF_MSH: u16 = 0xa0;
pub const BPF_ADD: u16 = 0x00;
pub const BPF_SUB: u16 = 0x10;
pub const BPF_MUL: u16 = 0x20;
pub const BPF_DIV: u16 = 0x30;
pub const BPF_OR: u16 = 0x40;
pub const BPF_AND: u16 = 0x50;
pub const BPF_LSH: u16 = 0x60;
pub const BPF_RSH: u16 = 0x70;
pub const BPF_NEG: u16 = 0x80;
pub const BPF_MOD: u16 = 0x90;
pub const BPF_XOR: u16 = 0xa0;
pub const BPF_JA: u16 = 0x00;
pub const BPF_JEQ: u16 = 0x10;
pub const BPF_JGT: u16 = 0x20;
pub const BPF_JGE: u16 = 0x30;
pub const BPF_JSET: u16 = 0x40;
pub const BPF_K: u16 = 0x00;
pub const BPF_X: u16 = 0x08;
pub const BPF_A: u16 = 0x10;
pub const BPF_TAX: u16 = 0x00;
pub const BPF_TXA: u16 = 0x80;
/// Scratch memory words of a classic program.
pub const MEMWORDS: usize = 16;

/// One instruction as the kernel takes it (`struct sock_filter`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

impl Insn {
    pub const fn stmt(code: u16, k: u32) -> Insn {
        Insn {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }
}

/// A jump target while the program is being built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Label(usize);

/// An instruction whose targets are still labels.
#[derive(Clone, Copy, Debug)]
enum Pending {
    Stmt(Insn),
    /// A conditional jump: code, k, then where to go.
    Cond(u16, u32, Label, Label),
    Ja(Label),
    /// Where a label points (no instruction).
    Mark(Label),
}

/// Builds a program from instructions and labels.
#[derive(Default)]
pub struct Builder {
    code: Vec<Pending>,
    labels: usize,
}

impl Builder {
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    pub fn stmt(&mut self, code: u16, k: u32) {
        self.code.push(Pending::Stmt(Insn::stmt(code, k)));
    }

    pub fn cond(&mut self, code: u16, k: u32, t: Label, f: Label) {
        self.code.push(Pending::Cond(code, k, t, f));
    }

    pub fn ja(&mut self, to: Label) {
        self.code.push(Pending::Ja(to));
    }

    pub fn mark(&mut self, l: Label) {
        self.code.push(Pending::Mark(l));
    }

    /// Lays the program out. Every jump goes forward (code is emitted
    /// before its targets); a conditional jump farther than 255 goes
    /// through an unconditional one placed right after it.
    pub fn finish(mut self) -> Vec<Insn> {
        loop {
            let (program, too_far) = self.layout();
            let Some(at) = too_far else {
                return program;
            };
            // Split the far conditional jump at pending index `at`.
            let Pending::Cond(code, k, t, f) = self.code[at] else {
                unreachable!("only conditional jumps are too far")
            };
            let (near_t, near_f) = (self.label(), self.label());
            let mut patch = vec![Pending::Cond(code, k, near_t, near_f)];
            patch.push(Pending::Mark(near_t));
            patch.push(Pending::Ja(t));
            patch.push(Pending::Mark(near_f));
            patch.push(Pending::Ja(f));
            self.code.splice(at..=at, patch);
        }
    }

    /// The program, or the pending index of a conditional jump too far.
    fn layout(&self) -> (Vec<Insn>, Option<usize>) {
        let mut at = vec![usize::MAX; self.labels];
        let mut pc = 0;
        for p in &self.code {
            match p {
                Pending::Mark(l) => at[l.0] = pc,
                _ => pc += 1,
            }
        }
        let mut out = Vec::with_capacity(pc);
        for (i, p) in self.code.iter().enumerate() {
            let here = out.len();
            let offset = |l: &Label| at[l.0] - here - 1;
            match p {
                Pending::Mark(_) => {}
                Pending::Stmt(insn) => out.push(*insn),
                Pending::Ja(l) => out.push(Insn::stmt(BPF_JMP | BPF_JA, offset(l) as u32)),
                Pending::Cond(code, k, t, f) => {
                    let (t, f) = (offset(t), offset(f));
                    if t > 255 || f > 255 {
                        return (out, Some(i));
                    }
                    out.push(Insn {
                        code: *code,
                        jt: t as u8,
                        jf: f as u8,
                        k: *k,
                    });
                }
            }
        }
        (out, None)
    }
}

/// Runs a program on a packet as the kernel does: `wire_len` is the
/// packet's length (`len`), `data` what can be loaded. A load past the end
/// of `data`, a division by zero or falling off the end rejects (0).
pub fn run(program: &[Insn], data: &[u8], wire_len: u32) -> u32 {
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; MEMWORDS];
    let mut pc = 0usize;
    let load = |off: u32, size: u16| -> Option<u32> {
        let off = off as usize;
        let n = match size {
            BPF_W => 4,
            BPF_H => 2,
            _ => 1,
        };
        let bytes = data.get(off..off.checked_add(n)?)?;
        Some(bytes.iter().fold(0u32, |v, b| v << 8 | u32::from(*b)))
    };
    while let Some(i) = program.get(pc) {
        pc += 1;
        let class = i.code & 0x07;
        match class {
            BPF_LD | BPF_LDX => {
                let size = i.code & 0x18;
                let value = match i.code & 0xe0 {
                    BPF_IMM => i.k,
                    BPF_LEN => wire_len,
                    BPF_MEM => mem[i.k as usize % MEMWORDS],
                    BPF_ABS => match load(i.k, size) {
                        Some(v) => v,
                        None => return 0,
                    },
                    BPF_IND => match load(x.wrapping_add(i.k), size) {
                        Some(v) => v,
                        None => return 0,
                    },
                    BPF_MSH => match load(i.k, BPF_B) {
                        Some(v) => (v & 0xf) << 2,
                        None => return 0,
                    },
                    _ => return 0,
                };
                if class == BPF_LD {
                    a = value;
                } else {
                    x = value;
                }
            }
            BPF_ST => mem[i.k as usize % MEMWORDS] = a,
            0x03 => mem[i.k as usize % MEMWORDS] = x, // BPF_STX
            BPF_ALU => {
                let operand = if i.code & BPF_X != 0 { x } else { i.k };
                a = match i.code & 0xf0 {
                    BPF_ADD => a.wrapping_add(operand),
                    BPF_SUB => a.wrapping_sub(operand),
                    BPF_MUL => a.wrapping_mul(operand),
                    BPF_DIV if operand == 0 => return 0,
                    BPF_DIV => a / operand,
                    BPF_MOD if operand == 0 => return 0,
                    BPF_MOD => a % operand,
                    BPF_OR => a | operand,
                    BPF_AND => a & operand,
                    BPF_LSH => a.checked_shl(operand).unwrap_or(0),
                    BPF_RSH => a.checked_shr(operand).unwrap_or(0),
                    BPF_XOR => a ^ operand,
                    BPF_NEG => a.wrapping_neg(),
                    _ => return 0,
                };
            }
            BPF_JMP => {
                let operand = if i.code & BPF_X != 0 { x } else { i.k };
                let taken = match i.code & 0xf0 {
                    BPF_JA => {
                        pc += i.k as usize;
                        continue;
                    }
                    BPF_JEQ => a == operand,
                    BPF_JGT => a > operand,
                    BPF_JGE => a >= operand,
                    BPF_JSET => a & operand != 0,
                    _ => return 0,
                };
                pc += usize::from(if taken { i.jt } else { i.jf });
            }
            BPF_RET => {
                return if i.code & 0x18 == BPF_A { a } else { i.k };
            }
            BPF_MISC => {
                if i.code & 0xf8 == BPF_TXA {
                    a = x;
                } else {
                    x = a;
                }
            }
            _ => return 0,
        }
    }
    0
}

/// The program as `tcpdump -d` lists it.
pub fn listing(program: &[Insn]) -> String {
    let mut out = String::new();
    for (n, i) in program.iter().enumerate() {
        let size = match i.code & 0x18 {
            BPF_W => "",
            BPF_H => "h",
            _ => "b",
        };
        let k = i.k;
        let (op, arg) = match i.code & 0x07 {
            BPF_LD => match i.code & 0xe0 {
                BPF_IMM => ("ld".to_string(), format!("#0x{k:x}")),
                BPF_LEN => ("ld".to_string(), "#pktlen".to_string()),
                BPF_MEM => ("ld".to_string(), format!("M[{k}]")),
                BPF_ABS => (format!("ld{size}"), format!("[{k}]")),
                BPF_IND => (format!("ld{size}"), format!("[x + {k}]")),
                _ => ("unimp".to_string(), String::new()),
            },
            BPF_LDX => match i.code & 0xe0 {
                BPF_IMM => ("ldx".to_string(), format!("#0x{k:x}")),
                BPF_LEN => ("ldx".to_string(), "#pktlen".to_string()),
                BPF_MEM => ("ldx".to_string(), format!("M[{k}]")),
                BPF_MSH => ("ldxb".to_string(), format!("4*([{k}]&0xf)")),
                _ => ("unimp".to_string(), String::new()),
            },
            BPF_ST => ("st".to_string(), format!("M[{k}]")),
            0x03 => ("stx".to_string(), format!("M[{k}]")),
            BPF_ALU => {
                let name = match i.code & 0xf0 {
                    BPF_ADD => "add",
                    BPF_SUB => "sub",
                    BPF_MUL => "mul",
                    BPF_DIV => "div",
                    BPF_MOD => "mod",
                    BPF_OR => "or",
                    BPF_AND => "and",
                    BPF_LSH => "lsh",
                    BPF_RSH => "rsh",
                    BPF_XOR => "xor",
                    _ => "neg",
                };
                let arg = if i.code & 0xf0 == BPF_NEG {
                    String::new()
                } else if i.code & BPF_X != 0 {
                    "x".to_string()
                } else {
                    format!("#0x{k:x}")
                };
                (name.to_string(), arg)
            }
            BPF_JMP => {
                let name = match i.code & 0xf0 {
                    BPF_JA => "ja",
                    BPF_JEQ => "jeq",
                    BPF_JGT => "jgt",
                    BPF_JGE => "jge",
                    _ => "jset",
                };
                if i.code & 0xf0 == BPF_JA {
                    (name.to_string(), format!("{}", n + 1 + k as usize))
                } else {
                    let operand = if i.code & BPF_X != 0 {
                        "x".to_string()
                    } else {
                        format!("#0x{k:x}")
                    };
                    let targets = format!(
                        "jt {}\tjf {}",
                        n + 1 + usize::from(i.jt),
                        n + 1 + usize::from(i.jf)
                    );
                    (name.to_string(), format!("{operand:<16} {targets}"))
                }
            }
            BPF_RET => {
                let arg = if i.code & 0x18 == BPF_A {
                    "a".to_string()
                } else {
                    format!("#{k}")
                };
                ("ret".to_string(), arg)
            }
            _ => {
                let name = if i.code & 0xf8 == BPF_TXA {
                    "txa"
                } else {
                    "tax"
                };
                (name.to_string(), String::new())
            }
        };
        let line = format!("({n:03}) {op:<8} {arg}");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_jumps_go_through_an_unconditional_one() {
        let mut b = Builder::default();
        let (t, f) = (b.label(), b.label());
        b.stmt(BPF_LD | BPF_LEN, 0);
        b.cond(BPF_JMP | BPF_JEQ | BPF_K, 7, t, f);
        for _ in 0..300 {
            b.stmt(BPF_LD | BPF_IMM, 1);
        }
        b.mark(t);
        b.stmt(BPF_RET, 1);
        b.mark(f);
        b.stmt(BPF_RET, 0);
        let p = b.finish();
        assert_eq!(run(&p, &[0; 7], 7), 1);
        assert_eq!(run(&p, &[0; 8], 8), 0);
    }

    #[test]
    fn a_load_past_the_end_rejects() {
        let p = [
            Insn::stmt(BPF_LD | BPF_H | BPF_ABS, 12),
            Insn::stmt(BPF_RET | BPF_A, 0),
        ];
        assert_eq!(run(&p, &[0; 14], 14), 0);
        let mut frame = [0u8; 14];
        frame[12] = 8;
        assert_eq!(run(&p, &frame, 14), 0x800);
        assert_eq!(run(&p, &frame[..13], 14), 0);
    }
}
