//! The pcap-filter(7) language, the part people write daily, parsed into
//! an expression tree. libpcap's rules: `and` and `or` bind equally and
//! associate left to right, `not` binds tightest; an address or number
//! alone takes the qualifiers of the primitive before it (`host a or b`);
//! after `vlan` every later test looks 4 bytes further (as libpcap's
//! offsets do). Names that would need a lookup (host names, service
//! names) are refused, as are the primitives not supported.

use std::net::{IpAddr, Ipv4Addr};

use thiserror::Error;

use crate::packet::MacAddr;

/// Where an expression is wrong: the column (1-based) and what.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("column {column}: {message}")]
pub struct ParseError {
    pub column: usize,
    pub message: String,
}

/// The link the program runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    /// Ethernet frames (LINKTYPE_ETHERNET).
    Ethernet,
    /// IP packets without a link header (LINKTYPE_RAW).
    RawIp,
}

/// Protocols that qualify a primitive or name a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Ether,
    Ip,
    Ip6,
    Arp,
    Rarp,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
}

impl Proto {
    fn from_word(word: &str) -> Option<Proto> {
        Some(match word {
            "ether" => Proto::Ether,
            "ip" => Proto::Ip,
            "ip6" => Proto::Ip6,
            "arp" => Proto::Arp,
            "rarp" => Proto::Rarp,
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            "sctp" => Proto::Sctp,
            "icmp" => Proto::Icmp,
            "icmp6" => Proto::Icmp6,
            _ => return None,
        })
    }

    /// The IP protocol number of a transport.
    pub fn ip_protocol(self) -> Option<u8> {
        Some(match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
            Proto::Icmp => 1,
            Proto::Icmp6 => 58,
            _ => return None,
        })
    }
}

/// Source, destination, either or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Src,
    Dst,
    SrcOrDst,
    SrcAndDst,
}

/// Offsets that `vlan` moves: where the EtherType and the network header are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offsets {
    pub ethertype: u32,
    pub network: u32,
}

/// A primitive test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prim {
    /// `ip`, `tcp`, …: the packet is of that protocol.
    Proto(Proto),
    Host {
        proto: Option<Proto>,
        dir: Dir,
        addr: IpAddr,
    },
    Net {
        proto: Option<Proto>,
        dir: Dir,
        addr: IpAddr,
        prefix: u8,
    },
    EtherHost {
        dir: Dir,
        mac: [u8; 6],
    },
    /// `port`/`portrange`: ports `lo..=hi`.
    Port {
        proto: Option<Proto>,
        dir: Dir,
        lo: u16,
        hi: u16,
    },
    /// `proto N`, `ip proto N`, `ip6 proto N`.
    IpProto {
        layer: Option<Proto>,
        number: u8,
    },
    EtherProto(u16),
    EtherBroadcast,
    EtherMulticast,
    IpMulticast,
    Ip6Multicast,
    /// `vlan [ID]`, at the offsets before it.
    Vlan(Option<u16>),
    /// Live only: the kernel holds a VLAN tag (of this ID) outside the
    /// packet's bytes (the skb's metadata, SKF_AD_VLAN_TAG_PRESENT); or,
    /// `false`, it holds none there.
    VlanMeta(bool, Option<u16>),
    Greater(u32),
    Less(u32),
}

/// An arithmetic expression of a relation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arith {
    Num(u32),
    Len,
    /// `proto[index : size]`.
    Load {
        proto: Proto,
        index: Box<Arith>,
        size: u8,
    },
    Bin(Box<Arith>, BinOp, Box<Arith>),
    Neg(Box<Arith>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    And,
    Or,
    Xor,
    Shl,
    Shr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A filter expression; each primitive and relation carries the offsets
/// in force where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Prim(Prim, Offsets),
    Rel(Arith, RelOp, Arith, Offsets),
}

