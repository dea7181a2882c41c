//! The packet model: a frame as a list of layers, decoded from bytes and
//! encoded back, in the JSON shape of FORMATS.md ("JSONL packet files").
//!
//! - [`decode`] never fails and never loses a byte: what it does not decode
//!   becomes a trailing [`Layer::Raw`], so `decode(d, lt, b).encode() == b`
//!   for every input, also for wrong lengths and checksums: decoded values
//!   are kept as they were. (One exception, the original's own: in
//!   [`Dialect::Original`], NDP options of a type it has no name for are
//!   left out, and a named option keeps only what its name holds.)
//! - [`Packet::encode`] computes every field that holds `"<auto>"` (lengths,
//!   checksums, EtherType, IP protocol / next header, ICMP types, header
//!   lengths) from the layers around it, and fills `"<random>"` fields.
//!
//! Two dialects decode the same bytes to different layer lists
//! ([`Dialect`]). The default is the original tool's, layer for layer, as
//! its packet library (oside) decodes: every layer reads its fixed header
//! and hands all the bytes after it to the next one, so IPv6 extension
//! headers, TCP options, IPv4 options and bytes past a length field (UDP
//! or Ethernet padding) end up in the one `raw` layer where it puts them.
//! [`Dialect::Full`] goes as deep as this model goes: extension headers
//! and options as such, trailers split off by the length fields, 802.1ad
//! and IPv6-in-IPv4. Both are read back, and every layer of either encodes.
//!
//! Layer names and field order follow the original: `ether`, `dot1Q`
//! (`prio`, `id` — the DEI bit —, `vlan`, `etype`), `Arp`, `Ip`, `Ipv6`,
//! `Icmp`, `echo`, `echoReply`, `Icmpv6` and its message layers
//! (`icmpv6DestUnreach`, `icmpv6PacketTooBig`, `icmpv6TimeExceeded`,
//! `icmpv6ParameterProblem`, `icmpv6EchoRequest`/`Reply`, the five NDP
//! messages), `Udp`, `Tcp`, `Gre`, `raw`. Only the full dialect writes
//! `Ipv6HopByHop` / `Ipv6Routing` / `Ipv6DestOptions` (`next_header`,
//! `hdr_ext_len`, `data`), `Ipv6Fragment` (`next_header`, `reserved`,
//! `fragment_offset`, `res`, `more_fragments`, `identification`), `Tcp`'s
//! `options` and non-empty `Ip` `options`. Options are externally tagged,
//! like the original's NDP options: `[{"Mss":1460},"SackPermitted","Nop",
//! {"WindowScale":7}]`; IPv4 options are `"Eol"`, `"Nop"` or
//! `{"Tlv":{"kind":148,"data":[0,0]}}`. Older spellings of ours are read
//! too: `Dot1Q` with `dei`, NDP `Mtu` and `PrefixInformation` with
//! `on_link`/`autonomous`.
//!
//! An `"<auto>"` length counts every layer after its header, so a packet
//! built with `<auto>` lengths should not carry Ethernet padding as `raw`.
//!
//! The fixed header layouts are read and written here field by field rather
//! than through etherparse's header types: those normalise what they write
//! (IHL from the options, checksums recomputed) and refuse malformed headers,
//! which a capture must still round-trip byte for byte. etherparse provides
//! the checksum arithmetic and the NDP option parsing.

use super::MacAddr as Mac;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr};

use etherparse::checksum::Sum16BitWords;
use etherparse::icmpv6::NdpOptionsIterator;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// PCAP link type of Ethernet frames (LINKTYPE_ETHERNET).
pub const LINKTYPE_ETHERNET: u32 = 1;
/// PCAP link type of bare IP packets, version from the first nibble.
pub const LINKTYPE_RAW: u32 = 101;
/// PCAP link type of bare IPv4 packets.
pub const LINKTYPE_IPV4: u32 = 228;
/// PCAP link type of bare IPv6 packets.
pub const LINKTYPE_IPV6: u32 = 229;

/// One field of a layer: a value, or `"<auto>"` / `"<random>"` (filled in on
/// encode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field<T> {
    Value(T),
    Auto,
    Random,
}

impl<T> From<T> for Field<T> {
    fn from(value: T) -> Self {
        Field::Value(value)
    }
}

impl<T: Serialize> Serialize for Field<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Field::Value(v) => v.serialize(s),
            Field::Auto => s.serialize_str("<auto>"),
            Field::Random => s.serialize_str("<random>"),
        }
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match v.as_str() {
            Some("<auto>") => Ok(Field::Auto),
            Some("<random>") => Ok(Field::Random),
            _ => T::deserialize(v)
                .map(Field::Value)
                .map_err(D::Error::custom),
        }
    }
}

/// A one-bit flag, written as JSON `true`/`false`; `0`/`1` are accepted too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub bool);

impl Serialize for Flag {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(self.0)
    }
}

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Bool(b) => Ok(Flag(b)),
            Value::Number(n) if n.as_u64() == Some(0) => Ok(Flag(false)),
            Value::Number(n) if n.as_u64() == Some(1) => Ok(Flag(true)),
            other => Err(D::Error::custom(format!(
                "expected true, false, 0 or 1, found {other}"
            ))),
        }
    }
}

/// A fresh random `u64`. std's `RandomState` is seeded from the OS once per
/// thread and advanced per instance, which is plenty for `"<random>"` field
/// values and saves a `rand` dependency.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

/// Types a `"<random>"` field can be filled with.
trait RandomValue: Sized {
    fn random() -> Self;
}

macro_rules! random_int {
    ($($t:ty),*) => {$(
        impl RandomValue for $t {
            fn random() -> Self {
                random_u64() as $t
            }
        }
    )*};
}
random_int!(u8, u16, u32);

impl RandomValue for Flag {
    fn random() -> Self {
        Flag(random_u64() & 1 == 1)
    }
}

