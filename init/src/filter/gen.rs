//! Classic BPF from the expression tree, with libpcap's meaning of each
//! primitive (its offline code for EN10MB and RAW): `port` is tcp, udp or
//! sctp over IPv4 or IPv6; IPv4 transport tests skip non-first fragments
//! and find the header through the IHL; IPv6 ones look at the fixed
//! header's next header (and, for protocols, one fragment header).

use std::net::IpAddr;

use super::bpf::*;
use super::parse::{Arith, BinOp, Dir, Expr, Link, Offsets, Prim, Proto, RelOp};

/// What libpcap returns for an accepted packet (its default snap length).
pub const ACCEPT: u32 = 262_144;
/// The most instructions a program may have (the kernel's BPF_MAXINSNS).
pub const MAX_INSNS: usize = 4096;

const ETH_IP: u32 = 0x800;
const ETH_IP6: u32 = 0x86dd;
const ETH_ARP: u32 = 0x806;
const ETH_RARP: u32 = 0x8035;
const IPPROTO_FRAGMENT: u32 = 44;
/// Where the kernel's ancillary data starts for a classic load (-0x1000).
const SKF_AD_OFF: u32 = 0xffff_f000;

/// A boolean test tree, before code.
#[derive(Clone, Debug)]
enum Node {
    True,
    False,
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
    /// Load, optional mask, compare with a constant.
    Test(Load, Option<u32>, u16, u32),
    /// A relation between two arithmetic expressions.
    Rel(Arith, RelOp, Arith, Offsets),
}

#[derive(Clone, Copy, Debug)]
enum Load {
    /// `size` bytes at an absolute offset.
    Abs(u32, u16),
    /// `size` bytes at `off` past the IPv4 header of the network header at `nh`.
    PastIpv4(u32, u32, u16),
    Len,
}

fn and(a: Node, b: Node) -> Node {
    Node::And(Box::new(a), Box::new(b))
}

fn or(a: Node, b: Node) -> Node {
    Node::Or(Box::new(a), Box::new(b))
}

fn eq(load: Load, k: u32) -> Node {
    Node::Test(load, None, BPF_JEQ, k)
}

fn any(nodes: impl IntoIterator<Item = Node>) -> Node {
    nodes.into_iter().reduce(or).unwrap_or(Node::False)
}

fn all(nodes: impl IntoIterator<Item = Node>) -> Node {
    nodes.into_iter().reduce(and).unwrap_or(Node::True)
}

struct Gen {
    link: Link,
}

impl Gen {
    /// The packet's link-layer type is `ethertype`.
    fn linktype(&self, ethertype: u32, o: Offsets) -> Node {
        match self.link {
            Link::Ethernet => eq(Load::Abs(o.ethertype, BPF_H), ethertype),
            Link::RawIp => {
                let version = match ethertype {
                    ETH_IP => 0x40,
                    ETH_IP6 => 0x60,
                    _ => return Node::False,
                };
                Node::Test(Load::Abs(o.network, BPF_B), Some(0xf0), BPF_JEQ, version)
            }
        }
    }

    fn byte(&self, o: Offsets, off: u32) -> Load {
        Load::Abs(o.network + off, BPF_B)
    }

    /// IPv4 with protocol `p`.
    fn ip_proto(&self, p: u32, o: Offsets) -> Node {
        and(self.linktype(ETH_IP, o), eq(self.byte(o, 9), p))
    }

    /// IPv6 with next header `p`, or a fragment header and then `p`.
    fn ip6_proto(&self, p: u32, o: Offsets) -> Node {
        let direct = eq(self.byte(o, 6), p);
        let fragment = and(
            eq(self.byte(o, 6), IPPROTO_FRAGMENT),
            eq(self.byte(o, 40), p),
        );
        and(self.linktype(ETH_IP6, o), or(direct, fragment))
    }

    fn proto(&self, p: Proto, o: Offsets) -> Node {
        match p {
            Proto::Ether => Node::True,
            Proto::Ip => self.linktype(ETH_IP, o),
            Proto::Ip6 => self.linktype(ETH_IP6, o),
            Proto::Arp => self.linktype(ETH_ARP, o),
            Proto::Rarp => self.linktype(ETH_RARP, o),
            Proto::Icmp => self.ip_proto(1, o),
            Proto::Icmp6 => self.ip6_proto(58, o),
            Proto::Tcp | Proto::Udp | Proto::Sctp => {
                let n = u32::from(p.ip_protocol().expect("a transport"));
                or(self.ip_proto(n, o), self.ip6_proto(n, o))
            }
        }
    }

