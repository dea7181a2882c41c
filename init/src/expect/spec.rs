//! The nat46 harness's packet assertions (`# packet assertion` + JSON),
//! judged as its jq and its checksum script judge them: the packets whose
//! direction and layer subsets match a check are counted, each required
//! layer matching any layer of the packet (every key equal, except
//! `data_prefix`, a prefix of `data`, and `nonzero_fields`, fields that
//! must not be 0); the received packets are counted; the matching packets
//! of a check that asks for `valid_checksums` have their checksums
//! verified. A failure says, per packet and per field, what was expected
//! and what came.

use std::fmt::Write as _;

use anyhow::{bail, Context as _};
use myinit_packet::jsonl::Direction;
use myinit_packet::layers::Layer;
use serde_json::{Map, Value};

use super::captured::Captured;
use super::checksum::{self, Checks};

/// The keys of a layer subset that are not compared as they are.
const SPECIAL_KEYS: [&str; 2] = ["data_prefix", "nonzero_fields"];

/// What one packet must look like.
#[derive(Debug, Clone, Default)]
pub struct PacketSpec {
    pub direction: Option<Value>,
    pub layers: Vec<Map<String, Value>>,
    pub checks: Checks,
}

/// A count of packets that must match.
#[derive(Debug, Clone)]
pub struct Check {
    pub count: u64,
    pub packet: PacketSpec,
}

/// A whole assertion file.
#[derive(Debug, Clone)]
pub struct Spec {
    pub expected_rx_count: Option<u64>,
    pub checks: Vec<Check>,
}

/// Reads an assertion: the harness's file (a `# packet assertion` line,
/// then the JSON), or the JSON alone.
pub fn parse_spec(text: &str) -> anyhow::Result<Spec> {
    let json = match text.split_once('\n') {
        Some((first, rest)) if first.trim_end() == "# packet assertion" => rest,
        Some((first, _)) if first.starts_with("# jq assertion") => bail!(
            "a jq assertion (`{}`) needs jq: only `# packet assertion` specs are judged here",
            first.trim_end()
        ),
        Some((first, _)) if first.starts_with('#') => bail!(
            "unknown assertion kind `{}`: expected `# packet assertion` or the JSON alone",
            first.trim_end()
        ),
        _ => text,
    };
    let value: Value = serde_json::from_str(json).context("not valid JSON")?;
    let Value::Object(obj) = value else {
        bail!("the assertion must be a JSON object with expected_rx_count and checks");
    };
    let expected_rx_count = match obj.get("expected_rx_count") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .with_context(|| format!("expected_rx_count must be a count, found {v}"))?,
        ),
    };
    let checks = match obj.get("checks") {
        None => Vec::new(),
        Some(Value::Array(checks)) => checks
            .iter()
            .enumerate()
            .map(|(i, c)| parse_check(c).with_context(|| format!("checks[{i}]")))
            .collect::<anyhow::Result<_>>()?,
        Some(other) => bail!("checks must be an array, found {other}"),
    };
    Ok(Spec {
        expected_rx_count,
        checks,
    })
}

fn parse_check(value: &Value) -> anyhow::Result<Check> {
    let Value::Object(obj) = value else {
        bail!("a check must be an object with count and packet, found {value}");
    };
    let count = obj
        .get("count")
        .context("missing `count`")?
        .as_u64()
        .context("`count` must be a number of packets")?;
    let packet = parse_packet(obj.get("packet").context("missing `packet`")?).context("packet")?;
    Ok(Check { count, packet })
}

/// Reads a packet description: `{direction, layers, valid_checksums,
/// valid_quoted_icmp_checksum, udp_checksum_excludes_trailing_padding}`.
pub fn parse_packet(value: &Value) -> anyhow::Result<PacketSpec> {
    let Value::Object(obj) = value else {
        bail!("must be an object with direction and layers, found {value}");
    };
    let flag = |key: &str| -> anyhow::Result<bool> {
        match obj.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => bail!("{key} must be true or false, found {other}"),
        }
    };
    for key in obj.keys() {
        if ![
            "direction",
            "layers",
            "valid_checksums",
            "valid_quoted_icmp_checksum",
            "udp_checksum_excludes_trailing_padding",
        ]
        .contains(&key.as_str())
        {
            bail!("unknown key `{key}` (known: direction, layers, valid_checksums, valid_quoted_icmp_checksum, udp_checksum_excludes_trailing_padding)");
        }
    }
    let direction = match obj.get("direction") {
        None => None,
        Some(v @ Value::String(s)) if s == "rx" || s == "tx" => Some(v.clone()),
        Some(other) => bail!("direction must be \"rx\" or \"tx\", found {other}"),
    };
    let layers = match obj.get("layers") {
        None => Vec::new(),
        Some(Value::Array(layers)) => layers
            .iter()
            .enumerate()
            .map(|(i, l)| parse_layer(l).with_context(|| format!("layers[{i}]")))
            .collect::<anyhow::Result<_>>()?,
        Some(other) => bail!("layers must be an array of layer subsets, found {other}"),
    };
    Ok(PacketSpec {
        direction,
        layers,
        checks: Checks {
            valid: flag("valid_checksums")?,
            quoted_icmp: flag("valid_quoted_icmp_checksum")?,
            udp_padding_excluded: flag("udp_checksum_excludes_trailing_padding")?,
        },
    })
}