impl RandomValue for Mac {
    fn random() -> Self {
        let b = random_u64().to_be_bytes();
        // Locally administered unicast, so a random MAC is a usable source.
        Mac([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    }
}

impl RandomValue for Ipv4Addr {
    fn random() -> Self {
        Ipv4Addr::from(random_u64() as u32)
    }
}

impl RandomValue for Ipv6Addr {
    fn random() -> Self {
        Ipv6Addr::from((u128::from(random_u64()) << 64) | u128::from(random_u64()))
    }
}

/// Replaces `"<random>"` by a value, before anything is computed from it.
trait ResolveRandom {
    fn resolve_random(&mut self);
}

impl<T: RandomValue> ResolveRandom for Field<T> {
    fn resolve_random(&mut self) {
        if matches!(self, Field::Random) {
            *self = Field::Value(T::random());
        }
    }
}

impl<T> ResolveRandom for Vec<T> {
    fn resolve_random(&mut self) {}
}

impl<T> ResolveRandom for Option<Vec<T>> {
    fn resolve_random(&mut self) {}
}

/// Field values whose width a layer limits further (4-bit IHL, 12-bit VLAN).
trait Width {
    fn wide(&self) -> u64;
}

impl<T: Copy + Into<u64>> Width for Field<T> {
    fn wide(&self) -> u64 {
        match self {
            Field::Value(v) => (*v).into(),
            _ => 0,
        }
    }
}

/// A `LayerError` of a formatted message.
macro_rules! err {
    ($($t:tt)*) => {
        $crate::layers::LayerError(format!($($t)*))
    };
}
pub(crate) use err;

/// Defines a layer's struct, its field order on output, and the reader that
/// names the field that is missing or does not fit. `= default` makes a key
/// optional (the keys the original did not write); `max N` limits a field
/// that is narrower than its Rust type.
macro_rules! layer_struct {
    ($(#[$m:meta])* $name:ident { $( $(#[$fm:meta])* $field:ident : $ty:ty $(= $default:expr)? $(; max $max:expr)? ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize)]
        pub struct $name {
            $( $(#[$fm])* pub $field: $ty, )*
        }

        impl $name {
            /// The JSON keys, in their order.
            #[allow(dead_code)]
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            fn from_object(obj: &Map<String, Value>) -> Result<Self, LayerError> {
                Ok($name {
                    $( $field: {
                        let value: $ty = match obj.get(stringify!($field)) {
                            Some(v) => <$ty>::deserialize(v)
                                .map_err(|e| err!("{}: {e}", stringify!($field)))?,
                            None => layer_struct!(@default $field $($default)?),
                        };
                        $( if value.wide() > $max {
                            return Err(err!(
                                "{}: {} does not fit (at most {})",
                                stringify!($field), value.wide(), $max
                            ));
                        } )?
                        value
                    }, )*
                })
            }

            // Not every struct the macro makes is a whole layer.
            #[allow(dead_code)]
            fn resolve_random(&mut self) {
                $( self.$field.resolve_random(); )*
            }
        }
    };
    (@default $field:ident) => {
        return Err(err!("missing field `{}`", stringify!($field)))
    };
    (@default $field:ident $default:expr) => {
        $default
    };
}

type F<T> = Field<T>;

layer_struct!(
    /// Ethernet II header.
    Ether { dst: F<Mac>, src: F<Mac>, etype: F<u16> }
);
layer_struct!(
    /// 802.1Q / 802.1ad VLAN tag (the `etype` after it); `id` is the DEI
    /// (CFI) bit, as the original names it.
    Dot1Q { prio: F<u8>; max 7, id: F<u8>; max 1, vlan: F<u16>; max 4095, etype: F<u16> }
);
layer_struct!(
    /// ARP for 6-byte hardware and 4-byte protocol addresses.
    Arp {
        hwtype: F<u16>, ptype: F<u16>, hwlen: F<u8>, plen: F<u8>, op: F<u16>,
        hwsrc: F<Mac>, psrc: F<Ipv4Addr>, hwdst: F<Mac>, pdst: F<Ipv4Addr>,
    }
);
layer_struct!(
    /// The IPv4 flags and fragment offset.
    IpFlags {
        reserved: F<Flag>, dont_fragment: F<Flag>, more_fragments: F<Flag>,
        fragment_offset: F<u16>; max 0x1fff,
    }
);
layer_struct!(
    /// IPv4 header with its options (the original dialect leaves options
    /// in the bytes after the fixed header).
    Ip {
        version: F<u8>; max 15, ihl: F<u8>; max 15, tos: F<u8>, len: F<u16>, id: F<u16>,
        flags: IpFlagsField, ttl: F<u8>, proto: F<u8>, chksum: F<u16>,
        src: F<Ipv4Addr>, dst: F<Ipv4Addr>, options: Vec<Ipv4Option> = Vec::new(),
    }
);
layer_struct!(
    /// IPv6 fixed header.
    Ipv6 {
        version_class: F<u32>, payload_length: F<u16>, next_header: F<u8>,
        hop_limit: F<u8>, src: F<Ipv6Addr>, dst: F<Ipv6Addr>,
    }
);
layer_struct!(
    /// An IPv6 hop-by-hop, routing or destination options header; `data` is
    /// everything after its first two bytes.
    Ipv6ExtHeader { next_header: F<u8>, hdr_ext_len: F<u8>, data: Vec<u8> }
);
layer_struct!(
    /// IPv6 fragment header.
    Ipv6Fragment {
        next_header: F<u8>, reserved: F<u8>, fragment_offset: F<u16>; max 0x1fff,
        res: F<u8>; max 3, more_fragments: F<Flag>, identification: F<u32>,
    }
);
layer_struct!(
    /// ICMP header (the part every type has).
    Icmp { typ: F<u8>, code: F<u8>, chksum: F<u16> }
);
layer_struct!(
    /// ICMP / ICMPv6 echo request or reply body.
    Echo { identifier: F<u16>, sequence: F<u16> }
);
layer_struct!(
    /// ICMPv6 header (the part every type has).
    Icmpv6 { type_: F<u8>, code: F<u8>, checksum: F<u16> }
);
layer_struct!(
    /// ICMPv6 destination unreachable or time exceeded body: the quoted
    /// packet stays bytes, as the original keeps it.
    Icmpv6Error { unused: F<u32>, invoking_packet: Vec<u8> }
);
layer_struct!(
    /// ICMPv6 packet too big body.
    PacketTooBig { mtu: F<u32>, invoking_packet: Vec<u8> }
);
layer_struct!(
    /// ICMPv6 parameter problem body.
    ParameterProblem { pointer: F<u32>, invoking_packet: Vec<u8> }
);
layer_struct!(
    /// ICMPv6 neighbor solicitation body.
    NeighborSolicitation { reserved: F<u32>, target_address: F<Ipv6Addr>, options: Vec<NdpOption> }
);
layer_struct!(
    /// ICMPv6 neighbor advertisement body (R/S/O in the top bits of `flags`).
    NeighborAdvertisement { flags: F<u32>, target_address: F<Ipv6Addr>, options: Vec<NdpOption> }
);
layer_struct!(
    /// ICMPv6 router solicitation body (`reserved` is optional on input:
    /// older files of the original have only `options`).
    RouterSolicitation { reserved: F<u32> = Field::Value(0), options: Vec<NdpOption> }
);
layer_struct!(
    /// ICMPv6 router advertisement body.
    RouterAdvertisement {
        cur_hop_limit: F<u8>, flags: F<u8>, router_lifetime: F<u16>, reachable_time: F<u32>,
        retrans_timer: F<u32>, options: Vec<NdpOption>,
    }
);
layer_struct!(
    /// ICMPv6 redirect body.
    Redirect {
        reserved: F<u32>, target_address: F<Ipv6Addr>, destination_address: F<Ipv6Addr>,
        options: Vec<NdpOption>,
    }
);
layer_struct!(
    /// UDP header.
    Udp { sport: F<u16>, dport: F<u16>, len: F<u16>, chksum: F<u16> }
);
layer_struct!(
    /// TCP header; `flags` is the byte of CWR..FIN, `reserved` the four bits
    /// before it (NS included). `options` only in the full dialect: the
    /// original leaves them in the bytes after the fixed header.
    Tcp {
        sport: F<u16>, dport: F<u16>, seq: F<u32>, ack: F<u32>, dataofs: F<u8>; max 15,
        reserved: F<u8>; max 15, flags: F<u8>, window: F<u16>, chksum: F<u16>, urgptr: F<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        options: Option<Vec<TcpOption>> = None,
    }
);
layer_struct!(
    /// GRE header (RFC 2784/2890, and the PPTP flavour's acknowledgment),
    /// as the original writes it: every optional field is there, 0 when
    /// its flag says it is absent; `routing` is never decoded.
    Gre {
        chksum_present: F<Flag>, routing_present: F<Flag>, key_present: F<Flag>,
        seqnum_present: F<Flag>, strict_source_route: F<Flag>, recursion_control: F<u8>; max 7,
        acknum_present: F<Flag>, flags: F<u8>; max 15, version: F<u8>; max 7, proto: F<u16>,
        chksum: F<u16>, ignored_chksum: F<u16>, reserved1: F<u16>, routing_offset: F<u16>,
        key: F<u32>, sequence_number: F<u32>, ack_number: F<u32>, routing: Vec<u8> = Vec::new(),
    }
);
layer_struct!(
    /// Bytes not decoded further.
    Raw { data: Vec<u8> }
);

/// `Ip.flags`: an object, read with the same field-naming errors as a layer.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct IpFlagsField(pub IpFlags);

impl<'de> Deserialize<'de> for IpFlagsField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Object(obj) => IpFlags::from_object(&obj)
                .map(IpFlagsField)
                .map_err(D::Error::custom),
            other => Err(D::Error::custom(format!(
                "expected an object, found {other}"
            ))),
        }
    }
}

impl ResolveRandom for IpFlagsField {
    fn resolve_random(&mut self) {
        self.0.resolve_random();
    }
}

/// An IPv4 option. `Byte` holds a lone byte that is not a well-formed option
/// (so malformed option bytes still round-trip).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Ipv4Option {
    Eol,
    Nop,
    Tlv { kind: u8, data: Vec<u8> },
    Byte(u8),
}

/// A TCP option, by name where it has one. `Byte` as in [`Ipv4Option`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TcpOption {
    Eol,
    Nop,
    Mss(u16),
    WindowScale(u8),
    SackPermitted,
    Sack(Vec<(u32, u32)>),
    Timestamp { tsval: u32, tsecr: u32 },
    Unknown { kind: u8, data: Vec<u8> },
    Byte(u8),
}

/// An NDP option (RFC 4861), with the original's names (`MTU`,
/// `PrefixInformation` with its flag byte). `Unknown` keeps any other
/// option, and a known one whose bytes the named form would not give back
/// (the full dialect only: the original drops both).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum NdpOption {
    SourceLinkLayerAddress(Mac),
    TargetLinkLayerAddress(Mac),
    PrefixInformation {
        prefix_length: u8,
        /// L (0x80) and A (0x40), and the reserved bits.
        flags: u8,
        valid_lifetime: u32,
        preferred_lifetime: u32,
        prefix: Ipv6Addr,
    },
    #[serde(rename = "MTU")]
    Mtu(u32),
    Unknown {
        #[serde(rename = "type")]
        type_: u8,
        data: Vec<u8>,
    },
}

impl<'de> Deserialize<'de> for NdpOption {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// A prefix option in the original's form (`flags`) or in our
        /// older one (`on_link`, `autonomous`).
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Prefix {
            prefix_length: u8,
            flags: Option<u8>,
            on_link: Option<bool>,
            autonomous: Option<bool>,
            valid_lifetime: u32,
            preferred_lifetime: u32,
            prefix: Ipv6Addr,
        }
        #[derive(Deserialize)]
        enum Any {
            SourceLinkLayerAddress(Mac),
            TargetLinkLayerAddress(Mac),
            PrefixInformation(Prefix),
            #[serde(rename = "MTU", alias = "Mtu")]
            Mtu(u32),
            Unknown {
                #[serde(rename = "type")]
                type_: u8,
                data: Vec<u8>,
            },
        }
        Ok(match Any::deserialize(d)? {
            Any::SourceLinkLayerAddress(m) => NdpOption::SourceLinkLayerAddress(m),
            Any::TargetLinkLayerAddress(m) => NdpOption::TargetLinkLayerAddress(m),
            Any::PrefixInformation(p) => NdpOption::PrefixInformation {
                prefix_length: p.prefix_length,
                flags: p.flags.unwrap_or(
                    (u8::from(p.on_link == Some(true)) << 7)
                        | (u8::from(p.autonomous == Some(true)) << 6),
                ),
                valid_lifetime: p.valid_lifetime,
                preferred_lifetime: p.preferred_lifetime,
                prefix: p.prefix,
            },
            Any::Mtu(mtu) => NdpOption::Mtu(mtu),
            Any::Unknown { type_, data } => NdpOption::Unknown { type_, data },
        })
    }
}

/// One layer of a packet; `layertype` in JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "layertype")]
pub enum Layer {
    #[serde(rename = "ether")]
    Ether(Ether),
    #[serde(rename = "dot1Q")]
    Dot1Q(Dot1Q),
    Arp(Arp),
    Ip(Ip),
    Ipv6(Ipv6),
    Ipv6HopByHop(Ipv6ExtHeader),
    Ipv6Routing(Ipv6ExtHeader),
    Ipv6DestOptions(Ipv6ExtHeader),
    Ipv6Fragment(Ipv6Fragment),
    Icmp(Icmp),
    #[serde(rename = "echo")]
    Echo(Echo),
    #[serde(rename = "echoReply")]
    EchoReply(Echo),
    Icmpv6(Icmpv6),
    #[serde(rename = "icmpv6DestUnreach")]
    DestUnreach(Icmpv6Error),
    #[serde(rename = "icmpv6PacketTooBig")]
    PacketTooBig(PacketTooBig),
    #[serde(rename = "icmpv6TimeExceeded")]
    TimeExceeded(Icmpv6Error),
    #[serde(rename = "icmpv6ParameterProblem")]
    ParameterProblem(ParameterProblem),
    #[serde(rename = "icmpv6EchoRequest")]
    Icmpv6EchoRequest(Echo),
    #[serde(rename = "icmpv6EchoReply")]
    Icmpv6EchoReply(Echo),
    #[serde(rename = "icmpv6RouterSolicitation")]
    RouterSolicitation(RouterSolicitation),
    #[serde(rename = "icmpv6RouterAdvertisement")]
    RouterAdvertisement(RouterAdvertisement),
    #[serde(rename = "icmpv6NeighborSolicitation")]
    NeighborSolicitation(NeighborSolicitation),
    #[serde(rename = "icmpv6NeighborAdvertisement")]
    NeighborAdvertisement(NeighborAdvertisement),
    #[serde(rename = "icmpv6Redirect")]
    Redirect(Redirect),
    Udp(Udp),
    Tcp(Tcp),
    Gre(Gre),
    #[serde(rename = "raw")]
    Raw(Raw),
}