    /// An address field `bytes` long at `at`, masked by a prefix length.
    fn address(&self, at: u32, addr: &[u8], prefix: u32) -> Node {
        let mut tests = Vec::new();
        for (i, word) in addr.chunks(4).enumerate() {
            let bits = prefix.saturating_sub(32 * i as u32).min(32);
            if bits == 0 {
                break;
            }
            let value = word.iter().fold(0u32, |v, b| v << 8 | u32::from(*b));
            let mask = if bits == 32 {
                u32::MAX
            } else {
                !(u32::MAX >> bits)
            };
            let load = Load::Abs(at + 4 * i as u32, BPF_W);
            tests.push(if mask == u32::MAX {
                eq(load, value)
            } else {
                Node::Test(load, Some(mask), BPF_JEQ, value & mask)
            });
        }
        all(tests)
    }

    fn directed(dir: Dir, src: Node, dst: Node) -> Node {
        match dir {
            Dir::Src => src,
            Dir::Dst => dst,
            Dir::SrcOrDst => or(src, dst),
            Dir::SrcAndDst => and(src, dst),
        }
    }

    /// `host`/`net` for `proto` (None: every protocol with such addresses).
    fn host_net(
        &self,
        proto: Option<Proto>,
        dir: Dir,
        addr: IpAddr,
        prefix: u32,
        o: Offsets,
    ) -> Node {
        let nh = o.network;
        match addr {
            IpAddr::V4(a) => {
                let a = a.octets();
                let ip = || {
                    and(
                        self.linktype(ETH_IP, o),
                        Self::directed(
                            dir,
                            self.address(nh + 12, &a, prefix),
                            self.address(nh + 16, &a, prefix),
                        ),
                    )
                };
                let arp = |t: u32| {
                    and(
                        self.linktype(t, o),
                        Self::directed(
                            dir,
                            self.address(nh + 14, &a, prefix),
                            self.address(nh + 24, &a, prefix),
                        ),
                    )
                };
                match proto {
                    Some(Proto::Ip) => ip(),
                    Some(Proto::Arp) => arp(ETH_ARP),
                    Some(Proto::Rarp) => arp(ETH_RARP),
                    _ => any([ip(), arp(ETH_ARP), arp(ETH_RARP)]),
                }
            }
            IpAddr::V6(a) => {
                let a = a.octets();
                and(
                    self.linktype(ETH_IP6, o),
                    Self::directed(
                        dir,
                        self.address(nh + 8, &a, prefix),
                        self.address(nh + 24, &a, prefix),
                    ),
                )
            }
        }
    }

    fn port(&self, proto: Option<Proto>, dir: Dir, lo: u16, hi: u16, o: Offsets) -> Node {
        let protos: Vec<u32> = match proto {
            Some(p) => vec![u32::from(p.ip_protocol().expect("a transport"))],
            None => vec![132, 6, 17],
        };
        let in_range = |load: Load| {
            if lo == hi {
                eq(load, u32::from(lo))
            } else {
                and(
                    Node::Test(load, None, BPF_JGE, u32::from(lo)),
                    Node::Not(Box::new(Node::Test(load, None, BPF_JGT, u32::from(hi)))),
                )
            }
        };
        let nh = o.network;
        let v6 = and(
            and(
                self.linktype(ETH_IP6, o),
                any(protos.iter().map(|p| eq(self.byte(o, 6), *p))),
            ),
            Self::directed(
                dir,
                in_range(Load::Abs(nh + 40, BPF_H)),
                in_range(Load::Abs(nh + 42, BPF_H)),
            ),
        );
        let v4 = all([
            self.linktype(ETH_IP, o),
            any(protos.iter().map(|p| eq(self.byte(o, 9), *p))),
            self.not_fragment(o),
            Self::directed(
                dir,
                in_range(Load::PastIpv4(nh, 0, BPF_H)),
                in_range(Load::PastIpv4(nh, 2, BPF_H)),
            ),
        ]);
        or(v6, v4)
    }