/// Reads a list of layer subsets (`expect IF --layers JSON`).
pub fn parse_layers(value: &Value) -> anyhow::Result<PacketSpec> {
    match value {
        Value::Array(_) => parse_packet(&serde_json::json!({ "layers": value })),
        Value::Object(obj) if obj.contains_key("layertype") => {
            parse_packet(&serde_json::json!({ "layers": [value] }))
        }
        _ => parse_packet(value),
    }
}

/// A layer subset: a known `layertype` and only its fields.
fn parse_layer(value: &Value) -> anyhow::Result<Map<String, Value>> {
    let Value::Object(obj) = value else {
        bail!("a layer subset must be an object with a layertype, found {value}");
    };
    let Some(layertype) = obj.get("layertype") else {
        // The harness would match any layer having these keys; a subset
        // without its type is almost always a mistake.
        bail!("a layer subset needs its `layertype`");
    };
    let Some(name) = layertype.as_str() else {
        bail!("layertype must be a string, found {layertype}");
    };
    let Some(fields) = Layer::field_names(name) else {
        bail!(
            "unknown layertype `{name}` (known: {})",
            Layer::NAMES.join(", ")
        );
    };
    let known = |key: &str| fields.contains(&key) || key == "layertype";
    for key in obj.keys() {
        if !known(key) && !SPECIAL_KEYS.contains(&key.as_str()) {
            bail!(
                "{name} has no field `{key}` (its fields: {}; and data_prefix, nonzero_fields)",
                fields.join(", ")
            );
        }
    }
    if let Some(prefix) = obj.get("data_prefix") {
        let bytes = prefix
            .as_array()
            .is_some_and(|a| a.iter().all(|b| b.as_u64().is_some_and(|b| b <= 255)));
        if !bytes {
            bail!("{name}.data_prefix must be an array of bytes (0-255)");
        }
    }
    if let Some(nonzero) = obj.get("nonzero_fields") {
        let Some(list) = nonzero.as_array() else {
            bail!("{name}.nonzero_fields must be an array of field names");
        };
        for field in list {
            match field.as_str() {
                Some(f) if known(f) => {}
                _ => bail!(
                    "{name}.nonzero_fields: {field} is not a field of {name} (its fields: {})",
                    fields.join(", ")
                ),
            }
        }
    }
    Ok(obj.clone())
}

/// The harness's layer_matches: every key equal, `data_prefix` a prefix of
/// `data`, the `nonzero_fields` neither missing, null, false nor 0.
fn layer_matches(expected: &Map<String, Value>, actual: &Value) -> bool {
    layer_differences(expected, actual).is_empty()
}