#[derive(Clone, Debug, PartialEq)]
struct Token {
    text: String,
    column: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, ParseError> {
    let mut tokens = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    let mut brackets = 0i32;
    while i < chars.len() {
        let (at, c) = chars[i];
        let column = at + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let word_char = |c: char| {
            c.is_ascii_alphanumeric()
                || c == '_'
                || c == '.'
                || c == '-'
                || (c == ':' && brackets == 0)
        };
        if c.is_ascii_alphanumeric() || c == '_' || (c == ':' && brackets == 0) {
            let start = i;
            while i < chars.len() && word_char(chars[i].1) {
                i += 1;
            }
            // An address's prefix length belongs to it (`10.0.0.0/8`).
            let word_so_far: String = chars[start..i].iter().map(|(_, c)| c).collect();
            if (word_so_far.contains('.') || word_so_far.contains(':'))
                && chars.get(i).is_some_and(|(_, c)| *c == '/')
                && chars.get(i + 1).is_some_and(|(_, c)| c.is_ascii_digit())
            {
                i += 1;
                while i < chars.len() && chars[i].1.is_ascii_digit() {
                    i += 1;
                }
            }
            let end = chars.get(i).map_or(text.len(), |(at, _)| *at);
            tokens.push(Token {
                text: text[chars[start].0..end].to_string(),
                column,
            });
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())]
            .iter()
            .map(|(_, c)| c)
            .collect();
        let op = match two.as_str() {
            "&&" | "||" | "==" | "!=" | ">=" | "<=" | "<<" | ">>" => two,
            _ => match c {
                '(' | ')' | '[' | ']' | ':' | '&' | '|' | '^' | '+' | '-' | '*' | '/' | '%'
                | '=' | '>' | '<' | '!' => c.to_string(),
                _ => {
                    return Err(ParseError {
                        column,
                        message: format!("unexpected `{c}`"),
                    })
                }
            },
        };
        match op.as_str() {
            "[" => brackets += 1,
            "]" => brackets -= 1,
            _ => {}
        }
        i += op.chars().count();
        tokens.push(Token { text: op, column });
    }
    Ok(tokens)
}

/// The qualifiers of a primitive, kept for an id that stands alone.
#[derive(Clone, Copy, Debug, Default)]
struct Quals {
    proto: Option<Proto>,
    dir: Option<Dir>,
    kind: Option<Kind>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    Net,
    Port,
    Portrange,
    Proto,
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    link: Link,
    offsets: Offsets,
    last: Option<Quals>,
    end_column: usize,
}

/// Parses `text` for programs on `link`.
pub fn parse(text: &str, link: Link) -> Result<Expr, ParseError> {
    let tokens = tokenize(text)?;
    let network = match link {
        Link::Ethernet => 14,
        Link::RawIp => 0,
    };
    let mut p = Parser {
        tokens,
        pos: 0,
        link,
        offsets: Offsets {
            ethertype: 12,
            network,
        },
        last: None,
        end_column: text.len() + 1,
    };
    if p.tokens.is_empty() {
        return Err(p.error_at(1, "empty expression"));
    }
    let expr = p.or_expr()?;
    if let Some(t) = p.peek() {
        let t = t.clone();
        return Err(p.error_at(t.column, format!("unexpected `{}`", t.text)));
    }
    Ok(expr)
}

const RESERVED: &[&str] = &[
    "and",
    "or",
    "not",
    "host",
    "net",
    "port",
    "portrange",
    "proto",
    "src",
    "dst",
    "mask",
    "gateway",
    "protochain",
    "broadcast",
    "multicast",
    "vlan",
    "greater",
    "less",
    "len",
];