impl Layer {
    /// The `layertype` name.
    pub fn name(&self) -> &'static str {
        match self {
            Layer::Ether(_) => "ether",
            Layer::Dot1Q(_) => "dot1Q",
            Layer::Arp(_) => "Arp",
            Layer::Ip(_) => "Ip",
            Layer::Ipv6(_) => "Ipv6",
            Layer::Ipv6HopByHop(_) => "Ipv6HopByHop",
            Layer::Ipv6Routing(_) => "Ipv6Routing",
            Layer::Ipv6DestOptions(_) => "Ipv6DestOptions",
            Layer::Ipv6Fragment(_) => "Ipv6Fragment",
            Layer::Icmp(_) => "Icmp",
            Layer::Echo(_) => "echo",
            Layer::EchoReply(_) => "echoReply",
            Layer::Icmpv6(_) => "Icmpv6",
            Layer::DestUnreach(_) => "icmpv6DestUnreach",
            Layer::PacketTooBig(_) => "icmpv6PacketTooBig",
            Layer::TimeExceeded(_) => "icmpv6TimeExceeded",
            Layer::ParameterProblem(_) => "icmpv6ParameterProblem",
            Layer::Icmpv6EchoRequest(_) => "icmpv6EchoRequest",
            Layer::Icmpv6EchoReply(_) => "icmpv6EchoReply",
            Layer::RouterSolicitation(_) => "icmpv6RouterSolicitation",
            Layer::RouterAdvertisement(_) => "icmpv6RouterAdvertisement",
            Layer::NeighborSolicitation(_) => "icmpv6NeighborSolicitation",
            Layer::NeighborAdvertisement(_) => "icmpv6NeighborAdvertisement",
            Layer::Redirect(_) => "icmpv6Redirect",
            Layer::Udp(_) => "Udp",
            Layer::Tcp(_) => "Tcp",
            Layer::Gre(_) => "Gre",
            Layer::Raw(_) => "raw",
        }
    }

    /// The field names (JSON keys, without `layertype`) of the layer type
    /// called `layertype`, or None for a name no layer has.
    pub fn field_names(layertype: &str) -> Option<&'static [&'static str]> {
        Some(match layertype {
            "ether" => Ether::FIELDS,
            "dot1Q" => Dot1Q::FIELDS,
            "Arp" => Arp::FIELDS,
            "Ip" => Ip::FIELDS,
            "Ipv6" => Ipv6::FIELDS,
            "Ipv6HopByHop" | "Ipv6Routing" | "Ipv6DestOptions" => Ipv6ExtHeader::FIELDS,
            "Ipv6Fragment" => Ipv6Fragment::FIELDS,
            "Icmp" => Icmp::FIELDS,
            "echo" | "echoReply" | "icmpv6EchoRequest" | "icmpv6EchoReply" => Echo::FIELDS,
            "Icmpv6" => Icmpv6::FIELDS,
            "icmpv6DestUnreach" | "icmpv6TimeExceeded" => Icmpv6Error::FIELDS,
            "icmpv6PacketTooBig" => PacketTooBig::FIELDS,
            "icmpv6ParameterProblem" => ParameterProblem::FIELDS,
            "icmpv6RouterSolicitation" => RouterSolicitation::FIELDS,
            "icmpv6RouterAdvertisement" => RouterAdvertisement::FIELDS,
            "icmpv6NeighborSolicitation" => NeighborSolicitation::FIELDS,
            "icmpv6NeighborAdvertisement" => NeighborAdvertisement::FIELDS,
            "icmpv6Redirect" => Redirect::FIELDS,
            "Udp" => Udp::FIELDS,
            "Tcp" => Tcp::FIELDS,
            "Gre" => Gre::FIELDS,
            "raw" => Raw::FIELDS,
            _ => return None,
        })
    }

    /// Every layer type's name, as `layertype` writes it.
    pub const NAMES: &'static [&'static str] = &[
        "ether",
        "dot1Q",
        "Arp",
        "Ip",
        "Ipv6",
        "Ipv6HopByHop",
        "Ipv6Routing",
        "Ipv6DestOptions",
        "Ipv6Fragment",
        "Icmp",
        "echo",
        "echoReply",
        "Icmpv6",
        "icmpv6DestUnreach",
        "icmpv6PacketTooBig",
        "icmpv6TimeExceeded",
        "icmpv6ParameterProblem",
        "icmpv6EchoRequest",
        "icmpv6EchoReply",
        "icmpv6RouterSolicitation",
        "icmpv6RouterAdvertisement",
        "icmpv6NeighborSolicitation",
        "icmpv6NeighborAdvertisement",
        "icmpv6Redirect",
        "Udp",
        "Tcp",
        "Gre",
        "raw",
    ];

    /// Reads a layer from its JSON object (keys in any order). The error
    /// names the layertype and the field: "Udp: sport: invalid value: …".
    pub fn from_json(value: &Value) -> Result<Layer, LayerError> {
        let Value::Object(obj) = value else {
            return Err(err!("a layer must be a JSON object, found {value}"));
        };
        let Some(name) = obj.get("layertype") else {
            return Err("layer without `layertype`".into());
        };
        let Some(name) = name.as_str() else {
            return Err(err!("`layertype` must be a string, found {name}"));
        };
        let layer = match name {
            "ether" => Ether::from_object(obj).map(Layer::Ether),
            "dot1Q" => Dot1Q::from_object(obj).map(Layer::Dot1Q),
            // Our older name, with the DEI bit as `dei` (true/false).
            "Dot1Q" => {
                let mut obj = obj.clone();
                if let Some(dei) = obj.remove("dei") {
                    let bit = match dei {
                        Value::Bool(b) => Value::from(u8::from(b)),
                        other => other,
                    };
                    obj.entry("id").or_insert(bit);
                }
                Dot1Q::from_object(&obj).map(Layer::Dot1Q)
            }
            "Arp" => Arp::from_object(obj).map(Layer::Arp),
            "Ip" => Ip::from_object(obj).map(Layer::Ip),
            "Ipv6" => Ipv6::from_object(obj).map(Layer::Ipv6),
            "Ipv6HopByHop" => Ipv6ExtHeader::from_object(obj).map(Layer::Ipv6HopByHop),
            "Ipv6Routing" => Ipv6ExtHeader::from_object(obj).map(Layer::Ipv6Routing),
            "Ipv6DestOptions" => Ipv6ExtHeader::from_object(obj).map(Layer::Ipv6DestOptions),
            "Ipv6Fragment" => Ipv6Fragment::from_object(obj).map(Layer::Ipv6Fragment),
            "Icmp" => Icmp::from_object(obj).map(Layer::Icmp),
            "echo" => Echo::from_object(obj).map(Layer::Echo),
            "echoReply" => Echo::from_object(obj).map(Layer::EchoReply),
            "Icmpv6" => Icmpv6::from_object(obj).map(Layer::Icmpv6),
            "icmpv6DestUnreach" => Icmpv6Error::from_object(obj).map(Layer::DestUnreach),
            "icmpv6PacketTooBig" => PacketTooBig::from_object(obj).map(Layer::PacketTooBig),
            "icmpv6TimeExceeded" => Icmpv6Error::from_object(obj).map(Layer::TimeExceeded),
            "icmpv6ParameterProblem" => {
                ParameterProblem::from_object(obj).map(Layer::ParameterProblem)
            }
            "icmpv6EchoRequest" => Echo::from_object(obj).map(Layer::Icmpv6EchoRequest),
            "icmpv6EchoReply" => Echo::from_object(obj).map(Layer::Icmpv6EchoReply),
            "icmpv6NeighborSolicitation" => {
                NeighborSolicitation::from_object(obj).map(Layer::NeighborSolicitation)
            }
            "icmpv6NeighborAdvertisement" => {
                NeighborAdvertisement::from_object(obj).map(Layer::NeighborAdvertisement)
            }
            "icmpv6RouterSolicitation" => {
                RouterSolicitation::from_object(obj).map(Layer::RouterSolicitation)
            }
            "icmpv6RouterAdvertisement" => {
                RouterAdvertisement::from_object(obj).map(Layer::RouterAdvertisement)
            }
            "icmpv6Redirect" => Redirect::from_object(obj).map(Layer::Redirect),
            "Udp" => Udp::from_object(obj).map(Layer::Udp),
            "Tcp" => Tcp::from_object(obj).map(Layer::Tcp),
            "Gre" => Gre::from_object(obj).map(Layer::Gre),
            "raw" => Raw::from_object(obj).map(Layer::Raw),
            other => return Err(err!("unknown layertype `{other}`")),
        };
        layer.map_err(|e| err!("{name}: {e}"))
    }

    fn resolve_random(&mut self) {
        match self {
            Layer::Ether(l) => l.resolve_random(),
            Layer::Dot1Q(l) => l.resolve_random(),
            Layer::Arp(l) => l.resolve_random(),
            Layer::Ip(l) => l.resolve_random(),
            Layer::Ipv6(l) => l.resolve_random(),
            Layer::Ipv6HopByHop(l) | Layer::Ipv6Routing(l) | Layer::Ipv6DestOptions(l) => {
                l.resolve_random()
            }
            Layer::Ipv6Fragment(l) => l.resolve_random(),
            Layer::Icmp(l) => l.resolve_random(),
            Layer::Echo(l)
            | Layer::EchoReply(l)
            | Layer::Icmpv6EchoRequest(l)
            | Layer::Icmpv6EchoReply(l) => l.resolve_random(),
            Layer::Icmpv6(l) => l.resolve_random(),
            Layer::DestUnreach(l) | Layer::TimeExceeded(l) => l.resolve_random(),
            Layer::PacketTooBig(l) => l.resolve_random(),
            Layer::ParameterProblem(l) => l.resolve_random(),
            Layer::NeighborSolicitation(l) => l.resolve_random(),
            Layer::NeighborAdvertisement(l) => l.resolve_random(),
            Layer::RouterSolicitation(l) => l.resolve_random(),
            Layer::RouterAdvertisement(l) => l.resolve_random(),
            Layer::Redirect(l) => l.resolve_random(),
            Layer::Udp(l) => l.resolve_random(),
            Layer::Tcp(l) => l.resolve_random(),
            Layer::Gre(l) => l.resolve_random(),
            Layer::Raw(_) => {}
        }
    }

    /// The EtherType that announces this layer, for an `"<auto>"` etype
    /// or GRE protocol.
    fn ethertype(&self) -> Option<u16> {
        match self {
            Layer::Ip(_) => Some(0x0800),
            Layer::Ipv6(_) => Some(0x86dd),
            Layer::Arp(_) => Some(0x0806),
            Layer::Dot1Q(_) => Some(0x8100),
            // Transparent Ethernet bridging: a frame inside GRE.
            Layer::Ether(_) => Some(0x6558),
            _ => None,
        }
    }

    /// The IP protocol / next header number of this layer.
    fn ip_protocol(&self) -> Option<u8> {
        match self {
            Layer::Ipv6HopByHop(_) => Some(0),
            Layer::Icmp(_) => Some(1),
            Layer::Ip(_) => Some(4),
            Layer::Tcp(_) => Some(6),
            Layer::Udp(_) => Some(17),
            Layer::Ipv6(_) => Some(41),
            Layer::Ipv6Routing(_) => Some(43),
            Layer::Ipv6Fragment(_) => Some(44),
            Layer::Gre(_) => Some(47),
            Layer::Icmpv6(_) => Some(58),
            Layer::Ipv6DestOptions(_) => Some(60),
            _ => None,
        }
    }

    /// The ICMPv6 type that announces this message layer.
    fn icmpv6_type(&self) -> Option<u8> {
        match self {
            Layer::DestUnreach(_) => Some(1),
            Layer::PacketTooBig(_) => Some(2),
            Layer::TimeExceeded(_) => Some(3),
            Layer::ParameterProblem(_) => Some(4),
            Layer::Icmpv6EchoRequest(_) => Some(128),
            Layer::Icmpv6EchoReply(_) => Some(129),
            Layer::RouterSolicitation(_) => Some(133),
            Layer::RouterAdvertisement(_) => Some(134),
            Layer::NeighborSolicitation(_) => Some(135),
            Layer::NeighborAdvertisement(_) => Some(136),
            Layer::Redirect(_) => Some(137),
            _ => None,
        }
    }

    /// Whether only the full dialect writes this layer as it is: the
    /// original decodes none of these (it leaves their bytes raw).
    fn is_full_only(&self) -> bool {
        match self {
            Layer::Ipv6HopByHop(_)
            | Layer::Ipv6Routing(_)
            | Layer::Ipv6DestOptions(_)
            | Layer::Ipv6Fragment(_) => true,
            Layer::Ip(ip) => !ip.options.is_empty(),
            Layer::Tcp(tcp) => tcp.options.is_some(),
            Layer::NeighborSolicitation(NeighborSolicitation { options, .. })
            | Layer::NeighborAdvertisement(NeighborAdvertisement { options, .. })
            | Layer::RouterSolicitation(RouterSolicitation { options, .. })
            | Layer::RouterAdvertisement(RouterAdvertisement { options, .. })
            | Layer::Redirect(Redirect { options, .. }) => options
                .iter()
                .any(|o| matches!(o, NdpOption::Unknown { .. })),
            _ => false,
        }
    }

    /// The field that names the next layer's protocol (`etype`, `proto`,
    /// `next_header`), for an editor that adds or removes the layer after.
    pub fn next_protocol_field(&self) -> Option<&'static str> {
        match self {
            Layer::Ether(_) | Layer::Dot1Q(_) => Some("etype"),
            Layer::Ip(_) => Some("proto"),
            Layer::Gre(_) => Some("proto"),
            Layer::Ipv6(_)
            | Layer::Ipv6HopByHop(_)
            | Layer::Ipv6Routing(_)
            | Layer::Ipv6DestOptions(_)
            | Layer::Ipv6Fragment(_) => Some("next_header"),
            Layer::Icmp(_) => Some("typ"),
            Layer::Icmpv6(_) => Some("type_"),
            _ => None,
        }
    }

    /// The fields `"<auto>"` computes from the other layers (lengths and
    /// checksums), which an editor's "fix" sets back to `<auto>`.
    pub fn computed_fields(&self) -> &'static [&'static str] {
        match self {
            Layer::Ip(_) => &["ihl", "len", "chksum"],
            Layer::Ipv6(_) => &["payload_length"],
            Layer::Ipv6HopByHop(_) | Layer::Ipv6Routing(_) | Layer::Ipv6DestOptions(_) => {
                &["hdr_ext_len"]
            }
            Layer::Udp(_) => &["len", "chksum"],
            Layer::Tcp(_) => &["dataofs", "chksum"],
            Layer::Icmp(_) => &["chksum"],
            Layer::Icmpv6(_) => &["checksum"],
            Layer::Gre(g) if g.chksum_present == Field::Value(Flag(true)) => &["chksum"],
            _ => &[],
        }
    }

    /// Where a field's bytes are in this layer's header of `len` bytes.
    /// Fields sharing bits (version and ihl) share their bytes.
    pub fn field_span(&self, field: &str, len: usize) -> Option<std::ops::Range<usize>> {
        let fixed: &[(&str, usize, usize)] = match self {
            Layer::Ether(_) => &[("dst", 0, 6), ("src", 6, 12), ("etype", 12, 14)],
            Layer::Dot1Q(_) => &[
                ("prio", 0, 2),
                ("id", 0, 2),
                ("vlan", 0, 2),
                ("etype", 2, 4),
            ],
            Layer::Arp(_) => &[
                ("hwtype", 0, 2),
                ("ptype", 2, 4),
                ("hwlen", 4, 5),
                ("plen", 5, 6),
                ("op", 6, 8),
                ("hwsrc", 8, 14),
                ("psrc", 14, 18),
                ("hwdst", 18, 24),
                ("pdst", 24, 28),
            ],
            Layer::Ip(_) => &[
                ("version", 0, 1),
                ("ihl", 0, 1),
                ("tos", 1, 2),
                ("len", 2, 4),
                ("id", 4, 6),
                ("flags", 6, 8),
                ("ttl", 8, 9),
                ("proto", 9, 10),
                ("chksum", 10, 12),
                ("src", 12, 16),
                ("dst", 16, 20),
                ("options", 20, len),
            ],
            Layer::Ipv6(_) => &[
                ("version_class", 0, 4),
                ("payload_length", 4, 6),
                ("next_header", 6, 7),
                ("hop_limit", 7, 8),
                ("src", 8, 24),
                ("dst", 24, 40),
            ],
            Layer::Ipv6HopByHop(_) | Layer::Ipv6Routing(_) | Layer::Ipv6DestOptions(_) => &[
                ("next_header", 0, 1),
                ("hdr_ext_len", 1, 2),
                ("data", 2, len),
            ],
            Layer::Ipv6Fragment(_) => &[
                ("next_header", 0, 1),
                ("reserved", 1, 2),
                ("fragment_offset", 2, 4),
                ("res", 2, 4),
                ("more_fragments", 2, 4),
                ("identification", 4, 8),
            ],
            Layer::Icmp(_) => &[("typ", 0, 1), ("code", 1, 2), ("chksum", 2, 4)],
            Layer::Icmpv6(_) => &[("type_", 0, 1), ("code", 1, 2), ("checksum", 2, 4)],
            Layer::Echo(_)
            | Layer::EchoReply(_)
            | Layer::Icmpv6EchoRequest(_)
            | Layer::Icmpv6EchoReply(_) => &[("identifier", 0, 2), ("sequence", 2, 4)],
            Layer::DestUnreach(_) | Layer::TimeExceeded(_) => {
                &[("unused", 0, 4), ("invoking_packet", 4, len)]
            }
            Layer::PacketTooBig(_) => &[("mtu", 0, 4), ("invoking_packet", 4, len)],
            Layer::ParameterProblem(_) => &[("pointer", 0, 4), ("invoking_packet", 4, len)],
            Layer::NeighborSolicitation(_) => &[
                ("reserved", 0, 4),
                ("target_address", 4, 20),
                ("options", 20, len),
            ],
            Layer::NeighborAdvertisement(_) => &[
                ("flags", 0, 4),
                ("target_address", 4, 20),
                ("options", 20, len),
            ],
            Layer::RouterSolicitation(_) => &[("reserved", 0, 4), ("options", 4, len)],
            Layer::RouterAdvertisement(_) => &[
                ("cur_hop_limit", 0, 1),
                ("flags", 1, 2),
                ("router_lifetime", 2, 4),
                ("reachable_time", 4, 8),
                ("retrans_timer", 8, 12),
                ("options", 12, len),
            ],
            Layer::Redirect(_) => &[
                ("reserved", 0, 4),
                ("target_address", 4, 20),
                ("destination_address", 20, 36),
                ("options", 36, len),
            ],
            Layer::Udp(_) => &[
                ("sport", 0, 2),
                ("dport", 2, 4),
                ("len", 4, 6),
                ("chksum", 6, 8),
            ],
            Layer::Tcp(_) => &[
                ("sport", 0, 2),
                ("dport", 2, 4),
                ("seq", 4, 8),
                ("ack", 8, 12),
                ("dataofs", 12, 13),
                ("reserved", 12, 13),
                ("flags", 13, 14),
                ("window", 14, 16),
                ("chksum", 16, 18),
                ("urgptr", 18, 20),
                ("options", 20, len),
            ],
            Layer::Gre(g) => return gre_field_span(g, field, len),
            Layer::Raw(_) => &[("data", 0, len)],
        };
        fixed
            .iter()
            .find(|(name, ..)| *name == field)
            .map(|&(_, start, end)| start.min(len)..end.min(len))
            .filter(|r| !r.is_empty())
    }
}