    /// An IPv4 packet's first fragment (or not a fragment).
    fn not_fragment(&self, o: Offsets) -> Node {
        Node::Not(Box::new(Node::Test(
            Load::Abs(o.network + 6, BPF_H),
            None,
            BPF_JSET,
            0x1fff,
        )))
    }

    fn prim(&self, p: &Prim, o: Offsets) -> Node {
        match p {
            Prim::Proto(proto) => self.proto(*proto, o),
            Prim::Host { proto, dir, addr } => {
                let bits = if addr.is_ipv4() { 32 } else { 128 };
                self.host_net(*proto, *dir, *addr, bits, o)
            }
            Prim::Net {
                proto,
                dir,
                addr,
                prefix,
            } => self.host_net(*proto, *dir, *addr, u32::from(*prefix), o),
            Prim::EtherHost { dir, mac } => {
                let at = |off: u32| {
                    and(
                        eq(
                            Load::Abs(off + 2, BPF_W),
                            u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]),
                        ),
                        eq(
                            Load::Abs(off, BPF_H),
                            u32::from(u16::from_be_bytes([mac[0], mac[1]])),
                        ),
                    )
                };
                Self::directed(*dir, at(6), at(0))
            }
            Prim::Port { proto, dir, lo, hi } => self.port(*proto, *dir, *lo, *hi, o),
            Prim::IpProto { layer, number } => {
                let n = u32::from(*number);
                match layer {
                    Some(Proto::Ip) => self.ip_proto(n, o),
                    Some(Proto::Ip6) => self.ip6_proto(n, o),
                    _ => or(self.ip_proto(n, o), self.ip6_proto(n, o)),
                }
            }
            Prim::EtherProto(t) => self.linktype(u32::from(*t), o),
            Prim::EtherBroadcast => and(
                eq(Load::Abs(2, BPF_W), 0xffff_ffff),
                eq(Load::Abs(0, BPF_H), 0xffff),
            ),
            Prim::EtherMulticast => Node::Test(Load::Abs(0, BPF_B), None, BPF_JSET, 1),
            Prim::IpMulticast => and(
                self.linktype(ETH_IP, o),
                Node::Test(self.byte(o, 16), None, BPF_JGE, 0xe0),
            ),
            Prim::Ip6Multicast => and(self.linktype(ETH_IP6, o), eq(self.byte(o, 24), 0xff)),
            Prim::Vlan(id) => {
                let tagged =
                    any([0x8100, 0x88a8, 0x9100].map(|t| eq(Load::Abs(o.ethertype, BPF_H), t)));
                match id {
                    None => tagged,
                    Some(id) => and(
                        tagged,
                        Node::Test(
                            Load::Abs(o.ethertype + 2, BPF_H),
                            Some(0xfff),
                            BPF_JEQ,
                            u32::from(*id),
                        ),
                    ),
                }
            }
            Prim::VlanMeta(present, id) => {
                // Ancillary loads (linux/filter.h): SKF_AD_OFF + 48 is
                // "a tag is present", + 44 the tag's TCI.
                let tagged = eq(Load::Abs(SKF_AD_OFF + 48, BPF_W), 1);
                match (present, id) {
                    (false, _) => Node::Not(Box::new(tagged)),
                    (true, None) => tagged,
                    (true, Some(id)) => and(
                        tagged,
                        Node::Test(
                            Load::Abs(SKF_AD_OFF + 44, BPF_W),
                            Some(0xfff),
                            BPF_JEQ,
                            u32::from(*id),
                        ),
                    ),
                }
            }
            Prim::Greater(n) => Node::Test(Load::Len, None, BPF_JGE, *n),
            Prim::Less(n) => Node::Not(Box::new(Node::Test(Load::Len, None, BPF_JGT, *n))),
        }
    }

    /// The protocol checks a load from `proto[…]` needs first.
    fn guard(&self, proto: Proto, o: Offsets) -> Node {
        match proto {
            Proto::Ether => Node::True,
            Proto::Tcp | Proto::Udp | Proto::Sctp | Proto::Icmp => {
                let n = u32::from(proto.ip_protocol().expect("a transport"));
                and(self.ip_proto(n, o), self.not_fragment(o))
            }
            Proto::Icmp6 => self.ip6_proto(58, o),
            other => self.proto(other, o),
        }
    }

    fn guards(a: &Arith, out: &mut Vec<Proto>) {
        match a {
            Arith::Num(_) | Arith::Len => {}
            Arith::Load { proto, index, .. } => {
                if !out.contains(proto) {
                    out.push(*proto);
                }
                Self::guards(index, out);
            }
            Arith::Bin(l, _, r) => {
                Self::guards(l, out);
                Self::guards(r, out);
            }
            Arith::Neg(x) => Self::guards(x, out),
        }
    }

    fn expr(&self, e: &Expr) -> Node {
        match e {
            Expr::And(a, b) => and(self.expr(a), self.expr(b)),
            Expr::Or(a, b) => or(self.expr(a), self.expr(b)),
            Expr::Not(a) => Node::Not(Box::new(self.expr(a))),
            Expr::Prim(p, o) => self.prim(p, *o),
            Expr::Rel(l, op, r, o) => {
                let mut protos = Vec::new();
                Self::guards(l, &mut protos);
                Self::guards(r, &mut protos);
                let checks = all(protos.iter().map(|p| self.guard(*p, *o)));
                and(checks, Node::Rel(l.clone(), *op, r.clone(), *o))
            }
        }
    }
}