fn named_constant(word: &str) -> Option<u32> {
    Some(match word {
        "tcpflags" => 13,
        "tcp-fin" => 0x01,
        "tcp-syn" => 0x02,
        "tcp-rst" => 0x04,
        "tcp-push" => 0x08,
        "tcp-ack" => 0x10,
        "tcp-urg" => 0x20,
        "tcp-ece" => 0x40,
        "tcp-cwr" => 0x80,
        "icmptype" | "icmp6type" => 0,
        "icmpcode" | "icmp6code" => 1,
        "icmp-echoreply" => 0,
        "icmp-unreach" => 3,
        "icmp-sourcequench" => 4,
        "icmp-redirect" => 5,
        "icmp-echo" => 8,
        "icmp-routeradvert" => 9,
        "icmp-routersolicit" => 10,
        "icmp-timxceed" => 11,
        "icmp-paramprob" => 12,
        "icmp-tstamp" => 13,
        "icmp-tstampreply" => 14,
        "icmp-ireq" => 15,
        "icmp-ireqreply" => 16,
        "icmp-maskreq" => 17,
        "icmp-maskreply" => 18,
        "icmp6-destinationunreach" => 1,
        "icmp6-packettoobig" => 2,
        "icmp6-timeexceeded" => 3,
        "icmp6-parameterproblem" => 4,
        "icmp6-echo" => 128,
        "icmp6-echoreply" => 129,
        "icmp6-multicastlistenerquery" => 130,
        "icmp6-multicastlistenerreportv1" => 131,
        "icmp6-multicastlistenerdone" => 132,
        "icmp6-routersolicit" => 133,
        "icmp6-routeradvert" => 134,
        "icmp6-neighborsolicit" => 135,
        "icmp6-neighboradvert" => 136,
        "icmp6-redirect" => 137,
        _ => return None,
    })
}