/// A GRE field's bytes: the optional ones are where their flags put them.
fn gre_field_span(g: &Gre, field: &str, len: usize) -> Option<std::ops::Range<usize>> {
    let on = |f: &Field<Flag>| matches!(f, Field::Value(Flag(true)));
    let (c, r) = (on(&g.chksum_present), on(&g.routing_present));
    let mut at = 4;
    let mut spans: Vec<(&str, usize, usize)> = [
        "chksum_present",
        "routing_present",
        "key_present",
        "seqnum_present",
        "strict_source_route",
        "recursion_control",
        "acknum_present",
        "flags",
        "version",
    ]
    .iter()
    .map(|name| (*name, 0, 2))
    .collect();
    spans.push(("proto", 2, 4));
    if c || r {
        spans.push((if c { "chksum" } else { "ignored_chksum" }, at, at + 2));
        spans.push((
            if r { "routing_offset" } else { "reserved1" },
            at + 2,
            at + 4,
        ));
        at += 4;
    }
    for (name, present) in [
        ("key", &g.key_present),
        ("sequence_number", &g.seqnum_present),
        ("ack_number", &g.acknum_present),
    ] {
        if on(present) {
            spans.push((name, at, at + 4));
            at += 4;
        }
    }
    spans.push(("routing", at, len));
    spans
        .iter()
        .find(|(name, ..)| *name == field)
        .map(|&(_, start, end)| start.min(len)..end.min(len))
        .filter(|r| !r.is_empty())
}

impl<'de> Deserialize<'de> for Layer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Layer::from_json(&Value::deserialize(d)?).map_err(D::Error::custom)
    }
}

/// A packet: its layers, outermost first.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Packet {
    pub layers: Vec<Layer>,
}

/// Why a layer's JSON or one of its fields is not valid, or why a layer
/// cannot be encoded: the field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct LayerError(pub String);

impl From<String> for LayerError {
    fn from(message: String) -> Self {
        LayerError(message)
    }
}

impl From<&str> for LayerError {
    fn from(message: &str) -> Self {
        LayerError(message.to_string())
    }
}

/// Why a packet could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("layer {index} ({layertype}): {message}")]
pub struct EncodeError {
    /// 1-based position of the layer in the packet.
    pub index: usize,
    pub layertype: &'static str,
    pub message: String,
}

/// What a layer's encoder sees: its neighbours and the bytes after it.
struct Ctx<'a> {
    before: &'a [Layer],
    next: Option<&'a Layer>,
    tail: &'a [u8],
}

impl Ctx<'_> {
    /// Length of this header plus everything after it, for a length field.
    fn len_with(&self, header: usize, what: &str) -> Result<u16, LayerError> {
        u16::try_from(header + self.tail.len()).map_err(|_| {
            err!(
                "{what} <auto>: {} bytes do not fit in 16 bits",
                header + self.tail.len()
            )
        })
    }

    fn next_protocol(&self, what: &str) -> Result<u8, LayerError> {
        self.next.and_then(Layer::ip_protocol).ok_or_else(|| {
            err!(
                "{what} <auto> needs a layer with an IP protocol number after it, found {}",
                self.next.map_or("nothing", Layer::name)
            )
        })
    }

    /// The checksum sum of the pseudo header of the closest IP layer before.
    fn pseudo_header(
        &self,
        protocol: u8,
        length: usize,
        what: &str,
    ) -> Result<Sum16BitWords, LayerError> {
        let ip = self
            .before
            .iter()
            .rev()
            .find(|l| matches!(l, Layer::Ip(_) | Layer::Ipv6(_)));
        let sum = Sum16BitWords::new();
        match ip {
            Some(Layer::Ip(ip)) => {
                let src = value(&ip.src, "Ip src")?;
                let dst = value(&ip.dst, "Ip dst")?;
                let length = u16::try_from(length)
                    .map_err(|_| err!("{what} <auto>: {length} bytes are too long for IPv4"))?;
                Ok(sum
                    .add_slice(&src.octets())
                    .add_slice(&dst.octets())
                    .add_2bytes([0, protocol])
                    .add_2bytes(length.to_be_bytes()))
            }
            Some(Layer::Ipv6(ip)) => {
                let src = value(&ip.src, "Ipv6 src")?;
                let dst = value(&ip.dst, "Ipv6 dst")?;
                let length = u32::try_from(length)
                    .map_err(|_| err!("{what} <auto>: {length} bytes are too long"))?;
                Ok(sum
                    .add_slice(&src.octets())
                    .add_slice(&dst.octets())
                    .add_slice(&length.to_be_bytes())
                    .add_slice(&[0, 0, 0, protocol]))
            }
            _ => Err(err!("{what} <auto> needs an Ip or Ipv6 layer before it")),
        }
    }
}

