//! A small reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): enum
//! values (e.g. drop-reason names), struct member offsets (what eBPF
//! programs read from kernel structs, since Rust eBPF has no CO-RE) and
//! tracepoint prototypes (capability checks). aya-obj keeps its type lookups
//! crate-private, and the format is simple (the kernel's
//! Documentation/bpf/btf.rst), so the reader is our own; the file is read
//! once and the same bytes are parsed for aya's loader as well.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

const MAGIC: u16 = 0xeb9f;

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// One type record: its kind, name and where its trailing data starts.
#[derive(Clone, Copy, Debug)]
struct TypeRec {
    kind: u32,
    kind_flag: bool,
    vlen: u32,
    name_off: u32,
    /// `size` or `type`, depending on the kind.
    size_type: u32,
    /// Offset of the kind-specific data in `Btf::types`.
    extra: usize,
}

/// A parsed BTF blob (little-endian, as on x86_64 and arm64).
pub struct Btf {
    types: Vec<u8>,
    strings: Vec<u8>,
    /// Index = type id; id 0 is `void`.
    recs: Vec<TypeRec>,
    by_name: HashMap<String, Vec<u32>>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// The kernel BTF file; `MYINIT_BTF` points elsewhere (tests simulate
/// kernels without BTF with it).
pub fn vmlinux_path() -> PathBuf {
    std::env::var_os("MYINIT_BTF")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/sys/kernel/btf/vmlinux"))
}

/// Why the kernel's BTF could not be had. Each says the cause itself.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("{}: cannot read BTF (kernel without CONFIG_DEBUG_INFO_BTF?): {error}", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: bad BTF: {what}", .path.display())]
    Bad { path: PathBuf, what: String },
    #[error("{}: aya cannot parse this BTF: {error}", .path.display())]
    Aya { path: PathBuf, error: aya::BtfError },
    /// What is wrong in the data itself.
    #[error("{0}")]
    Malformed(String),
}

fn malformed(what: impl Into<String>) -> BtfError {
    BtfError::Malformed(what.into())
}

/// The running kernel's BTF, read once: our reader's view for lookups and
/// aya's for loading programs (relocations, `tp_btf` targets).
pub struct KernelBtf {
    pub types: Btf,
    pub aya: aya::Btf,
}

impl KernelBtf {
    /// The kernel's BTF, shared by everyone who holds it: parsed (both ways)
    /// at most once while anyone does, and freed when no one does, since the
    /// parsed form is tens of MiB that PID 1 should not keep at the prompt.
    pub fn get() -> Result<Arc<KernelBtf>, BtfError> {
        static CACHE: Mutex<Option<(PathBuf, Weak<KernelBtf>)>> = Mutex::new(None);
        let path = vmlinux_path();
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_path, weak)) = cache.as_ref() {
            if *cached_path == path {
                if let Some(btf) = weak.upgrade() {
                    return Ok(btf);
                }
            }
        }
        let btf = Arc::new(Self::from_file(&path)?);
        *cache = Some((path, Arc::downgrade(&btf)));
        Ok(btf)
    }

    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let path_buf = || path.to_path_buf();
        let data = std::fs::read(path).map_err(|error| BtfError::Read {
            path: path_buf(),
            error,
        })?;
        let types = Btf::parse(&data).map_err(|error| BtfError::Bad {
            path: path_buf(),
            what: error.to_string(),
        })?;
        let aya =
            aya::Btf::parse(&data, aya::Endianness::default()).map_err(|error| BtfError::Aya {
                path: path_buf(),
                error,
            })?;
        Ok(KernelBtf { types, aya })
    }
}