/// Why an expression has no program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenError {
    #[error("the expression needs more than {MEMWORDS} scratch words")]
    Scratch,
    #[error("{0} instructions, more than the {MAX_INSNS} a classic program may have")]
    TooLong(usize),
}

struct Emitter {
    b: Builder,
    link: Link,
    scratch: usize,
    error: Option<GenError>,
}

impl Emitter {
    fn load(&mut self, load: Load) {
        match load {
            Load::Abs(off, size) => self.b.stmt(BPF_LD | size | BPF_ABS, off),
            Load::PastIpv4(nh, off, size) => {
                self.b.stmt(BPF_LDX | BPF_B | BPF_MSH, nh);
                self.b.stmt(BPF_LD | size | BPF_IND, nh + off);
            }
            Load::Len => self.b.stmt(BPF_LD | BPF_W | BPF_LEN, 0),
        }
    }

    fn bool(&mut self, node: &Node, t: Label, f: Label) {
        match node {
            Node::True => self.b.ja(t),
            Node::False => self.b.ja(f),
            Node::And(a, c) => {
                let mid = self.b.label();
                self.bool(a, mid, f);
                self.b.mark(mid);
                self.bool(c, t, f);
            }
            Node::Or(a, c) => {
                let mid = self.b.label();
                self.bool(a, t, mid);
                self.b.mark(mid);
                self.bool(c, t, f);
            }
            Node::Not(a) => self.bool(a, f, t),
            Node::Test(load, mask, op, k) => {
                self.load(*load);
                if let Some(m) = mask {
                    self.b.stmt(BPF_ALU | BPF_AND | BPF_K, *m);
                }
                self.b.cond(BPF_JMP | op | BPF_K, *k, t, f);
            }
            Node::Rel(l, op, r, o) => {
                let (code, swap) = match op {
                    RelOp::Eq => (BPF_JEQ, false),
                    RelOp::Ne => (BPF_JEQ, true),
                    RelOp::Gt => (BPF_JGT, false),
                    RelOp::Ge => (BPF_JGE, false),
                    RelOp::Lt => (BPF_JGE, true),
                    RelOp::Le => (BPF_JGT, true),
                };
                let (t, f) = if swap { (f, t) } else { (t, f) };
                if let Arith::Num(k) = r {
                    self.arith(l, *o);
                    self.b.cond(BPF_JMP | code | BPF_K, *k, t, f);
                } else {
                    let m = self.push();
                    self.arith(r, *o);
                    self.b.stmt(BPF_ST, m);
                    self.arith(l, *o);
                    self.b.stmt(BPF_LDX | BPF_MEM, m);
                    self.pop();
                    self.b.cond(BPF_JMP | code | BPF_X, 0, t, f);
                }
            }
        }
    }

    fn push(&mut self) -> u32 {
        let m = self.scratch;
        if m >= MEMWORDS {
            self.error.get_or_insert(GenError::Scratch);
        }
        self.scratch += 1;
        (m % MEMWORDS) as u32
    }

    fn pop(&mut self) {
        self.scratch -= 1;
    }