/// The value of a field that has no `"<auto>"` rule.
fn value<T: Copy>(field: &Field<T>, name: &str) -> Result<T, LayerError> {
    match field {
        Field::Value(v) => Ok(*v),
        Field::Auto => Err(err!("{name} cannot be <auto>")),
        // Resolved before encoding starts.
        Field::Random => Err(err!("{name} is still <random>")),
    }
}

/// The value of a field, or `auto()` when it is `"<auto>"`.
fn value_or<T: Copy>(
    field: &Field<T>,
    auto: impl FnOnce() -> Result<T, LayerError>,
) -> Result<T, LayerError> {
    match field {
        Field::Auto => auto(),
        _ => value(field, "field"),
    }
}

/// A checksum field: `<auto>` computes it over `header` (with the field at
/// `at` zero) and the tail, starting from `sum` (a pseudo header).
fn fill_checksum(
    header: &mut [u8],
    at: usize,
    field: &Field<u16>,
    sum: Sum16BitWords,
    tail: &[u8],
    no_zero: bool,
) {
    let value = match field {
        Field::Value(v) => *v,
        _ => {
            header[at..at + 2].fill(0);
            // One buffer: an odd-length header must not shift the tail's words.
            let mut all = header.to_vec();
            all.extend_from_slice(tail);
            let sum = sum.add_slice(&all);
            let c = if no_zero {
                sum.to_ones_complement_with_no_zero()
            } else {
                sum.ones_complement()
            };
            c.to_be()
        }
    };
    header[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

impl Packet {
    /// Encodes the packet, computing `"<auto>"` and filling `"<random>"`
    /// fields. A bad layer list ("<auto>" with nothing to compute it from, a
    /// field out of range) is an error naming the layer.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        self.encode_layout().map(|(bytes, _)| bytes)
    }

    /// `encode`, and where each layer's header starts in the bytes (one
    /// offset per layer; a header runs to the next one's start). `oside`
    /// highlights a field's bytes from it.
    pub fn encode_layout(&self) -> Result<(Vec<u8>, Vec<usize>), EncodeError> {
        let mut header_lens = vec![0; self.layers.len()];
        let mut layers = self.layers.clone();
        for layer in &mut layers {
            layer.resolve_random();
        }
        // Inner layers first: lengths and checksums need what follows.
        let mut tail: Vec<u8> = Vec::new();
        for i in (0..layers.len()).rev() {
            let ctx = Ctx {
                before: &layers[..i],
                next: layers.get(i + 1),
                tail: &tail,
            };
            let header = encode_layer(&layers[i], &ctx).map_err(|message| EncodeError {
                index: i + 1,
                layertype: layers[i].name(),
                message: message.to_string(),
            })?;
            header_lens[i] = header.len();
            let mut bytes = header;
            bytes.extend_from_slice(&tail);
            tail = bytes;
        }
        let starts = header_lens
            .iter()
            .scan(0, |at, len| {
                let start = *at;
                *at += len;
                Some(start)
            })
            .collect();
        Ok((tail, starts))
    }
}

fn encode_layer(layer: &Layer, ctx: &Ctx) -> Result<Vec<u8>, LayerError> {
    let mut h = Vec::with_capacity(64);
    match layer {
        Layer::Ether(l) => {
            h.extend_from_slice(&value(&l.dst, "dst")?.0);
            h.extend_from_slice(&value(&l.src, "src")?.0);
            let etype = value_or(&l.etype, || etype_of(ctx))?;
            h.extend_from_slice(&etype.to_be_bytes());
        }
        Layer::Dot1Q(l) => {
            let tci = (u16::from(value(&l.prio, "prio")?) << 13)
                | (u16::from(value(&l.id, "id")?) << 12)
                | value(&l.vlan, "vlan")?;
            h.extend_from_slice(&tci.to_be_bytes());
            let etype = value_or(&l.etype, || etype_of(ctx))?;
            h.extend_from_slice(&etype.to_be_bytes());
        }
        Layer::Arp(l) => {
            h.extend_from_slice(&value(&l.hwtype, "hwtype")?.to_be_bytes());
            h.extend_from_slice(&value(&l.ptype, "ptype")?.to_be_bytes());
            h.push(value_or(&l.hwlen, || Ok(6))?);
            h.push(value_or(&l.plen, || Ok(4))?);
            h.extend_from_slice(&value(&l.op, "op")?.to_be_bytes());
            h.extend_from_slice(&value(&l.hwsrc, "hwsrc")?.0);
            h.extend_from_slice(&value(&l.psrc, "psrc")?.octets());
            h.extend_from_slice(&value(&l.hwdst, "hwdst")?.0);
            h.extend_from_slice(&value(&l.pdst, "pdst")?.octets());
        }
        Layer::Ip(l) => {
            let mut options = Vec::new();
            for o in &l.options {
                o.encode(&mut options).map_err(|e| err!("options: {e}"))?;
            }
            let ihl = match l.ihl {
                Field::Auto => {
                    // The header length counts 32-bit words: pad with EOL.
                    options.resize(options.len().div_ceil(4) * 4, 0);
                    u8::try_from(5 + options.len() / 4)
                        .ok()
                        .filter(|ihl| *ihl <= 15)
                        .ok_or_else(|| {
                            err!(
                                "options: {} bytes are more than fit in a header",
                                options.len()
                            )
                        })?
                }
                _ => value(&l.ihl, "ihl")?,
            };
            let header_len = 20 + options.len();
            let version = value_or(&l.version, || Ok(4))?;
            h.push((version << 4) | (ihl & 0x0f));
            h.push(value(&l.tos, "tos")?);
            h.extend_from_slice(
                &value_or(&l.len, || ctx.len_with(header_len, "len"))?.to_be_bytes(),
            );
            h.extend_from_slice(&value(&l.id, "id")?.to_be_bytes());
            let f = &l.flags.0;
            let frag = (u16::from(value(&f.reserved, "flags.reserved")?.0) << 15)
                | (u16::from(value(&f.dont_fragment, "flags.dont_fragment")?.0) << 14)
                | (u16::from(value(&f.more_fragments, "flags.more_fragments")?.0) << 13)
                | value(&f.fragment_offset, "flags.fragment_offset")?;
            h.extend_from_slice(&frag.to_be_bytes());
            h.push(value(&l.ttl, "ttl")?);
            h.push(value_or(&l.proto, || ctx.next_protocol("proto"))?);
            h.extend_from_slice(&[0, 0]);
            h.extend_from_slice(&value(&l.src, "src")?.octets());
            h.extend_from_slice(&value(&l.dst, "dst")?.octets());
            h.extend_from_slice(&options);
            fill_checksum(&mut h, 10, &l.chksum, Sum16BitWords::new(), &[], false);
        }
        Layer::Ipv6(l) => {
            let vc = value_or(&l.version_class, || Ok(0x6000_0000))?;
            h.extend_from_slice(&vc.to_be_bytes());
            h.extend_from_slice(
                &value_or(&l.payload_length, || ctx.len_with(0, "payload_length"))?.to_be_bytes(),
            );
            h.push(value_or(&l.next_header, || {
                ctx.next_protocol("next_header")
            })?);
            h.push(value(&l.hop_limit, "hop_limit")?);
            h.extend_from_slice(&value(&l.src, "src")?.octets());
            h.extend_from_slice(&value(&l.dst, "dst")?.octets());
        }
        Layer::Ipv6HopByHop(l) | Layer::Ipv6Routing(l) | Layer::Ipv6DestOptions(l) => {
            h.push(value_or(&l.next_header, || {
                ctx.next_protocol("next_header")
            })?);
            let len = value_or(&l.hdr_ext_len, || {
                let total = 2 + l.data.len();
                if total % 8 != 0 {
                    return Err(err!(
                        "hdr_ext_len <auto>: 2 + {} data bytes is not a multiple of 8",
                        l.data.len()
                    ));
                }
                u8::try_from(total / 8 - 1)
                    .map_err(|_| LayerError::from("hdr_ext_len <auto>: data too long"))
            })?;
            h.push(len);
            h.extend_from_slice(&l.data);
        }
        Layer::Ipv6Fragment(l) => {
            h.push(value_or(&l.next_header, || {
                ctx.next_protocol("next_header")
            })?);
            h.push(value(&l.reserved, "reserved")?);
            let word = (value(&l.fragment_offset, "fragment_offset")? << 3)
                | (u16::from(value(&l.res, "res")?) << 1)
                | u16::from(value(&l.more_fragments, "more_fragments")?.0);
            h.extend_from_slice(&word.to_be_bytes());
            h.extend_from_slice(&value(&l.identification, "identification")?.to_be_bytes());
        }
        Layer::Icmp(l) => {
            let typ = value_or(&l.typ, || match ctx.next {
                Some(Layer::Echo(_)) => Ok(8),
                Some(Layer::EchoReply(_)) => Ok(0),
                _ => Err("typ <auto> needs an echo or echoReply layer after it".into()),
            })?;
            h.extend_from_slice(&[typ, value(&l.code, "code")?, 0, 0]);
            fill_checksum(&mut h, 2, &l.chksum, Sum16BitWords::new(), ctx.tail, false);
        }
        Layer::Icmpv6(l) => {
            let typ = value_or(&l.type_, || {
                ctx.next
                    .and_then(Layer::icmpv6_type)
                    .ok_or_else(|| "type_ <auto> needs an ICMPv6 message layer after it".into())
            })?;
            h.extend_from_slice(&[typ, value(&l.code, "code")?, 0, 0]);
            let sum = if matches!(l.checksum, Field::Auto) {
                ctx.pseudo_header(58, 4 + ctx.tail.len(), "checksum")?
            } else {
                Sum16BitWords::new()
            };
            fill_checksum(&mut h, 2, &l.checksum, sum, ctx.tail, false);
        }
        Layer::Echo(l)
        | Layer::EchoReply(l)
        | Layer::Icmpv6EchoRequest(l)
        | Layer::Icmpv6EchoReply(l) => {
            h.extend_from_slice(&value(&l.identifier, "identifier")?.to_be_bytes());
            h.extend_from_slice(&value(&l.sequence, "sequence")?.to_be_bytes());
        }
        Layer::DestUnreach(l) | Layer::TimeExceeded(l) => {
            h.extend_from_slice(&value(&l.unused, "unused")?.to_be_bytes());
            h.extend_from_slice(&l.invoking_packet);
        }
        Layer::PacketTooBig(l) => {
            h.extend_from_slice(&value(&l.mtu, "mtu")?.to_be_bytes());
            h.extend_from_slice(&l.invoking_packet);
        }
        Layer::ParameterProblem(l) => {
            h.extend_from_slice(&value(&l.pointer, "pointer")?.to_be_bytes());
            h.extend_from_slice(&l.invoking_packet);
        }
        Layer::Redirect(l) => {
            h.extend_from_slice(&value(&l.reserved, "reserved")?.to_be_bytes());
            h.extend_from_slice(&value(&l.target_address, "target_address")?.octets());
            h.extend_from_slice(&value(&l.destination_address, "destination_address")?.octets());
            encode_ndp_options(&l.options, &mut h)?;
        }
        Layer::NeighborSolicitation(l) => {
            h.extend_from_slice(&value(&l.reserved, "reserved")?.to_be_bytes());
            h.extend_from_slice(&value(&l.target_address, "target_address")?.octets());
            encode_ndp_options(&l.options, &mut h)?;
        }
        Layer::NeighborAdvertisement(l) => {
            h.extend_from_slice(&value(&l.flags, "flags")?.to_be_bytes());
            h.extend_from_slice(&value(&l.target_address, "target_address")?.octets());
            encode_ndp_options(&l.options, &mut h)?;
        }
        Layer::RouterSolicitation(l) => {
            h.extend_from_slice(&value(&l.reserved, "reserved")?.to_be_bytes());
            encode_ndp_options(&l.options, &mut h)?;
        }
        Layer::RouterAdvertisement(l) => {
            h.push(value(&l.cur_hop_limit, "cur_hop_limit")?);
            h.push(value(&l.flags, "flags")?);
            h.extend_from_slice(&value(&l.router_lifetime, "router_lifetime")?.to_be_bytes());
            h.extend_from_slice(&value(&l.reachable_time, "reachable_time")?.to_be_bytes());
            h.extend_from_slice(&value(&l.retrans_timer, "retrans_timer")?.to_be_bytes());
            encode_ndp_options(&l.options, &mut h)?;
        }
        Layer::Udp(l) => {
            h.extend_from_slice(&value(&l.sport, "sport")?.to_be_bytes());
            h.extend_from_slice(&value(&l.dport, "dport")?.to_be_bytes());
            let len = value_or(&l.len, || ctx.len_with(8, "len"))?;
            h.extend_from_slice(&len.to_be_bytes());
            h.extend_from_slice(&[0, 0]);
            let sum = if matches!(l.chksum, Field::Auto) {
                ctx.pseudo_header(17, 8 + ctx.tail.len(), "chksum")?
            } else {
                Sum16BitWords::new()
            };
            // UDP sends a computed 0 as 0xffff: 0 means "no checksum".
            fill_checksum(&mut h, 6, &l.chksum, sum, ctx.tail, true);
        }
        Layer::Tcp(l) => {
            let mut options = Vec::new();
            for o in l.options.iter().flatten() {
                o.encode(&mut options).map_err(|e| err!("options: {e}"))?;
            }
            let dataofs = match l.dataofs {
                Field::Auto => {
                    options.resize(options.len().div_ceil(4) * 4, 0);
                    u8::try_from(5 + options.len() / 4)
                        .ok()
                        .filter(|d| *d <= 15)
                        .ok_or_else(|| {
                            err!(
                                "options: {} bytes are more than fit in a header",
                                options.len()
                            )
                        })?
                }
                _ => value(&l.dataofs, "dataofs")?,
            };
            h.extend_from_slice(&value(&l.sport, "sport")?.to_be_bytes());
            h.extend_from_slice(&value(&l.dport, "dport")?.to_be_bytes());
            h.extend_from_slice(&value(&l.seq, "seq")?.to_be_bytes());
            h.extend_from_slice(&value(&l.ack, "ack")?.to_be_bytes());
            h.push((dataofs << 4) | (value(&l.reserved, "reserved")? & 0x0f));
            h.push(value(&l.flags, "flags")?);
            h.extend_from_slice(&value(&l.window, "window")?.to_be_bytes());
            h.extend_from_slice(&[0, 0]);
            h.extend_from_slice(&value(&l.urgptr, "urgptr")?.to_be_bytes());
            h.extend_from_slice(&options);
            let sum = if matches!(l.chksum, Field::Auto) {
                ctx.pseudo_header(6, h.len() + ctx.tail.len(), "chksum")?
            } else {
                Sum16BitWords::new()
            };
            fill_checksum(&mut h, 16, &l.chksum, sum, ctx.tail, false);
        }
        Layer::Gre(l) => encode_gre(l, ctx, &mut h)?,
        Layer::Raw(l) => h.extend_from_slice(&l.data),
    }
    Ok(h)
}

fn encode_gre(l: &Gre, ctx: &Ctx, h: &mut Vec<u8>) -> Result<(), LayerError> {
    let bit = |f: &Field<Flag>, name: &str| value(f, name).map(|b| u16::from(b.0));
    let c = bit(&l.chksum_present, "chksum_present")?;
    let r = bit(&l.routing_present, "routing_present")?;
    let k = bit(&l.key_present, "key_present")?;
    let s = bit(&l.seqnum_present, "seqnum_present")?;
    let a = bit(&l.acknum_present, "acknum_present")?;
    let word = (c << 15)
        | (r << 14)
        | (k << 13)
        | (s << 12)
        | (bit(&l.strict_source_route, "strict_source_route")? << 11)
        | (u16::from(value(&l.recursion_control, "recursion_control")?) << 8)
        | (a << 7)
        | (u16::from(value(&l.flags, "flags")?) << 3)
        | u16::from(value(&l.version, "version")?);
    h.extend_from_slice(&word.to_be_bytes());
    let proto = value_or(&l.proto, || {
        ctx.next.and_then(Layer::ethertype).ok_or_else(|| {
            err!(
                "proto <auto> needs an Ip, Ipv6, Arp, dot1Q or ether layer after it, found {}",
                ctx.next.map_or("nothing", Layer::name)
            )
        })
    })?;
    h.extend_from_slice(&proto.to_be_bytes());
    let mut checksum_at = None;
    if c == 1 || r == 1 {
        if c == 1 {
            checksum_at = Some(h.len());
            h.extend_from_slice(&[0, 0]);
        } else {
            h.extend_from_slice(&value(&l.ignored_chksum, "ignored_chksum")?.to_be_bytes());
        }
        let second = if r == 1 {
            value(&l.routing_offset, "routing_offset")?
        } else {
            value(&l.reserved1, "reserved1")?
        };
        h.extend_from_slice(&second.to_be_bytes());
    }
    if k == 1 {
        h.extend_from_slice(&value(&l.key, "key")?.to_be_bytes());
    }
    if s == 1 {
        h.extend_from_slice(&value(&l.sequence_number, "sequence_number")?.to_be_bytes());
    }
    if a == 1 {
        h.extend_from_slice(&value(&l.ack_number, "ack_number")?.to_be_bytes());
    }
    h.extend_from_slice(&l.routing);
    if let Some(at) = checksum_at {
        // RFC 2784: over the GRE header and its payload.
        fill_checksum(h, at, &l.chksum, Sum16BitWords::new(), ctx.tail, false);
    }
    Ok(())
}

fn etype_of(ctx: &Ctx) -> Result<u16, LayerError> {
    ctx.next.and_then(Layer::ethertype).ok_or_else(|| {
        err!(
            "etype <auto> needs an Ip, Ipv6, Arp or Dot1Q layer after it, found {}",
            ctx.next.map_or("nothing", Layer::name)
        )
    })
}

/// A kind-length-value option; the length byte counts kind and length too.
fn push_tlv(out: &mut Vec<u8>, kind: u8, data: &[u8]) -> Result<(), LayerError> {
    let len = u8::try_from(data.len() + 2).map_err(|_| {
        err!(
            "option kind {kind}: {} data bytes are more than 253",
            data.len()
        )
    })?;
    out.extend_from_slice(&[kind, len]);
    out.extend_from_slice(data);
    Ok(())
}

impl Ipv4Option {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), LayerError> {
        match self {
            Ipv4Option::Eol => out.push(0),
            Ipv4Option::Nop => out.push(1),
            Ipv4Option::Tlv { kind, data } => push_tlv(out, *kind, data)?,
            Ipv4Option::Byte(b) => out.push(*b),
        }
        Ok(())
    }
}