/// The keys of `expected` that `actual` does not satisfy, with what it has.
fn layer_differences(expected: &Map<String, Value>, actual: &Value) -> Vec<Difference> {
    let get = |key: &str| actual.get(key).cloned().unwrap_or(Value::Null);
    let mut out = Vec::new();
    for (key, want) in expected {
        if SPECIAL_KEYS.contains(&key.as_str()) {
            continue;
        }
        let got = get(key);
        if &got != want {
            out.push(Difference::Field {
                field: key.clone(),
                expected: want.clone(),
                got,
            });
        }
    }
    if let Some(Value::Array(prefix)) = expected.get("data_prefix") {
        let data = get("data");
        let matches = data
            .as_array()
            .is_some_and(|d| d.len() >= prefix.len() && d[..prefix.len()] == prefix[..]);
        if !matches {
            out.push(Difference::Prefix {
                expected: prefix.clone(),
                got: data,
            });
        }
    }
    if let Some(Value::Array(fields)) = expected.get("nonzero_fields") {
        for field in fields.iter().filter_map(Value::as_str) {
            let got = get(field);
            let zero = matches!(got, Value::Null | Value::Bool(false)) || got.as_f64() == Some(0.0);
            if zero {
                out.push(Difference::Zero {
                    field: field.to_string(),
                    got,
                });
            }
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq)]
enum Difference {
    Field {
        field: String,
        expected: Value,
        got: Value,
    },
    Prefix {
        expected: Vec<Value>,
        got: Value,
    },
    Zero {
        field: String,
        got: Value,
    },
}

/// A value as the diff shows it: strings bare, long arrays cut.
pub fn shown(value: &Value) -> String {
    match value {
        Value::Null => "nothing".into(),
        Value::Array(items) if items.len() > 24 => {
            let head: Vec<String> = items[..24].iter().map(Value::to_string).collect();
            format!("[{},… {} items]", head.join(","), items.len())
        }
        other => myinit_packet::edit::shown(other),
    }
}

impl Difference {
    fn text(&self, layer: &str) -> String {
        match self {
            Difference::Field {
                field,
                expected,
                got,
            } => format!(
                "{layer}.{field}: expected {}, got {}",
                shown(expected),
                shown(got)
            ),
            Difference::Prefix { expected, got } => {
                let at = got
                    .as_array()
                    .map(|d| {
                        expected
                            .iter()
                            .zip(d)
                            .position(|(a, b)| a != b)
                            .unwrap_or(d.len().min(expected.len()))
                    })
                    .unwrap_or(0);
                format!(
                    "{layer}.data: expected to start with {}, got {} (differs at byte {at})",
                    shown(&Value::Array(expected.clone())),
                    shown(got)
                )
            }
            Difference::Zero { field, got } => {
                format!("{layer}.{field}: expected non-zero, got {}", shown(got))
            }
        }
    }
}

impl PacketSpec {
    /// The harness's packet_matches.
    pub fn matches(&self, packet: &Captured) -> bool {
        self.direction_matches(packet)
            && self.layers.iter().all(|required| {
                actual_layers(packet)
                    .iter()
                    .any(|layer| layer_matches(required, layer))
            })
    }

    fn direction_matches(&self, packet: &Captured) -> bool {
        self.direction
            .as_ref()
            .is_none_or(|want| packet.json.get("direction").unwrap_or(&Value::Null) == want)
    }

    /// Why `packet` does not match, one line per field: `rx #2
    /// Ipv6.hop_limit: expected 63, got 64`. Each required layer is
    /// compared with the packet's layer of its type that differs least.
    pub fn explain(&self, packet: &Captured, index: usize) -> Vec<String> {
        let label = packet.label(index);
        let mut lines = Vec::new();
        if !self.direction_matches(packet) {
            lines.push(format!(
                "{label} direction: expected {}, got {}",
                shown(self.direction.as_ref().unwrap_or(&Value::Null)),
                shown(packet.json.get("direction").unwrap_or(&Value::Null))
            ));
        }
        let layers = actual_layers(packet);
        for required in &self.layers {
            if layers.iter().any(|l| layer_matches(required, l)) {
                continue;
            }
            let layertype = required
                .get("layertype")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let closest = layers
                .iter()
                .filter(|l| l.get("layertype").and_then(Value::as_str) == Some(layertype))
                .map(|l| layer_differences(required, l))
                .min_by_key(Vec::len);
            match closest {
                Some(differences) => lines.extend(
                    differences
                        .iter()
                        .map(|d| format!("{label} {}", d.text(layertype))),
                ),
                None => lines.push(format!(
                    "{label} {layertype}: no such layer (it has {})",
                    layer_names(packet)
                )),
            }
        }
        lines
    }

    /// How far `packet` is from matching (for picking the closest): a
    /// missing layer weighs more than any number of differing fields.
    fn distance(&self, packet: &Captured, index: usize) -> usize {
        self.explain(packet, index)
            .iter()
            .map(|line| {
                if line.ends_with(')') && line.contains(": no such layer (") {
                    1000
                } else {
                    1
                }
            })
            .sum()
    }

    /// The subset in one line, for messages.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(Value::String(d)) = &self.direction {
            text.push_str(d);
        }
        for layer in &self.layers {
            let name = layer
                .get("layertype")
                .and_then(Value::as_str)
                .unwrap_or("?");
            let fields: Vec<String> = layer
                .iter()
                .filter(|(k, _)| k.as_str() != "layertype")
                .map(|(k, v)| match k.as_str() {
                    "data_prefix" => {
                        format!("data_prefix={} bytes", v.as_array().map_or(0, Vec::len))
                    }
                    _ => format!("{k}={}", shown(v)),
                })
                .collect();
            if !text.is_empty() {
                text.push(' ');
            }
            let _ = write!(text, "{name}");
            if !fields.is_empty() {
                let _ = write!(text, "{{{}}}", fields.join(" "));
            }
        }
        if text.is_empty() {
            text.push_str("any packet");
        }
        text
    }

    /// Per-field differences of the packets closest to matching, at most
    /// `most` packets, best first; nothing when no packet is near (all
    /// miss a layer type).
    pub fn closest(&self, packets: &[Captured], most: usize) -> Vec<String> {
        let noise = |p: &Captured| super::live::is_noise(p.linktype, &p.bytes);
        let all_noise = packets.iter().all(noise);
        let mut ranked: Vec<(usize, usize)> = packets
            .iter()
            .enumerate()
            .filter(|(_, p)| !self.matches(p) && (all_noise || !noise(p)))
            .map(|(i, p)| (self.distance(p, i), i))
            .collect();
        ranked.sort();
        // Only the nearest: a packet of another kind says little.
        let best = ranked.first().map_or(0, |r| r.0);
        ranked
            .iter()
            .take_while(|r| r.0 == best)
            .take(most)
            .flat_map(|&(_, i)| self.explain(&packets[i], i))
            .collect()
    }
}

