//! `expect FILE --exact EXPECTED`: every packet equal, field for field,
//! timestamps aside, as the harness's `jq 'del(.timestamp_us)' | diff`.

use serde_json::{Map, Value};

use super::captured::Captured;
use super::spec::{plural, shown, Verdict};

/// Keys that differ from run to run.
const IGNORED: [&str; 2] = ["timestamp_us", "timestamp_ns"];

/// At most this many field lines per packet, and packets with differences
/// shown, so a wholly different capture stays readable.
const MOST_FIELDS: usize = 8;
const MOST_PACKETS: usize = 10;

/// Compares two captures packet by packet.
pub fn judge(expected: &[Captured], actual: &[Captured]) -> Verdict {
    let mut verdict = Verdict::default();
    let mut differing = 0;
    let mut first = None;
    for (i, (want, got)) in expected.iter().zip(actual).enumerate() {
        let mut lines = Vec::new();
        diff_value(&mut lines, "", &strip(&want.json), &strip(&got.json));
        if lines.is_empty() {
            continue;
        }
        differing += 1;
        let label = got.label(i);
        if first.is_none() {
            first = Some(format!("{label} {}", lines[0]));
        }
        if differing <= MOST_PACKETS {
            let extra = lines.len().saturating_sub(MOST_FIELDS);
            verdict.lines.extend(
                lines
                    .iter()
                    .take(MOST_FIELDS)
                    .map(|l| format!("{label} {l}")),
            );
            if extra > 0 {
                verdict
                    .lines
                    .push(format!("{label} … and {extra} more fields"));
            }
        }
    }
    if differing > MOST_PACKETS {
        verdict.lines.push(format!(
            "… and {} more packets differ",
            differing - MOST_PACKETS
        ));
    }
    let count_line = (expected.len() != actual.len()).then(|| {
        format!(
            "expected {} {}, got {}",
            expected.len(),
            plural(expected.len() as u64),
            actual.len()
        )
    });
    if let Some(line) = &count_line {
        verdict.lines.push(line.clone());
        let (more, side) = if actual.len() > expected.len() {
            (&actual[expected.len()..], "unexpected")
        } else {
            (&expected[actual.len()..], "missing")
        };
        for (k, p) in more.iter().enumerate().take(MOST_PACKETS) {
            let index = expected.len().min(actual.len()) + k;
            verdict.lines.push(format!("{side}: {}", p.summary(index)));
        }
    }
    verdict.failure = match (count_line, first) {
        (Some(count), Some(_)) => Some(format!(
            "{count}, and {differing} {} differ",
            plural(differing as u64)
        )),
        (Some(count), None) => Some(count),
        (None, Some(first)) if differing == 1 => Some(first),
        (None, Some(first)) => Some(format!(
            "{first} (and {} more packets differ)",
            differing - 1
        )),
        (None, None) => None,
    };
    verdict
}

fn strip(line: &Value) -> Value {
    match line {
        Value::Object(obj) => Value::Object(
            obj.iter()
                .filter(|(k, _)| !IGNORED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Map<String, Value>>(),
        ),
        other => other.clone(),
    }
}

/// Differences between two values, by path: `Ipv6.hop_limit: expected 63,
/// got 64`. Layers are named by their type; arrays of numbers (payloads)
/// are compared whole, saying where they first differ.
fn diff_value(out: &mut Vec<String>, path: &str, want: &Value, got: &Value) {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, va) in a {
                let sub = join(path, key);
                diff_value(out, &sub, va, b.get(key).unwrap_or(&Value::Null));
            }
            for (key, vb) in b {
                if !a.contains_key(key) {
                    out.push(format!(
                        "{}: expected nothing, got {}",
                        join(path, key),
                        shown(vb)
                    ));
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if path.ends_with("layers") || is_layers(a) => {
            for (i, (la, lb)) in a.iter().zip(b).enumerate() {
                let name_a = layer_name(la);
                let name_b = layer_name(lb);
                if name_a != name_b {
                    out.push(format!(
                        "layer {}: expected {}, got {}",
                        i + 1,
                        name_a.unwrap_or("?"),
                        name_b.unwrap_or("?")
                    ));
                    return;
                }
                let name = name_a.unwrap_or("?");
                let mut inner = Vec::new();
                diff_value(&mut inner, "", &without_type(la), &without_type(lb));
                out.extend(inner.into_iter().map(|l| format!("{name}.{l}")));
            }
            if a.len() != b.len() {
                let names = |l: &[Value]| -> String {
                    l.iter()
                        .map(|x| layer_name(x).unwrap_or("?"))
                        .collect::<Vec<_>>()
                        .join("/")
                };
                out.push(format!("layers: expected {}, got {}", names(a), names(b)));
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a != b {
                let at = a
                    .iter()
                    .zip(b)
                    .position(|(x, y)| x != y)
                    .unwrap_or(a.len().min(b.len()));
                out.push(format!(
                    "{}: expected {}, got {} (differs at item {at}; {} against {} items)",
                    label(path),
                    shown(want),
                    shown(got),
                    a.len(),
                    b.len()
                ));
            }
        }
        _ => {
            if want != got {
                out.push(format!(
                    "{}: expected {}, got {}",
                    label(path),
                    shown(want),
                    shown(got)
                ));
            }
        }
    }
}

fn label(path: &str) -> &str {
    if path.is_empty() {
        "packet"
    } else {
        path
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn is_layers(items: &[Value]) -> bool {
    !items.is_empty() && items.iter().all(|l| layer_name(l).is_some())
}

fn layer_name(layer: &Value) -> Option<&str> {
    layer.get("layertype").and_then(Value::as_str)
}

fn without_type(layer: &Value) -> Value {
    match layer {
        Value::Object(obj) => Value::Object(
            obj.iter()
                .filter(|(k, _)| k.as_str() != "layertype")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}