impl TcpOption {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), LayerError> {
        match self {
            TcpOption::Eol => out.push(0),
            TcpOption::Nop => out.push(1),
            TcpOption::Mss(mss) => push_tlv(out, 2, &mss.to_be_bytes())?,
            TcpOption::WindowScale(shift) => push_tlv(out, 3, &[*shift])?,
            TcpOption::SackPermitted => push_tlv(out, 4, &[])?,
            TcpOption::Sack(blocks) => {
                let data: Vec<u8> = blocks
                    .iter()
                    .flat_map(|(l, r)| l.to_be_bytes().into_iter().chain(r.to_be_bytes()))
                    .collect();
                push_tlv(out, 5, &data)?
            }
            TcpOption::Timestamp { tsval, tsecr } => {
                let mut data = tsval.to_be_bytes().to_vec();
                data.extend_from_slice(&tsecr.to_be_bytes());
                push_tlv(out, 8, &data)?
            }
            TcpOption::Unknown { kind, data } => push_tlv(out, *kind, data)?,
            TcpOption::Byte(b) => out.push(*b),
        }
        Ok(())
    }
}

/// Splits type-length-value option bytes (IPv4 and TCP share the layout:
/// kinds 0 and 1 are one byte, the others carry a length that counts the
/// kind and length bytes). A byte that does not start a well-formed option
/// is returned alone as `Err(byte)`.
fn split_options(bytes: &[u8]) -> Vec<Result<(u8, &[u8]), u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let kind = bytes[i];
        if kind <= 1 {
            out.push(Ok((kind, &[][..])));
            i += 1;
            continue;
        }
        match bytes.get(i + 1).map(|l| usize::from(*l)) {
            Some(len) if len >= 2 && i + len <= bytes.len() => {
                out.push(Ok((kind, &bytes[i + 2..i + len])));
                i += len;
            }
            _ => {
                out.push(Err(kind));
                i += 1;
            }
        }
    }
    out
}

fn decode_ipv4_options(bytes: &[u8]) -> Vec<Ipv4Option> {
    split_options(bytes)
        .into_iter()
        .map(|o| match o {
            Ok((0, _)) => Ipv4Option::Eol,
            Ok((1, _)) => Ipv4Option::Nop,
            Ok((kind, data)) => Ipv4Option::Tlv {
                kind,
                data: data.to_vec(),
            },
            Err(b) => Ipv4Option::Byte(b),
        })
        .collect()
}