impl Btf {
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let magic = data.get(0..2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if magic != Some(MAGIC) {
            return Err(malformed("no BTF magic (big-endian BTF is not supported)"));
        }
        let field = |i: usize| u32_at(data, 4 + 4 * i).ok_or_else(|| malformed("truncated header"));
        let hdr_len = field(0)? as usize;
        let (type_off, type_len, str_off, str_len) = (
            field(1)? as usize,
            field(2)? as usize,
            field(3)? as usize,
            field(4)? as usize,
        );
        let types = data
            .get(hdr_len + type_off..hdr_len + type_off + type_len)
            .ok_or_else(|| malformed("type section out of bounds"))?
            .to_vec();
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| malformed("string section out of bounds"))?
            .to_vec();
        let mut recs = vec![TypeRec {
            kind: 0,
            kind_flag: false,
            vlen: 0,
            name_off: 0,
            size_type: 0,
            extra: 0,
        }];
        let mut off = 0;
        while off < types.len() {
            let name_off = u32_at(&types, off).ok_or_else(|| malformed("truncated type"))?;
            let info = u32_at(&types, off + 4).ok_or_else(|| malformed("truncated type"))?;
            let size_type = u32_at(&types, off + 8).ok_or_else(|| malformed("truncated type"))?;
            let kind = (info >> 24) & 0x1f;
            let vlen = info & 0xffff;
            let extra = off + 12;
            let extra_len = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen as usize,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen as usize,
                0..=19 => 0,
                _ => return Err(malformed(format!("unknown BTF kind {kind} at byte {off}"))),
            };
            recs.push(TypeRec {
                kind,
                kind_flag: info >> 31 == 1,
                vlen,
                name_off,
                size_type,
                extra,
            });
            off = extra + extra_len;
        }
        let mut btf = Btf {
            types,
            strings,
            recs,
            by_name: HashMap::new(),
        };
        for id in 1..btf.recs.len() {
            let name = btf.str_at(btf.recs[id].name_off);
            if !name.is_empty() {
                let name = name.to_string();
                btf.by_name.entry(name).or_default().push(id as u32);
            }
        }
        Ok(btf)
    }

    fn str_at(&self, off: u32) -> &str {
        let rest = self.strings.get(off as usize..).unwrap_or(&[]);
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn find(&self, name: &str, kinds: &[u32]) -> Option<&TypeRec> {
        self.by_name
            .get(name)?
            .iter()
            .map(|&id| &self.recs[id as usize])
            .find(|r| kinds.contains(&r.kind))
    }

    /// The named enum's values (ENUM or ENUM64), in declaration order.
    pub fn enum_values(&self, name: &str) -> Option<Vec<(String, i64)>> {
        let rec = self.find(name, &[KIND_ENUM, KIND_ENUM64])?;
        let mut values = Vec::with_capacity(rec.vlen as usize);
        for i in 0..rec.vlen as usize {
            let (entry, value) = if rec.kind == KIND_ENUM {
                let e = rec.extra + 8 * i;
                let raw = u32_at(&self.types, e + 4)?;
                // kind_flag set: signed values.
                let v = if rec.kind_flag {
                    i64::from(raw as i32)
                } else {
                    i64::from(raw)
                };
                (e, v)
            } else {
                let e = rec.extra + 12 * i;
                let lo = u64::from(u32_at(&self.types, e + 4)?);
                let hi = u64::from(u32_at(&self.types, e + 8)?);
                (e, ((hi << 32) | lo) as i64)
            };
            values.push((self.str_at(u32_at(&self.types, entry)?).to_string(), value));
        }
        Some(values)
    }

    /// Byte offset of `member` in struct `name`, looking inside anonymous
    /// structs and unions (where `sk_buff` keeps `dev` and the headers).
    pub fn member_offset(&self, name: &str, member: &str) -> Option<u32> {
        let rec = self.find(name, &[KIND_STRUCT, KIND_UNION])?;
        self.member_in(rec, member).map(|bits| bits / 8)
    }

    fn member_in(&self, rec: &TypeRec, member: &str) -> Option<u32> {
        for i in 0..rec.vlen as usize {
            let m = rec.extra + 12 * i;
            let name = self.str_at(u32_at(&self.types, m)?);
            let type_id = u32_at(&self.types, m + 4)?;
            let raw = u32_at(&self.types, m + 8)?;
            // kind_flag: the high 8 bits hold a bitfield size.
            let bits = if rec.kind_flag {
                raw & 0x00ff_ffff
            } else {
                raw
            };
            if name == member {
                return Some(bits);
            }
            if name.is_empty() {
                let inner = self.resolve(type_id)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION) {
                    if let Some(found) = self.member_in(inner, member) {
                        return Some(bits + found);
                    }
                }
            }
        }
        None
    }

    /// Follows typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<&TypeRec> {
        for _ in 0..32 {
            let rec = self.recs.get(id as usize)?;
            match rec.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = rec.size_type
                }
                _ => return Some(rec),
            }
        }
        None
    }

    /// The type id of a BTF tracepoint (`btf_trace_NAME`, a typedef): what a
    /// tp_btf program names as its attach point.
    pub fn tracepoint_id(&self, tracepoint: &str) -> Option<u32> {
        let name = format!("btf_trace_{tracepoint}");
        self.by_name
            .get(name.as_str())?
            .iter()
            .copied()
            .find(|&id| self.recs[id as usize].kind == KIND_TYPEDEF)
    }

    /// Number of arguments of a BTF tracepoint (`btf_trace_NAME`), without
    /// the leading context pointer; None when this kernel has no such
    /// tracepoint in its BTF.
    pub fn tracepoint_args(&self, tracepoint: &str) -> Option<usize> {
        let typedef = self.find(&format!("btf_trace_{tracepoint}"), &[KIND_TYPEDEF])?;
        let ptr = self.recs.get(typedef.size_type as usize)?;
        if ptr.kind != KIND_PTR {
            return None;
        }
        let proto = self.recs.get(ptr.size_type as usize)?;
        if proto.kind != KIND_FUNC_PROTO {
            return None;
        }
        Some((proto.vlen as usize).saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny BTF blob: strings, then types as (name, info, size_type, extra words).
    fn blob(strings: &[&str], types: &[(u32, u32, u32, Vec<u32>)]) -> (Vec<u8>, Vec<u32>) {
        let mut strs = vec![0u8];
        let mut offs = Vec::new();
        for s in strings {
            offs.push(strs.len() as u32);
            strs.extend_from_slice(s.as_bytes());
            strs.push(0);
        }
        let mut ty = Vec::new();
        for (name, info, st, extra) in types {
            for w in [*name, *info, *st].iter().chain(extra.iter()) {
                ty.extend_from_slice(&w.to_le_bytes());
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            ty.len() as u32,
            ty.len() as u32,
            strs.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&ty);
        out.extend_from_slice(&strs);
        (out, offs)
    }

    #[test]
    fn reads_enums_nested_members_and_tracepoint_arity() {
        let names = [
            "reason",
            "A_ONE",
            "A_TWO",
            "outer",
            "dev",
            "head",
            "inner",
            "btf_trace_x",
            "u64",
        ];
        let s = |i: usize| 1 + names[..i].iter().map(|n| n.len() as u32 + 1).sum::<u32>();
        let (data, _) = blob(
            &names,
            &[
                // 1: enum reason { A_ONE = 1, A_TWO = 7 }
                (s(0), (KIND_ENUM << 24) | 2, 4, vec![s(1), 1, s(2), 7]),
                // 2: u64
                (s(8), KIND_INT << 24, 8, vec![64]),
                // 3: union { u64 dev; } (anonymous)
                (0, (KIND_UNION << 24) | 1, 8, vec![s(4), 2, 0]),
                // 4: struct outer { u64 head @0; union anon @64 bits; }
                (
                    s(3),
                    (KIND_STRUCT << 24) | 2,
                    16,
                    vec![s(5), 2, 0, 0, 3, 64],
                ),
                // 5: func proto (void *ctx, u64, u64)
                (0, (KIND_FUNC_PROTO << 24) | 3, 0, vec![0, 2, 0, 2, 0, 2]),
                // 6: ptr -> 5
                (0, KIND_PTR << 24, 5, vec![]),
                // 7: typedef btf_trace_x -> 6
                (s(7), KIND_TYPEDEF << 24, 6, vec![]),
            ],
        );
        let btf = Btf::parse(&data).unwrap();
        assert_eq!(
            btf.enum_values("reason").unwrap(),
            vec![("A_ONE".to_string(), 1), ("A_TWO".to_string(), 7)]
        );
        assert_eq!(btf.member_offset("outer", "head"), Some(0));
        assert_eq!(btf.member_offset("outer", "dev"), Some(8));
        assert_eq!(btf.member_offset("outer", "nothing"), None);
        assert_eq!(btf.tracepoint_args("x"), Some(2));
        assert_eq!(btf.tracepoint_args("y"), None);
    }

    #[test]
    fn rejects_what_is_not_btf() {
        assert!(Btf::parse(b"not btf at all, not even close").is_err());
        assert!(Btf::parse(&[]).is_err());
    }
}