fn actual_layers(packet: &Captured) -> &[Value] {
    packet
        .json
        .get("layers")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn layer_names(packet: &Captured) -> String {
    let names: Vec<&str> = actual_layers(packet)
        .iter()
        .map(|l| l.get("layertype").and_then(Value::as_str).unwrap_or("?"))
        .collect();
    if names.is_empty() {
        "no decoded layers".into()
    } else {
        names.join("/")
    }
}

/// What judging a capture gave: the lines to print and the verdict.
#[derive(Debug, Default)]
pub struct Verdict {
    /// One line per failed expectation, per packet and field.
    pub lines: Vec<String>,
    /// The one-line reason, when it failed.
    pub failure: Option<String>,
}

impl Spec {
    /// Judges `packets` as the harness does.
    pub fn judge(&self, packets: &[Captured]) -> Verdict {
        let mut verdict = Verdict::default();
        let mut failures = Vec::new();
        let received = packets
            .iter()
            .filter(|p| p.json.get("direction").and_then(Value::as_str) == Some("rx"))
            .count() as u64;
        match self.expected_rx_count {
            None => {
                verdict.lines.push(
                    "the spec has no expected_rx_count (the harness fails such a spec)".into(),
                );
                failures.push("no expected_rx_count".to_string());
            }
            Some(want) if want != received => {
                verdict
                    .lines
                    .push(format!("received packets: expected {want}, got {received}"));
                failures.push(format!("expected {want} received, got {received}"));
            }
            Some(_) => {}
        }
        for (i, check) in self.checks.iter().enumerate() {
            let matching: Vec<usize> = (0..packets.len())
                .filter(|&j| check.packet.matches(&packets[j]))
                .collect();
            let got = matching.len() as u64;
            if got != check.count {
                verdict.lines.push(format!(
                    "check {}: expected {} {} matching {}, got {got}",
                    i + 1,
                    check.count,
                    plural(check.count),
                    check.packet.describe()
                ));
                if got < check.count {
                    verdict.lines.extend(
                        check
                            .packet
                            .closest(packets, 3)
                            .into_iter()
                            .map(|l| format!("  {l}")),
                    );
                } else {
                    let which: Vec<String> =
                        matching.iter().map(|&j| packets[j].label(j)).collect();
                    verdict
                        .lines
                        .push(format!("  matching: {}", which.join(", ")));
                }
                failures.push(format!(
                    "check {}: expected {} {}, got {got}",
                    i + 1,
                    check.count,
                    plural(check.count)
                ));
                continue;
            }
            if check.packet.checks.valid {
                for &j in &matching {
                    if let Err(e) = checksum::validate(packets, j, &check.packet.checks) {
                        verdict.lines.push(format!(
                            "check {}: {} checksum: {e}",
                            i + 1,
                            packets[j].label(j)
                        ));
                        failures.push(format!("check {}: {}: {e}", i + 1, packets[j].label(j)));
                        break;
                    }
                }
            }
        }
        if !failures.is_empty() {
            let more = match failures.len() {
                1 => String::new(),
                n => format!(" (and {} more)", n - 1),
            };
            verdict.failure = Some(format!("{}{more}", failures[0]));
        }
        verdict
    }
}

pub fn plural(n: u64) -> &'static str {
    if n == 1 {
        "packet"
    } else {
        "packets"
    }
}

/// Direction of a captured packet in the words the spec uses.
pub fn direction_word(direction: Option<Direction>) -> &'static str {
    match direction {
        Some(Direction::Rx) => "rx",
        Some(Direction::Tx) => "tx",
        None => "",
    }
}