fn decode_tcp_options(bytes: &[u8]) -> Vec<TcpOption> {
    let be32 = |d: &[u8]| u32::from_be_bytes([d[0], d[1], d[2], d[3]]);
    split_options(bytes)
        .into_iter()
        .map(|o| match o {
            Ok((0, _)) => TcpOption::Eol,
            Ok((1, _)) => TcpOption::Nop,
            Ok((2, d)) if d.len() == 2 => TcpOption::Mss(u16::from_be_bytes([d[0], d[1]])),
            Ok((3, d)) if d.len() == 1 => TcpOption::WindowScale(d[0]),
            Ok((4, [])) => TcpOption::SackPermitted,
            Ok((5, d)) if !d.is_empty() && d.len() % 8 == 0 => TcpOption::Sack(
                d.chunks(8)
                    .map(|c| (be32(&c[..4]), be32(&c[4..])))
                    .collect(),
            ),
            Ok((8, d)) if d.len() == 8 => TcpOption::Timestamp {
                tsval: be32(&d[..4]),
                tsecr: be32(&d[4..]),
            },
            Ok((kind, data)) => TcpOption::Unknown {
                kind,
                data: data.to_vec(),
            },
            Err(b) => TcpOption::Byte(b),
        })
        .collect()
}

impl NdpOption {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), LayerError> {
        match self {
            NdpOption::SourceLinkLayerAddress(mac) => {
                out.extend_from_slice(&[1, 1]);
                out.extend_from_slice(&mac.0);
            }
            NdpOption::TargetLinkLayerAddress(mac) => {
                out.extend_from_slice(&[2, 1]);
                out.extend_from_slice(&mac.0);
            }
            NdpOption::PrefixInformation {
                prefix_length,
                flags,
                valid_lifetime,
                preferred_lifetime,
                prefix,
            } => {
                out.extend_from_slice(&[3, 4, *prefix_length, *flags]);
                out.extend_from_slice(&valid_lifetime.to_be_bytes());
                out.extend_from_slice(&preferred_lifetime.to_be_bytes());
                out.extend_from_slice(&[0; 4]);
                out.extend_from_slice(&prefix.octets());
            }
            NdpOption::Mtu(mtu) => {
                out.extend_from_slice(&[5, 1, 0, 0]);
                out.extend_from_slice(&mtu.to_be_bytes());
            }
            NdpOption::Unknown { type_, data } => {
                let total = data.len() + 2;
                if total % 8 != 0 || total / 8 > 255 {
                    return Err(err!(
                        "NDP option type {type_}: 2 + {} data bytes is not a multiple of 8 up to 2040",
                        data.len()
                    ));
                }
                out.extend_from_slice(&[*type_, (total / 8) as u8]);
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }

    /// The named form of an option's bytes (type, length, data), read as
    /// the original reads it: from the data's first bytes, whatever the
    /// length says. None: a type it has no name for, or too short.
    fn named(option: &[u8]) -> Option<NdpOption> {
        let data = option.get(2..)?;
        let mac = || data.get(..6).map(|m| Mac(m.try_into().expect("6 bytes")));
        match option[0] {
            1 => mac().map(NdpOption::SourceLinkLayerAddress),
            2 => mac().map(NdpOption::TargetLinkLayerAddress),
            3 if option.len() >= 32 => Some(NdpOption::PrefixInformation {
                prefix_length: option[2],
                flags: option[3],
                valid_lifetime: be32(option, 4),
                preferred_lifetime: be32(option, 8),
                prefix: ipv6_at(option, 16),
            }),
            5 if option.len() >= 8 => Some(NdpOption::Mtu(be32(option, 4))),
            _ => None,
        }
    }

    /// The named form of a well-formed option, or `Unknown` when the named
    /// form would not give back the same bytes (full dialect: lossless).
    fn lossless(option: &[u8]) -> NdpOption {
        if let Some(named) = NdpOption::named(option) {
            let mut again = Vec::new();
            if named.encode(&mut again).is_ok() && again == option {
                return named;
            }
        }
        NdpOption::Unknown {
            type_: option[0],
            data: option[2..].to_vec(),
        }
    }
}

fn encode_ndp_options(options: &[NdpOption], out: &mut Vec<u8>) -> Result<(), LayerError> {
    for o in options {
        o.encode(out).map_err(|e| err!("options: {e}"))?;
    }
    Ok(())
}

/// NDP options and the length of the bytes they cover; what follows the
/// last option read is left to a raw layer.
///
/// Full dialect: each well-formed option (etherparse splits them), kept
/// losslessly. Original dialect: as the original reads them, which is not
/// lossless: options of other types are skipped, a named one keeps what
/// its name holds, and reading goes on while two bytes are left and the
/// next option fits. (A zero length, on which the original loops forever,
/// ends the options here.)
fn decode_ndp_options(dialect: Dialect, bytes: &[u8]) -> (Vec<NdpOption>, usize) {
    let mut options = Vec::new();
    let mut used = 0;
    match dialect {
        Dialect::Full => {
            for option in NdpOptionsIterator::from_slice(bytes) {
                let Ok(option) = option else { break };
                let option = option.as_bytes();
                used += option.len();
                options.push(NdpOption::lossless(option));
            }
        }
        Dialect::Original => {
            while used + 2 <= bytes.len() {
                let len = usize::from(bytes[used + 1]) * 8;
                if len == 0 || used + len > bytes.len() {
                    break;
                }
                options.extend(NdpOption::named(&bytes[used..used + len]));
                used += len;
            }
        }
    }
    (options, used)
}

/// Which JSON dialect a packet file shows: how deep [`decode`] goes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dialect {
    /// The original tool's (FORMATS.md), the default of every writer:
    /// each layer reads its fixed header and hands everything after it to
    /// the next; what the original does not decode (IPv6 extension
    /// headers, IPv4 and TCP options, bytes past a length field, 802.1ad,
    /// IPv6 in IP) stays in the `raw` layer where it puts those bytes.
    #[default]
    Original,
    /// Ours: as deep as this model goes, trailers split off by the length
    /// fields (`jsonl+`).
    Full,
}

impl Packet {
    /// The dialect that shows this packet as it is: `Full` when a layer or
    /// field only the full dialect writes is in it.
    pub fn dialect(&self) -> Dialect {
        if self.layers.iter().any(Layer::is_full_only) {
            Dialect::Full
        } else {
            Dialect::Original
        }
    }
}

/// What the bytes that follow a header are, as far as the header says.
#[derive(Clone, Copy)]
enum Next {
    Ether,
    Dot1Q,
    Arp,
    Ipv4,
    Ipv6,
    IpProto(u8),
    Icmp(u8),
    Icmpv6(u8),
    Raw,
}