fn number(word: &str) -> Option<u32> {
    if let Some(hex) = word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if word.len() > 1 && word.starts_with('0') {
        u32::from_str_radix(&word[1..], 8).ok()
    } else {
        word.parse().ok()
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_is(&self, texts: &[&str]) -> bool {
        self.peek()
            .is_some_and(|t| texts.contains(&t.text.as_str()))
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn column(&self) -> usize {
        self.peek().map_or(self.end_column, |t| t.column)
    }

    fn error_at(&self, column: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            column,
            message: message.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        self.error_at(self.column(), message)
    }

    fn expect(&mut self, text: &str) -> Result<Token, ParseError> {
        match self.peek() {
            Some(t) if t.text == text => Ok(self.next().expect("peeked")),
            Some(t) => Err(self.error(format!("expected `{text}`, found `{}`", t.text))),
            None => Err(self.error(format!("expected `{text}` at the end"))),
        }
    }

    /// `and` and `or`: one level, left to right (pcap-filter(7)).
    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not_expr()?;
        loop {
            let and = self.peek_is(&["and", "&&"]);
            if !and && !self.peek_is(&["or", "||"]) {
                return Ok(left);
            }
            self.next();
            if self.peek().is_none() {
                return Err(self.error("an expression must follow `and`/`or`"));
            }
            let right = self.not_expr()?;
            left = if and {
                Expr::And(Box::new(left), Box::new(right))
            } else {
                Expr::Or(Box::new(left), Box::new(right))
            };
        }
    }

    fn not_expr(&mut self) -> Result<Expr, ParseError> {
        if self.peek_is(&["not", "!"]) {
            self.next();
            return Ok(Expr::Not(Box::new(self.not_expr()?)));
        }
        if self.peek_is(&["("]) && !self.parenthesised_arith() {
            let open = self.next().expect("peeked");
            let inner = self.or_expr()?;
            if !self.peek_is(&[")"]) {
                return Err(self.error_at(open.column, "`(` without its `)`"));
            }
            self.next();
            return Ok(inner);
        }
        if self.starts_relation() {
            return self.relation();
        }
        self.primitive()
    }

    /// Whether a `(` opens an arithmetic expression of a relation: its
    /// matching `)` is followed by a relational or arithmetic operator.
    fn parenthesised_arith(&self) -> bool {
        let mut depth = 0;
        for (i, t) in self.tokens[self.pos..].iter().enumerate() {
            match t.text.as_str() {
                "(" => depth += 1,
                ")" => {
                    depth -= 1;
                    if depth == 0 {
                        let after = self.tokens.get(self.pos + i + 1).map(|t| t.text.as_str());
                        return is_operator(after);
                    }
                }
                _ => {}
            }
        }
        false
    }

    /// Whether what follows is `arith relop arith`: `len`, a number, or a
    /// `proto[…]` load, followed (after its brackets) by an operator.
    fn starts_relation(&self) -> bool {
        let Some(t) = self.peek() else {
            return false;
        };
        let next = self.tokens.get(self.pos + 1).map(|t| t.text.as_str());
        if t.text == "len" {
            return true;
        }
        if next == Some("[") {
            return Proto::from_word(&t.text).is_some();
        }
        if (number(&t.text).is_some() || named_constant(&t.text).is_some()) && is_operator(next) {
            return true;
        }
        false
    }

    fn relation(&mut self) -> Result<Expr, ParseError> {
        let left = self.arith()?;
        let op = match self.peek().map(|t| t.text.as_str()) {
            Some("=" | "==") => RelOp::Eq,
            Some("!=") => RelOp::Ne,
            Some(">") => RelOp::Gt,
            Some(">=") => RelOp::Ge,
            Some("<") => RelOp::Lt,
            Some("<=") => RelOp::Le,
            _ => return Err(self.error("expected a comparison (=, !=, >, >=, <, <=)")),
        };
        self.next();
        let right = self.arith()?;
        Ok(Expr::Rel(left, op, right, self.offsets))
    }

    /// Arithmetic, libpcap's precedence: `* / %` above `+ -`, above the
    /// bitwise and shift operators; each level left to right.
    fn arith(&mut self) -> Result<Arith, ParseError> {
        self.arith_level(0)
    }

    fn arith_level(&mut self, level: usize) -> Result<Arith, ParseError> {
        const LEVELS: [&[(&str, BinOp)]; 3] = [
            &[
                ("&", BinOp::And),
                ("|", BinOp::Or),
                ("^", BinOp::Xor),
                ("<<", BinOp::Shl),
                (">>", BinOp::Shr),
            ],
            &[("+", BinOp::Add), ("-", BinOp::Sub)],
            &[("*", BinOp::Mul), ("/", BinOp::Div), ("%", BinOp::Mod)],
        ];
        if level == LEVELS.len() {
            return self.arith_unary();
        }
        let mut left = self.arith_level(level + 1)?;
        loop {
            let op = self.peek().and_then(|t| {
                LEVELS[level]
                    .iter()
                    .find(|(text, _)| *text == t.text)
                    .map(|(_, op)| *op)
            });
            let Some(op) = op else {
                return Ok(left);
            };
            self.next();
            let right = self.arith_level(level + 1)?;
            left = Arith::Bin(Box::new(left), op, Box::new(right));
        }
    }

    fn arith_unary(&mut self) -> Result<Arith, ParseError> {
        let column = self.column();
        let Some(t) = self.next() else {
            return Err(self.error("expected a number, `len` or a load at the end"));
        };
        match t.text.as_str() {
            "-" => Ok(Arith::Neg(Box::new(self.arith_unary()?))),
            "(" => {
                let inner = self.arith()?;
                self.expect(")")?;
                Ok(inner)
            }
            "len" => Ok(Arith::Len),
            word => {
                if let Some(proto) = Proto::from_word(word) {
                    if self.peek_is(&["["]) {
                        return self.load(proto, column);
                    }
                }
                if let Some(n) = number(word).or_else(|| named_constant(word)) {
                    return Ok(Arith::Num(n));
                }
                Err(self.error_at(column, format!("`{word}`: not a number, `len` or a load")))
            }
        }
    }

    fn load(&mut self, proto: Proto, _column: usize) -> Result<Arith, ParseError> {
        self.expect("[")?;
        let index = self.arith()?;
        let mut size = 1;
        if self.peek_is(&[":"]) {
            self.next();
            let t = self
                .next()
                .ok_or_else(|| self.error("expected a size 1, 2 or 4"))?;
            size = match t.text.as_str() {
                "1" => 1,
                "2" => 2,
                "4" => 4,
                other => {
                    return Err(self.error_at(t.column, format!("size {other}: 1, 2 or 4")));
                }
            };
        }
        self.expect("]")?;
        Ok(Arith::Load {
            proto,
            index: Box::new(index),
            size,
        })
    }

    fn primitive(&mut self) -> Result<Expr, ParseError> {
        let start = self.column();
        let mut quals = Quals::default();
        let mut any = false;
        // Qualifiers: [proto] [dir] [kind].
        if let Some(proto) = self.peek().and_then(|t| Proto::from_word(&t.text)) {
            self.next();
            quals.proto = Some(proto);
            any = true;
            // A protocol alone (`tcp`, `ip6`) or with broadcast/multicast/proto.
            let next = self.peek().map(|t| t.text.clone());
            match next.as_deref() {
                Some("broadcast") | Some("multicast") => {
                    let word = self.next().expect("peeked").text;
                    return self.cast(proto, &word, start);
                }
                Some("proto") => {}
                Some("src" | "dst" | "host" | "net" | "port" | "portrange") => {}
                _ => {
                    if proto == Proto::Ether {
                        return Err(self.error_at(
                            start,
                            "`ether` wants host, src, dst, proto, broadcast or multicast",
                        ));
                    }
                    return self.finish(Prim::Proto(proto), start);
                }
            }
        }
        if self.peek_is(&["src", "dst"]) {
            let first = self.next().expect("peeked").text;
            let mut dir = if first == "src" { Dir::Src } else { Dir::Dst };
            if self.peek_is(&["or", "and"])
                && self
                    .tokens
                    .get(self.pos + 1)
                    .is_some_and(|t| t.text == "src" || t.text == "dst")
            {
                let and = self.next().expect("peeked").text == "and";
                self.next();
                dir = if and { Dir::SrcAndDst } else { Dir::SrcOrDst };
            }
            quals.dir = Some(dir);
            any = true;
        }
        if let Some(kind) = self.peek().and_then(|t| match t.text.as_str() {
            "host" => Some(Kind::Host),
            "net" => Some(Kind::Net),
            "port" => Some(Kind::Port),
            "portrange" => Some(Kind::Portrange),
            "proto" => Some(Kind::Proto),
            _ => None,
        }) {
            self.next();
            quals.kind = Some(kind);
            any = true;
        }
        let Some(t) = self.peek().cloned() else {
            return Err(self.error("expected an address, a number or a name at the end"));
        };
        // Words that are primitives of their own.
        if !any {
            match t.text.as_str() {
                "vlan" => {
                    self.next();
                    return self.vlan(start);
                }
                "greater" | "less" => {
                    self.next();
                    let n = self.next_number("a length")?;
                    let prim = if t.text == "greater" {
                        Prim::Greater(n)
                    } else {
                        Prim::Less(n)
                    };
                    return self.finish(prim, start);
                }
                "broadcast" | "multicast" => {
                    return Err(self.error_at(
                        t.column,
                        format!("`{}` needs ether, ip or ip6 before it", t.text),
                    ));
                }
                "gateway" | "protochain" => {
                    return Err(self.error_at(t.column, format!("`{}` is not supported", t.text)));
                }
                _ => {}
            }
        }
        let quals = if any {
            quals
        } else {
            match self.last {
                Some(last) => last,
                None => {
                    if t.text.parse::<IpAddr>().is_ok() {
                        Quals::default()
                    } else if RESERVED.contains(&t.text.as_str()) {
                        return Err(self
                            .error_at(t.column, format!("`{}` needs something after it", t.text)));
                    } else {
                        return Err(self.error_at(
                            t.column,
                            format!(
                                "`{}`: unknown word (names that need a lookup are not supported)",
                                t.text
                            ),
                        ));
                    }
                }
            }
        };
        self.next();
        self.last = Some(quals);
        let prim = self.id_primitive(quals, &t)?;
        self.finish(prim, start)
    }

    fn finish(&mut self, prim: Prim, _start: usize) -> Result<Expr, ParseError> {
        Ok(Expr::Prim(prim, self.offsets))
    }

    fn next_number(&mut self, what: &str) -> Result<u32, ParseError> {
        let column = self.column();
        match self.next() {
            Some(t) => number(&t.text)
                .ok_or_else(|| self.error_at(column, format!("`{}`: expected {what}", t.text))),
            None => Err(self.error_at(column, format!("expected {what} at the end"))),
        }
    }

    fn vlan(&mut self, start: usize) -> Result<Expr, ParseError> {
        if self.link == Link::RawIp {
            return Err(self.error_at(
                start,
                "`vlan` on a link without an Ethernet header (raw IP)",
            ));
        }
        let id = match self.peek().and_then(|t| number(&t.text)) {
            Some(n) => {
                let column = self.column();
                self.next();
                if n > 4095 {
                    return Err(self.error_at(column, format!("VLAN {n}: at most 4095")));
                }
                Some(n as u16)
            }
            None => None,
        };
        let expr = Expr::Prim(Prim::Vlan(id), self.offsets);
        // Later tests look past the tag.
        self.offsets.ethertype += 4;
        self.offsets.network += 4;
        Ok(expr)
    }

    fn cast(&mut self, proto: Proto, word: &str, start: usize) -> Result<Expr, ParseError> {
        let prim = match (proto, word) {
            (Proto::Ether, "broadcast") => Prim::EtherBroadcast,
            (Proto::Ether, "multicast") => Prim::EtherMulticast,
            (Proto::Ip, "multicast") => Prim::IpMulticast,
            (Proto::Ip6, "multicast") => Prim::Ip6Multicast,
            (Proto::Ip, "broadcast") => {
                return Err(self.error_at(
                    start,
                    "`ip broadcast` needs the interface's netmask: not supported",
                ))
            }
            _ => return Err(self.error_at(start, format!("no {word} for this protocol"))),
        };
        if self.link == Link::RawIp && matches!(prim, Prim::EtherBroadcast | Prim::EtherMulticast) {
            return Err(self.error_at(
                start,
                "`ether` on a link without an Ethernet header (raw IP)",
            ));
        }
        self.finish(prim, start)
    }

    fn id_primitive(&mut self, quals: Quals, t: &Token) -> Result<Prim, ParseError> {
        let dir = quals.dir.unwrap_or(Dir::SrcOrDst);
        let word = t.text.as_str();
        let column = t.column;
        let bad = |message: String| ParseError { column, message };
        if quals.proto == Some(Proto::Ether) {
            if quals.kind == Some(Kind::Proto) {
                // libpcap: protocol names are keywords here (`\\arp`): numbers only.
                let n = number(word)
                    .filter(|n| *n <= 0xffff)
                    .ok_or_else(|| bad(format!("`{word}`: not an EtherType number")))?;
                return Ok(Prim::EtherProto(n as u16));
            }
            if self.link == Link::RawIp {
                return Err(bad(
                    "`ether` on a link without an Ethernet header (raw IP)".into()
                ));
            }
            if matches!(quals.kind, None | Some(Kind::Host)) {
                let mac: MacAddr = word
                    .parse()
                    .map_err(|_| bad(format!("`{word}`: not a MAC address")))?;
                return Ok(Prim::EtherHost { dir, mac: mac.0 });
            }
            return Err(bad(
                "`ether` takes host, src, dst, proto, broadcast or multicast".into(),
            ));
        }
        match quals.kind {
            Some(Kind::Proto) => {
                let n = match word {
                    "tcp" => 6,
                    "udp" => 17,
                    "icmp" => 1,
                    "icmp6" => 58,
                    "sctp" => 132,
                    _ => number(word)
                        .filter(|n| *n <= 255)
                        .ok_or_else(|| bad(format!("`{word}`: not a protocol number")))?,
                };
                match quals.proto {
                    None | Some(Proto::Ip) | Some(Proto::Ip6) => Ok(Prim::IpProto {
                        layer: quals.proto,
                        number: n as u8,
                    }),
                    Some(other) => Err(bad(format!(
                        "`proto` after {other:?}: only ip and ip6 have one"
                    ))),
                }
            }
            Some(Kind::Port) | Some(Kind::Portrange) => {
                if let Some(p) = quals.proto {
                    if !matches!(p, Proto::Tcp | Proto::Udp | Proto::Sctp) {
                        return Err(bad("ports are of tcp, udp or sctp".into()));
                    }
                }
                let (lo, hi) = if quals.kind == Some(Kind::Portrange) {
                    let (a, b) = word
                        .split_once('-')
                        .ok_or_else(|| bad(format!("`{word}`: expected a range A-B")))?;
                    (
                        port(a).ok_or_else(|| bad(format!("`{a}`: not a port number")))?,
                        port(b).ok_or_else(|| bad(format!("`{b}`: not a port number")))?,
                    )
                } else {
                    let p = port(word).ok_or_else(|| {
                        bad(format!(
                            "`{word}`: not a port number (service names are not supported)"
                        ))
                    })?;
                    (p, p)
                };
                Ok(Prim::Port {
                    proto: quals.proto,
                    dir,
                    lo: lo.min(hi),
                    hi: lo.max(hi),
                })
            }
            Some(Kind::Net) => {
                let (addr, prefix) = self.net(word, column)?;
                self.check_ip_proto(quals.proto, addr, column)?;
                Ok(Prim::Net {
                    proto: quals.proto,
                    dir,
                    addr,
                    prefix,
                })
            }
            Some(Kind::Host) | None => {
                let addr: IpAddr = word.parse().map_err(|_| {
                    bad(format!(
                        "`{word}`: not an IP address (host names are not supported)"
                    ))
                })?;
                self.check_ip_proto(quals.proto, addr, column)?;
                Ok(Prim::Host {
                    proto: quals.proto,
                    dir,
                    addr,
                })
            }
        }
    }

    fn check_ip_proto(
        &self,
        proto: Option<Proto>,
        addr: IpAddr,
        column: usize,
    ) -> Result<(), ParseError> {
        let ok = match proto {
            None => true,
            Some(Proto::Ip | Proto::Arp | Proto::Rarp) => addr.is_ipv4(),
            Some(Proto::Ip6) => addr.is_ipv6(),
            Some(_) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(self.error_at(column, format!("{addr} does not go with {proto:?}")))
        }
    }

    /// `N/LEN`, `N mask M`, or an address alone (all of it).
    fn net(&mut self, word: &str, column: usize) -> Result<(IpAddr, u8), ParseError> {
        let bad = |message: String| ParseError { column, message };
        let (addr, prefix) = match word.split_once('/') {
            Some((a, l)) => {
                let addr: IpAddr = a
                    .parse()
                    .map_err(|_| bad(format!("`{a}`: not an IP address")))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let len = l
                    .parse::<u8>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| bad(format!("`{l}`: not a prefix length (0-{max})")))?;
                (addr, len)
            }
            None => {
                let addr: IpAddr = word
                    .parse()
                    .map_err(|_| bad(format!("`{word}`: not an IP network")))?;
                let len = if self.peek_is(&["mask"]) {
                    self.next();
                    let column = self.column();
                    let m = self
                        .next()
                        .ok_or_else(|| self.error("expected a netmask"))?;
                    let mask: Ipv4Addr = m.text.parse().map_err(|_| {
                        self.error_at(column, format!("`{}`: not a netmask", m.text))
                    })?;
                    let bits = u32::from(mask);
                    if bits.leading_ones() + bits.trailing_zeros() != 32 {
                        return Err(
                            self.error_at(column, format!("{mask}: not a contiguous netmask"))
                        );
                    }
                    bits.leading_ones() as u8
                } else if addr.is_ipv4() {
                    32
                } else {
                    128
                };
                (addr, len)
            }
        };
        Ok((addr, prefix))
    }
}

/// Whether a token is a relational or arithmetic operator.
fn is_operator(token: Option<&str>) -> bool {
    const OPERATORS: &[&str] = &[
        "=", "==", "!=", ">", ">=", "<", "<=", "+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>",
    ];
    token.is_some_and(|t| OPERATORS.contains(&t))
}

fn port(word: &str) -> Option<u16> {
    number(word).and_then(|n| u16::try_from(n).ok())
}