    /// Leaves the value of `a` in A.
    fn arith(&mut self, a: &Arith, o: Offsets) {
        match a {
            Arith::Num(k) => self.b.stmt(BPF_LD | BPF_IMM, *k),
            Arith::Len => self.b.stmt(BPF_LD | BPF_W | BPF_LEN, 0),
            Arith::Neg(x) => {
                self.arith(x, o);
                self.b.stmt(BPF_ALU | BPF_NEG, 0);
            }
            Arith::Bin(l, op, r) => {
                let code = match op {
                    BinOp::Add => BPF_ADD,
                    BinOp::Sub => BPF_SUB,
                    BinOp::Mul => BPF_MUL,
                    BinOp::Div => BPF_DIV,
                    BinOp::Mod => BPF_MOD,
                    BinOp::And => BPF_AND,
                    BinOp::Or => BPF_OR,
                    BinOp::Xor => BPF_XOR,
                    BinOp::Shl => BPF_LSH,
                    BinOp::Shr => BPF_RSH,
                };
                if let Arith::Num(k) = **r {
                    self.arith(l, o);
                    self.b.stmt(BPF_ALU | code | BPF_K, k);
                } else {
                    let m = self.push();
                    self.arith(r, o);
                    self.b.stmt(BPF_ST, m);
                    self.arith(l, o);
                    self.b.stmt(BPF_LDX | BPF_MEM, m);
                    self.pop();
                    self.b.stmt(BPF_ALU | code | BPF_X, 0);
                }
            }
            Arith::Load { proto, index, size } => {
                let size = match size {
                    1 => BPF_B,
                    2 => BPF_H,
                    _ => BPF_W,
                };
                let (base, past_ipv4) = match (proto, self.link) {
                    (Proto::Ether, _) => (0, false),
                    (Proto::Tcp | Proto::Udp | Proto::Sctp | Proto::Icmp, _) => (o.network, true),
                    (Proto::Icmp6, _) => (o.network + 40, false),
                    _ => (o.network, false),
                };
                match (**index).clone() {
                    Arith::Num(i) if !past_ipv4 => self.b.stmt(BPF_LD | size | BPF_ABS, base + i),
                    Arith::Num(i) => {
                        self.b.stmt(BPF_LDX | BPF_B | BPF_MSH, o.network);
                        self.b.stmt(BPF_LD | size | BPF_IND, base + i);
                    }
                    other if !past_ipv4 => {
                        self.arith(&other, o);
                        self.b.stmt(BPF_MISC | BPF_TAX, 0);
                        self.b.stmt(BPF_LD | size | BPF_IND, base);
                    }
                    other => {
                        let m = self.push();
                        self.arith(&other, o);
                        self.b.stmt(BPF_ST, m);
                        self.b.stmt(BPF_LDX | BPF_B | BPF_MSH, o.network);
                        self.b.stmt(BPF_MISC | BPF_TXA, 0);
                        self.b.stmt(BPF_LDX | BPF_MEM, m);
                        self.b.stmt(BPF_ALU | BPF_ADD | BPF_X, 0);
                        self.b.stmt(BPF_MISC | BPF_TAX, 0);
                        self.pop();
                        self.b.stmt(BPF_LD | size | BPF_IND, base);
                    }
                }
            }
        }
    }
}

/// Emits the code of `expr` on `link` into `b`: it goes to `t` for a
/// packet that matches, to `f` for one that does not (for a program that
/// runs other tests first, such as capture's ignored classes).
pub fn emit(expr: &Expr, link: Link, b: &mut Builder, t: Label, f: Label) -> Result<(), GenError> {
    let node = Gen { link }.expr(expr);
    let mut e = Emitter {
        b: std::mem::take(b),
        link,
        scratch: 0,
        error: None,
    };
    e.bool(&node, t, f);
    *b = e.b;
    match e.error {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The classic program of `expr` on `link`: it returns `ACCEPT` for a
/// packet that matches, 0 for one that does not.
pub fn generate(expr: &Expr, link: Link) -> Result<Vec<Insn>, GenError> {
    let mut b = Builder::default();
    let (t, f) = (b.label(), b.label());
    emit(expr, link, &mut b, t, f)?;
    b.mark(t);
    b.stmt(BPF_RET | BPF_K, ACCEPT);
    b.mark(f);
    b.stmt(BPF_RET | BPF_K, 0);
    let program = b.finish();
    if program.len() > MAX_INSNS {
        return Err(GenError::TooLong(program.len()));
    }
    Ok(program)
}