fn next_of_ethertype(dialect: Dialect, etype: u16) -> Next {
    match etype {
        0x0800 => Next::Ipv4,
        0x86dd => Next::Ipv6,
        0x0806 => Next::Arp,
        0x8100 => Next::Dot1Q,
        // The original has no 802.1ad S-tag.
        0x88a8 if dialect == Dialect::Full => Next::Dot1Q,
        0x6558 => Next::Ether,
        _ => Next::Raw,
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn mac_at(b: &[u8], at: usize) -> Mac {
    let mut m = [0; 6];
    m.copy_from_slice(&b[at..at + 6]);
    Mac(m)
}

fn ipv6_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

fn v<T>(x: T) -> Field<T> {
    Field::Value(x)
}

/// One decoded header: the layer, the bytes it used, what follows, and
/// where its length field says the packet ends (full dialect only).
type Decoded = (Layer, usize, Next, Option<usize>);

/// Decodes a frame of the given PCAP link type (1 Ethernet, 101 raw IP, 228
/// IPv4, 229 IPv6; any other is one raw layer) in `dialect`. Never fails:
/// see the module documentation.
pub fn decode(dialect: Dialect, linktype: u32, bytes: &[u8]) -> Packet {
    let first = match linktype {
        LINKTYPE_ETHERNET => Next::Ether,
        LINKTYPE_RAW => match bytes.first().map(|b| b >> 4) {
            Some(4) => Next::Ipv4,
            Some(6) => Next::Ipv6,
            _ => Next::Raw,
        },
        LINKTYPE_IPV4 => Next::Ipv4,
        LINKTYPE_IPV6 => Next::Ipv6,
        _ => Next::Raw,
    };
    let mut layers = Vec::new();
    // Bytes after a length field's end (Ethernet padding), outermost first.
    let mut trailers: Vec<&[u8]> = Vec::new();
    let mut next = first;
    let mut rest = bytes;
    while !rest.is_empty() {
        let Some((layer, used, after, end)) = decode_one(dialect, next, rest) else {
            break;
        };
        layers.push(layer);
        // `end`: where the layer's own length says its payload ends; the
        // original never cuts there.
        let end = end
            .filter(|e| dialect == Dialect::Full && *e >= used && *e <= rest.len())
            .unwrap_or(rest.len());
        trailers.push(&rest[end..]);
        rest = &rest[used..end];
        next = after;
    }
    if !rest.is_empty() {
        layers.push(Layer::Raw(Raw {
            data: rest.to_vec(),
        }));
    }
    for trailer in trailers.into_iter().rev().filter(|t| !t.is_empty()) {
        layers.push(Layer::Raw(Raw {
            data: trailer.to_vec(),
        }));
    }
    Packet { layers }
}

/// One header decoded as `next`. `None`: not decodable as that (too
/// short, unknown), so the rest is raw.
fn decode_one(dialect: Dialect, next: Next, b: &[u8]) -> Option<Decoded> {
    match next {
        Next::Raw => None,
        Next::Ether => {
            if b.len() < 14 {
                return None;
            }
            let etype = be16(b, 12);
            let layer = Layer::Ether(Ether {
                dst: v(mac_at(b, 0)),
                src: v(mac_at(b, 6)),
                etype: v(etype),
            });
            Some((layer, 14, next_of_ethertype(dialect, etype), None))
        }
        Next::Dot1Q => {
            if b.len() < 4 {
                return None;
            }
            let tci = be16(b, 0);
            let etype = be16(b, 2);
            let layer = Layer::Dot1Q(Dot1Q {
                prio: v((tci >> 13) as u8),
                id: v(((tci >> 12) & 1) as u8),
                vlan: v(tci & 0x0fff),
                etype: v(etype),
            });
            Some((layer, 4, next_of_ethertype(dialect, etype), None))
        }
        Next::Arp => {
            if b.len() < 28 || b[4] != 6 || b[5] != 4 {
                return None;
            }
            let layer = Layer::Arp(Arp {
                hwtype: v(be16(b, 0)),
                ptype: v(be16(b, 2)),
                hwlen: v(b[4]),
                plen: v(b[5]),
                op: v(be16(b, 6)),
                hwsrc: v(mac_at(b, 8)),
                psrc: v(Ipv4Addr::from(be32(b, 14))),
                hwdst: v(mac_at(b, 18)),
                pdst: v(Ipv4Addr::from(be32(b, 24))),
            });
            Some((layer, 28, Next::Raw, Some(28)))
        }
        Next::Ipv4 => decode_ipv4(dialect, b),
        Next::Ipv6 => {
            if b.len() < 40 {
                return None;
            }
            let payload_length = be16(b, 4);
            let layer = Layer::Ipv6(Ipv6 {
                version_class: v(be32(b, 0)),
                payload_length: v(payload_length),
                next_header: v(b[6]),
                hop_limit: v(b[7]),
                src: v(ipv6_at(b, 8)),
                dst: v(ipv6_at(b, 24)),
            });
            // 0 is a jumbogram (or a TSO capture): the payload runs to the end.
            let end = (payload_length != 0).then(|| 40 + usize::from(payload_length));
            Some((layer, 40, Next::IpProto(b[6]), end))
        }
        Next::IpProto(proto) => decode_ip_payload(dialect, proto, b),
        Next::Icmp(typ) => {
            if b.len() < 4 || (typ != 0 && typ != 8) {
                return None;
            }
            let echo = Echo {
                identifier: v(be16(b, 0)),
                sequence: v(be16(b, 2)),
            };
            let layer = if typ == 8 {
                Layer::Echo(echo)
            } else {
                Layer::EchoReply(echo)
            };
            Some((layer, 4, Next::Raw, None))
        }
        Next::Icmpv6(typ) => decode_icmpv6_body(dialect, typ, b),
    }
}

/// IPv4. The original reads the 20 fixed bytes only (options stay in what
/// follows) and decodes the payload of a later fragment as if it began
/// with a header; the full dialect reads the options and leaves a later
/// fragment raw.
fn decode_ipv4(dialect: Dialect, b: &[u8]) -> Option<Decoded> {
    if b.len() < 20 {
        return None;
    }
    let ihl = b[0] & 0x0f;
    let header_len = match dialect {
        Dialect::Original => 20,
        Dialect::Full => {
            let len = usize::from(ihl) * 4;
            if ihl < 5 || len > b.len() {
                return None;
            }
            len
        }
    };
    let frag = be16(b, 6);
    let proto = b[9];
    let layer = Layer::Ip(Ip {
        version: v(b[0] >> 4),
        ihl: v(ihl),
        tos: v(b[1]),
        len: v(be16(b, 2)),
        id: v(be16(b, 4)),
        flags: IpFlagsField(IpFlags {
            reserved: v(Flag(frag & 0x8000 != 0)),
            dont_fragment: v(Flag(frag & 0x4000 != 0)),
            more_fragments: v(Flag(frag & 0x2000 != 0)),
            fragment_offset: v(frag & 0x1fff),
        }),
        ttl: v(b[8]),
        proto: v(proto),
        chksum: v(be16(b, 10)),
        src: v(Ipv4Addr::from(be32(b, 12))),
        dst: v(Ipv4Addr::from(be32(b, 16))),
        options: decode_ipv4_options(&b[20..header_len]),
    });
    let after = if frag & 0x1fff != 0 && dialect == Dialect::Full {
        Next::Raw
    } else {
        Next::IpProto(proto)
    };
    Some((layer, header_len, after, Some(usize::from(be16(b, 2)))))
}

fn decode_ip_payload(dialect: Dialect, proto: u8, b: &[u8]) -> Option<Decoded> {
    let full = dialect == Dialect::Full;
    match proto {
        0 | 43 | 60 if full => {
            if b.len() < 8 {
                return None;
            }
            let len = (usize::from(b[1]) + 1) * 8;
            if len > b.len() {
                return None;
            }
            let ext = Ipv6ExtHeader {
                next_header: v(b[0]),
                hdr_ext_len: v(b[1]),
                data: b[2..len].to_vec(),
            };
            let layer = match proto {
                0 => Layer::Ipv6HopByHop(ext),
                43 => Layer::Ipv6Routing(ext),
                _ => Layer::Ipv6DestOptions(ext),
            };
            Some((layer, len, Next::IpProto(b[0]), None))
        }
        44 if full => {
            if b.len() < 8 {
                return None;
            }
            let word = be16(b, 2);
            let layer = Layer::Ipv6Fragment(Ipv6Fragment {
                next_header: v(b[0]),
                reserved: v(b[1]),
                fragment_offset: v(word >> 3),
                res: v(((word >> 1) & 3) as u8),
                more_fragments: v(Flag(word & 1 != 0)),
                identification: v(be32(b, 4)),
            });
            let after = if word >> 3 != 0 {
                Next::Raw
            } else {
                Next::IpProto(b[0])
            };
            Some((layer, 8, after, None))
        }
        4 => decode_one(dialect, Next::Ipv4, b),
        41 if full => decode_one(dialect, Next::Ipv6, b),
        1 => {
            if b.len() < 4 {
                return None;
            }
            let layer = Layer::Icmp(Icmp {
                typ: v(b[0]),
                code: v(b[1]),
                chksum: v(be16(b, 2)),
            });
            Some((layer, 4, Next::Icmp(b[0]), None))
        }
        58 => {
            if b.len() < 4 {
                return None;
            }
            let layer = Layer::Icmpv6(Icmpv6 {
                type_: v(b[0]),
                code: v(b[1]),
                checksum: v(be16(b, 2)),
            });
            Some((layer, 4, Next::Icmpv6(b[0]), None))
        }
        17 => {
            if b.len() < 8 {
                return None;
            }
            let len = be16(b, 4);
            let layer = Layer::Udp(Udp {
                sport: v(be16(b, 0)),
                dport: v(be16(b, 2)),
                len: v(len),
                chksum: v(be16(b, 6)),
            });
            Some((layer, 8, Next::Raw, Some(usize::from(len))))
        }
        6 => {
            if b.len() < 20 {
                return None;
            }
            let dataofs = b[12] >> 4;
            let header_len = match dialect {
                Dialect::Original => 20,
                Dialect::Full => {
                    let len = usize::from(dataofs) * 4;
                    if dataofs < 5 || len > b.len() {
                        return None;
                    }
                    len
                }
            };
            let layer = Layer::Tcp(Tcp {
                sport: v(be16(b, 0)),
                dport: v(be16(b, 2)),
                seq: v(be32(b, 4)),
                ack: v(be32(b, 8)),
                dataofs: v(dataofs),
                reserved: v(b[12] & 0x0f),
                flags: v(b[13]),
                window: v(be16(b, 14)),
                chksum: v(be16(b, 16)),
                urgptr: v(be16(b, 18)),
                options: full.then(|| decode_tcp_options(&b[20..header_len])),
            });
            Some((layer, header_len, Next::Raw, None))
        }
        47 => decode_gre(dialect, b),
        _ => None,
    }
}

fn decode_gre(dialect: Dialect, b: &[u8]) -> Option<Decoded> {
    if b.len() < 4 {
        return None;
    }
    let word = be16(b, 0);
    let bit = |n: u16| word & (1 << n) != 0;
    let (c, r, k, s, a) = (bit(15), bit(14), bit(13), bit(12), bit(7));
    let need = 4 + 4 * usize::from(c || r) + 4 * (usize::from(k) + usize::from(s) + usize::from(a));
    if b.len() < need {
        return None;
    }
    let mut at = 4;
    let (mut first, mut second) = (0, 0);
    if c || r {
        (first, second) = (be16(b, at), be16(b, at + 2));
        at += 4;
    }
    let mut word32 = |present: bool| {
        if !present {
            return 0;
        }
        at += 4;
        be32(b, at - 4)
    };
    let key = word32(k);
    let sequence_number = word32(s);
    let ack_number = word32(a);
    let proto = be16(b, 2);
    let layer = Layer::Gre(Gre {
        chksum_present: v(Flag(c)),
        routing_present: v(Flag(r)),
        key_present: v(Flag(k)),
        seqnum_present: v(Flag(s)),
        strict_source_route: v(Flag(bit(11))),
        recursion_control: v(((word >> 8) & 7) as u8),
        acknum_present: v(Flag(a)),
        flags: v(((word >> 3) & 0x0f) as u8),
        version: v((word & 7) as u8),
        proto: v(proto),
        chksum: v(if c { first } else { 0 }),
        ignored_chksum: v(if r && !c { first } else { 0 }),
        reserved1: v(if c && !r { second } else { 0 }),
        routing_offset: v(if r { second } else { 0 }),
        key: v(key),
        sequence_number: v(sequence_number),
        ack_number: v(ack_number),
        routing: Vec::new(),
    });
    Some((layer, need, next_of_ethertype(dialect, proto), None))
}

fn decode_icmpv6_body(dialect: Dialect, typ: u8, b: &[u8]) -> Option<Decoded> {
    if b.len() < 4 {
        return None;
    }
    let word = be32(b, 0);
    let quoted = || b[4..].to_vec();
    // A body with options: its fixed part, then options to the end.
    let ndp = |fixed: usize, make: &dyn Fn(Vec<NdpOption>) -> Layer| {
        (b.len() >= fixed).then(|| {
            let (options, used) = decode_ndp_options(dialect, &b[fixed..]);
            (make(options), fixed + used, Next::Raw, None)
        })
    };
    match typ {
        1 | 3 => {
            let body = Icmpv6Error {
                unused: v(word),
                invoking_packet: quoted(),
            };
            let layer = if typ == 1 {
                Layer::DestUnreach(body)
            } else {
                Layer::TimeExceeded(body)
            };
            Some((layer, b.len(), Next::Raw, None))
        }
        2 => Some((
            Layer::PacketTooBig(PacketTooBig {
                mtu: v(word),
                invoking_packet: quoted(),
            }),
            b.len(),
            Next::Raw,
            None,
        )),
        4 => Some((
            Layer::ParameterProblem(ParameterProblem {
                pointer: v(word),
                invoking_packet: quoted(),
            }),
            b.len(),
            Next::Raw,
            None,
        )),
        128 | 129 => {
            let echo = Echo {
                identifier: v(be16(b, 0)),
                sequence: v(be16(b, 2)),
            };
            let layer = if typ == 128 {
                Layer::Icmpv6EchoRequest(echo)
            } else {
                Layer::Icmpv6EchoReply(echo)
            };
            Some((layer, 4, Next::Raw, None))
        }
        133 => ndp(4, &|options| {
            Layer::RouterSolicitation(RouterSolicitation {
                reserved: v(word),
                options,
            })
        }),
        134 => ndp(12, &|options| {
            Layer::RouterAdvertisement(RouterAdvertisement {
                cur_hop_limit: v(b[0]),
                flags: v(b[1]),
                router_lifetime: v(be16(b, 2)),
                reachable_time: v(be32(b, 4)),
                retrans_timer: v(be32(b, 8)),
                options,
            })
        }),
        135 => ndp(20, &|options| {
            Layer::NeighborSolicitation(NeighborSolicitation {
                reserved: v(word),
                target_address: v(ipv6_at(b, 4)),
                options,
            })
        }),
        136 => ndp(20, &|options| {
            Layer::NeighborAdvertisement(NeighborAdvertisement {
                flags: v(word),
                target_address: v(ipv6_at(b, 4)),
                options,
            })
        }),
        137 => ndp(36, &|options| {
            Layer::Redirect(Redirect {
                reserved: v(word),
                target_address: v(ipv6_at(b, 4)),
                destination_address: v(ipv6_at(b, 20)),
                options,
            })
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
