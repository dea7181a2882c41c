//! Filters: pcap-filter(7) expressions compiled here, in Rust, to classic
//! BPF with libpcap's meaning (`parse.rs` → `gen.rs` → `bpf.rs`), in two
//! variants: Ethernet frames and raw IP packets. The same program runs in
//! the kernel (SO_ATTACH_FILTER) and in userspace (`Filter::matches`, for
//! files), so a packet gets one verdict wherever it is judged.

pub mod bpf;
pub mod ebpf;
pub mod gen;
pub mod parse;

use thiserror::Error;

pub use parse::Link;

use crate::packet::linktype::{LINKTYPE_ETHERNET, LINKTYPE_IPV4, LINKTYPE_IPV6, LINKTYPE_RAW};

/// Why an expression gives no program: where and what (the caller says
/// which expression: `--filter: column 5: …`).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FilterError {
    #[error("{0}")]
    Parse(parse::ParseError),
    #[error("{0}")]
    Gen(gen::GenError),
}

impl From<parse::ParseError> for FilterError {
    fn from(e: parse::ParseError) -> Self {
        FilterError::Parse(e)
    }
}

impl From<gen::GenError> for FilterError {
    fn from(e: gen::GenError) -> Self {
        FilterError::Gen(e)
    }
}

/// A compiled expression, for one link.
#[derive(Clone, Debug)]
pub struct Filter {
    pub program: Vec<bpf::Insn>,
}

impl Filter {
    pub fn compile(text: &str, link: Link) -> Result<Filter, FilterError> {
        let expr = parse::parse(text, link)?;
        let program = gen::generate(&expr, link)?;
        Ok(Filter { program })
    }

    /// Whether a packet of `data` (`wire_len` long on the wire) matches.
    pub fn matches(&self, data: &[u8], wire_len: u32) -> bool {
        bpf::run(&self.program, data, wire_len) != 0
    }

    /// `tcpdump -d`'s listing of the program.
    pub fn listing(&self) -> String {
        bpf::listing(&self.program)
    }
}

/// An expression for a live capture's socket filter, on one link. The
/// kernel may hold a packet's VLAN tag outside its bytes (in the skb, as
/// it does for tags it took out on receive), where offline code does not
/// look: as libpcap's live code, `vlan [ID] and REST` becomes "a tag in
/// the metadata and REST at the untagged offsets, or no tag there, one in
/// the bytes and REST past it". `vlan` elsewhere than at the head of the
/// expression is refused.
#[derive(Clone, Debug)]
pub struct LiveFilter {
    pub link: Link,
    pub expr: parse::Expr,
}

impl LiveFilter {
    pub fn compile(text: &str, link: Link) -> Result<LiveFilter, FilterError> {
        use parse::{Expr, Prim};
        let mut expr = parse::parse(text, link)?;
        if has_vlan(&expr) {
            let refuse = || {
                FilterError::Parse(parse::ParseError {
                    column: text.find("vlan").map_or(1, |i| i + 1),
                    message:
                        "in a live capture's filter, `vlan` is only taken first (`vlan [ID] and …`)"
                            .into(),
                })
            };
            let mut chain = Vec::new();
            and_chain(expr, &mut chain);
            let (id, at) = match chain.first() {
                Some(Expr::Prim(Prim::Vlan(id), at)) => (*id, *at),
                _ => return Err(refuse()),
            };
            let rest: Vec<Expr> = chain.drain(1..).collect();
            if rest.iter().any(has_vlan) {
                return Err(refuse());
            }
            let all = |first: Expr, rest: Vec<Expr>| {
                rest.into_iter()
                    .fold(first, |a, b| Expr::And(Box::new(a), Box::new(b)))
            };
            // In the metadata: the bytes are untagged, REST as before the tag.
            let unshifted = rest.iter().cloned().map(|e| shift(e, -4)).collect();
            let meta = all(Expr::Prim(Prim::VlanMeta(true, id), at), unshifted);
            let bytes = all(
                Expr::And(
                    Box::new(Expr::Prim(Prim::VlanMeta(false, None), at)),
                    Box::new(Expr::Prim(Prim::Vlan(id), at)),
                ),
                rest,
            );
            expr = Expr::Or(Box::new(meta), Box::new(bytes));
        }
        // Checks that it fits.
        gen::generate(&expr, link)?;
        Ok(LiveFilter { link, expr })
    }
}

/// The operands of a chain of `and`, left to right.
fn and_chain(e: parse::Expr, out: &mut Vec<parse::Expr>) {
    match e {
        parse::Expr::And(a, b) => {
            and_chain(*a, out);
            and_chain(*b, out);
        }
        other => out.push(other),
    }
}

/// `e` with every offset moved by `by` bytes.
fn shift(e: parse::Expr, by: i32) -> parse::Expr {
    use parse::Expr;
    let moved = |o: parse::Offsets| parse::Offsets {
        ethertype: o.ethertype.wrapping_add_signed(by),
        network: o.network.wrapping_add_signed(by),
    };
    match e {
        Expr::And(a, b) => Expr::And(Box::new(shift(*a, by)), Box::new(shift(*b, by))),
        Expr::Or(a, b) => Expr::Or(Box::new(shift(*a, by)), Box::new(shift(*b, by))),
        Expr::Not(a) => Expr::Not(Box::new(shift(*a, by))),
        Expr::Prim(p, o) => Expr::Prim(p, moved(o)),
        Expr::Rel(l, op, r, o) => Expr::Rel(l, op, r, moved(o)),
    }
}

fn has_vlan(e: &parse::Expr) -> bool {
    match e {
        parse::Expr::And(a, b) | parse::Expr::Or(a, b) => has_vlan(a) || has_vlan(b),
        parse::Expr::Not(a) => has_vlan(a),
        parse::Expr::Prim(parse::Prim::Vlan(_), _) => true,
        _ => false,
    }
}

/// An expression compiled for every link a file may hold, each variant
/// made when first needed (an Ethernet-only expression is fine on a file of
/// Ethernet frames). `matches` says which packets of a link type match.
#[derive(Clone)]
pub struct FileFilter {
    text: String,
    ethernet: Option<Result<Filter, FilterError>>,
    raw: Option<Result<Filter, FilterError>>,
}

impl FileFilter {
    /// Checks the expression once (for the Ethernet variant, whose syntax
    /// is the widest), so a bad one is refused before anything is read.
    pub fn new(text: &str) -> Result<FileFilter, FilterError> {
        let ethernet = Filter::compile(text, Link::Ethernet)?;
        Ok(FileFilter {
            text: text.to_string(),
            ethernet: Some(Ok(ethernet)),
            raw: None,
        })
    }

    /// Whether a packet of `linktype` matches; an error when the
    /// expression has no meaning on that link (`ether` on raw IP).
    pub fn matches(&mut self, linktype: u32, data: &[u8]) -> Result<bool, FilterError> {
        let slot = match linktype {
            LINKTYPE_ETHERNET => &mut self.ethernet,
            LINKTYPE_RAW | LINKTYPE_IPV4 | LINKTYPE_IPV6 => &mut self.raw,
            // Other links: nothing the language names is in them.
            _ => return Ok(false),
        };
        let link = if linktype == LINKTYPE_ETHERNET {
            Link::Ethernet
        } else {
            Link::RawIp
        };
        let filter = slot.get_or_insert_with(|| Filter::compile(&self.text, link));
        match filter {
            Ok(f) => Ok(f.matches(data, data.len() as u32)),
            Err(e) => Err(e.clone()),
        }
    }
}

#[cfg(test)]
mod tests;
