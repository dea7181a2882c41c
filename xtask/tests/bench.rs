//! `cargo xtask bench all --quick` runs every built part for real (veth
//! pairs, trafgen, bpftrace, tcpreplay, qemu) and writes JSON of the shape
//! BENCH.md describes, so the bench code cannot rot. Nothing here is about
//! speed. Needs root, like the bench.

mod common;

use std::process::{Output, Stdio};
use std::sync::Mutex;

use serde_json::Value;

/// One bench at a time, as `bench all` runs its parts: run side by side,
/// one's flood loads the other's CPUs, and the drop tracer, which sees
/// every kfree_skb of the machine, had its ring filled by the capture
/// bench's drops and counted them lost.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `cargo xtask bench PART --quick --out OUT`.
fn quick_bench(part: &str, out: &common::TempDir) -> Output {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    common::xtask()
        .args(["bench", part, "--quick", "--out"])
        .arg(out.dir())
        .stdin(Stdio::null())
        .output()
        .expect("run xtask bench")
}

fn rows(doc: &Value) -> Vec<&Value> {
    doc["tables"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["rows"].as_array().unwrap())
        .collect()
}

/// Every table has a title, columns, rows keyed by exactly those columns,
/// and its ratios are finite numbers.
fn check_shape(doc: &Value, part: &str) {
    assert_eq!(doc["part"], part, "{doc}");
    assert_eq!(doc["quick"], true);
    assert_eq!(doc["rounds"], 1);
    let tables = doc["tables"].as_array().expect("tables");
    assert!(!tables.is_empty(), "{part}: no tables");
    for t in tables {
        assert!(t["title"].as_str().is_some_and(|s| !s.is_empty()));
        let columns: Vec<&str> = t["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let rows = t["rows"].as_array().unwrap();
        assert!(!rows.is_empty(), "{part}: a table without rows: {t}");
        for row in rows {
            let keys: Vec<&str> = row
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            let mut want = columns.clone();
            want.sort();
            let mut got = keys.clone();
            got.sort();
            assert_eq!(got, want, "{part}: {row}");
        }
        for r in t["ratios"].as_array().unwrap() {
            assert!(
                r["ratio"].as_f64().is_some_and(f64::is_finite),
                "{part}: {r}"
            );
        }
    }
}

fn labels<'a>(doc: &'a Value, column: &str) -> Vec<&'a str> {
    rows(doc)
        .iter()
        .filter_map(|r| r[column].as_str())
        .collect()
}

#[test]
fn quick_bench_of_every_built_part_writes_tables_of_the_documented_shape() {
    let out = common::TempDir::new("bench");
    let run = quick_bench("all", &out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench failed:\n{stdout}\n{stderr}");

    let read = |part: &str| -> Value {
        let path = out.dir().join(format!("{part}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(out.dir().join(format!("{part}.md")).is_file());
        serde_json::from_str(&text).unwrap()
    };

    let droptrace = read("droptrace");
    check_shape(&droptrace, "droptrace");
    let contenders = labels(&droptrace, "contender");
    for want in ["none", "bpftrace", "--backend ebpf", "--backend ftrace"] {
        assert!(
            contenders.iter().any(|c| c.contains(want)),
            "no {want} row: {contenders:?}"
        );
    }
    // The generator's own rate is in the table, and the kernel's count
    // of drops matches what the generator sent.
    let none = rows(&droptrace)[0];
    assert!(none["frames/s"].as_f64().is_some_and(|r| r > 0.0), "{none}");
    assert_eq!(none["produced"].as_f64(), Some(100_000.0), "{none}");
    // eBPF full events lose nothing at this rate: seen + lost = produced.
    let ebpf = rows(&droptrace)
        .into_iter()
        .find(|r| {
            r["contender"]
                .as_str()
                .unwrap()
                .ends_with("--backend ebpf (static musl)")
        })
        .unwrap();
    assert_eq!(ebpf["seen + lost = produced"], "yes", "{ebpf}");
    let ratios = droptrace["tables"][0]["ratios"].as_array().unwrap();
    assert!(
        ratios
            .iter()
            .any(|r| r["what"].as_str().unwrap().contains("vs bpftrace")),
        "{ratios:?}"
    );

    let inject = read("inject");
    check_shape(&inject, "inject");
    let senders = labels(&inject, "sender");
    assert!(senders.iter().any(|s| s.contains("trafgen")), "{senders:?}");
    assert!(
        senders.iter().any(|s| s.contains("tcpreplay")),
        "{senders:?}"
    );
    assert!(
        senders.iter().any(|s| s.contains("myinit inject")),
        "{senders:?}"
    );
    // Every sender's packets reached the receiver (its interface counter).
    for row in rows(&inject).iter().take(3) {
        assert_eq!(row["received"].as_f64(), Some(10_000.0), "{row}");
    }
    // At the recorded pace the receiver's capture holds every packet the
    // interface counted, so drift and lateness cover the whole file.
    let paced = &inject["tables"][1]["rows"][0];
    assert!(
        paced["sender"].as_str().unwrap().contains("tcpreplay"),
        "{paced}"
    );
    assert_eq!(paced["captured"].as_f64(), Some(10_000.0), "{paced}");
    assert_eq!(
        paced["receiver rx_packets"].as_f64(),
        Some(10_000.0),
        "{paced}"
    );
    assert!(paced["drift %"].as_f64().is_some(), "{paced}");
    assert!(
        paced["host steal on the pacing CPU ms"].as_f64() >= Some(0.0),
        "{paced}"
    );
    // myinit's paced row: the whole file, its recorded span, the lateness
    // figures and its own summary's worst lateness, each a number.
    let ours = &inject["tables"][1]["rows"][1];
    assert!(
        ours["sender"].as_str().unwrap().contains("myinit inject"),
        "{ours}"
    );
    assert_eq!(ours["captured"].as_f64(), Some(10_000.0), "{ours}");
    assert!(
        ours["recorded span s"]
            .as_f64()
            .is_some_and(|s| (s - 0.9999).abs() < 1e-9),
        "{ours}"
    );
    for column in [
        "received span s",
        "sender's own span s",
        "p50 lateness µs",
        "p99 lateness µs",
        "max lateness µs",
        "sender's own worst lateness µs",
    ] {
        assert!(ours[column].as_f64().is_some(), "{column}: {ours}");
    }
    let targets: Vec<&str> = inject["tables"][1]["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["what"].as_str())
        .collect();
    for want in ["0.01 %", "100 µs", "|drift|, myinit inject vs tcpreplay"] {
        assert!(targets.iter().any(|t| t.contains(want)), "{targets:?}");
    }

    check_shape(&read("capture"), "capture");
    check_shape(&read("fakehost"), "fakehost");

    // Filters: every filtered contender kept exactly the matching 1 %, and
    // the filter's cost is a number for each expression.
    let filters = read("filters");
    check_shape(&filters, "filters");
    let tables = filters["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 3, "{filters}");
    for (table, column) in [
        (&tables[0], "captured = received / 100"),
        (&tables[1], "seen = produced / 100"),
    ] {
        for row in table["rows"].as_array().unwrap().iter().skip(1) {
            assert_eq!(row[column], "yes", "{row}");
        }
    }
    let costs = tables[2]["rows"].as_array().unwrap();
    assert_eq!(costs.len(), 5, "{costs:?}");
    for row in costs {
        assert!(row["filter's own ns"].as_f64().is_some(), "{row}");
    }

    let boot = read("boot");
    check_shape(&boot, "boot");
    let inits = labels(&boot, "init");
    assert!(
        inits[0].starts_with("myinit") && inits[1].starts_with("busybox"),
        "{inits:?}"
    );
    let myinit = rows(&boot)[0];
    assert!(
        myinit["PID 1 RSS at the prompt KiB"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{myinit}"
    );
}

/// `bench capture --quick` on its own: both frame sizes, every contender,
/// and each file holds what its capture says it captured.
#[test]
fn quick_capture_bench_captures_both_frame_sizes_and_the_files_hold_the_counts() {
    let out = common::TempDir::new("bench-capture");
    let run = quick_bench("capture", &out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let text = std::fs::read_to_string(out.dir().join("capture.json")).unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    check_shape(&doc, "capture");
    let tables = doc["tables"].as_array().unwrap();
    assert_eq!(tables.len(), 2, "64 and 1500 bytes: {doc}");
    for (table, size) in tables.iter().zip(["64-byte", "1500-byte"]) {
        assert!(table["title"].as_str().unwrap().contains(size), "{table}");
        let rows = table["rows"].as_array().unwrap();
        let label = |r: &Value| r["contender"].as_str().unwrap().to_string();
        let names: Vec<String> = rows.iter().map(label).collect();
        for want in ["none", "tcpdump", "--backend ebpf", "--backend packet"] {
            assert!(
                names.iter().any(|n| n.contains(want)),
                "no {want}: {names:?}"
            );
        }
        // The generator's rate is there, and every frame reached the receiver.
        let none = &rows[0];
        assert!(none["frames/s"].as_f64().is_some_and(|r| r > 0.0), "{none}");
        for row in rows {
            let received = row["received"].as_f64().unwrap();
            assert!(received >= 10_000.0, "{row}");
            if label(row).starts_with("none") {
                continue;
            }
            // Captured + lost accounts for every frame, and the file holds
            // exactly what was counted as captured.
            assert_eq!(row["captured + lost = received"], "yes", "{row}");
            assert_eq!(row["file = captured"], "yes", "{row}");
            assert!(row["captured"].as_f64().unwrap() > 0.0, "{row}");
        }
        let ratios = table["ratios"].as_array().unwrap();
        assert_eq!(ratios.len(), 2, "ebpf and packet vs tcpdump: {ratios:?}");
        for r in ratios {
            assert!(r["what"].as_str().unwrap().contains("vs tcpdump"), "{r}");
            assert_eq!(r["target"].as_f64(), Some(0.5), "{r}");
        }
    }
}

#[test]
fn an_unknown_part_is_one_clear_error() {
    let run = common::xtask()
        .args(["bench", "nope", "--quick"])
        .stdin(Stdio::null())
        .output()
        .expect("run xtask bench");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr
            .contains("expected one of droptrace, capture, inject, fakehost, filters, boot or all"),
        "{stderr}"
    );
}

/// `bench fakehost --quick`: both backends answer the flood and the pings,
/// the counts agree with the kernel's, and the speed-up is reported
/// against its at-least target.
#[test]
fn quick_fakehost_bench_answers_the_flood_and_pings_with_both_backends() {
    let out = common::TempDir::new("bench-fakehost");
    let run = quick_bench("fakehost", &out);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let path = out.dir().join("fakehost.json");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    check_shape(&doc, "fakehost");
    assert!(out.dir().join("fakehost.md").is_file());

    let flood = doc["tables"][0]["rows"].as_array().unwrap();
    let label = |r: &Value| r["contender"].as_str().unwrap().to_string();
    assert!(label(&flood[0]).starts_with("none"), "{flood:?}");
    assert!(
        flood[0]["requests/s"].as_f64().is_some_and(|r| r > 0.0),
        "{flood:?}"
    );
    for row in flood {
        assert_eq!(row["requests sent"].as_f64(), Some(100_000.0), "{row}");
        assert_eq!(row["ICMP csum errors"].as_f64(), Some(0.0), "{row}");
    }
    // Alone, nothing answers: every request reaches the peer.
    assert_eq!(flood[0]["replies"].as_f64(), Some(0.0), "{flood:?}");
    assert_eq!(flood[0]["to peer"].as_f64(), Some(100_000.0), "{flood:?}");
    assert_eq!(flood.len(), 4, "{flood:?}");
    assert!(label(&flood[3]).contains("trafgen --rate"), "{flood:?}");
    for backend in ["--backend ebpf", "--backend packet (", "offered the eBPF"] {
        let row = flood
            .iter()
            .find(|r| label(r).contains(backend))
            .unwrap_or_else(|| panic!("no {backend} row: {flood:?}"));
        let replies = row["replies"].as_f64().unwrap();
        let answered = row["answered"].as_f64().unwrap();
        // The kernel received what the backend answered (no more), and
        // something was answered.
        assert!(replies > 0.0 && replies <= answered, "{row}");
        assert!(answered <= 100_000.0, "{row}");
        assert!(row["replies/s"].as_f64().is_some_and(|r| r > 0.0), "{row}");
        assert!(row["myinit CPU s"].as_f64().is_some(), "{row}");
    }
    // The eBPF backend takes the requests at the egress hook: what it
    // answered never reached the peer.
    let ebpf = flood.iter().find(|r| label(r).contains("ebpf")).unwrap();
    assert_eq!(
        ebpf["answered"].as_f64().unwrap() + ebpf["to peer"].as_f64().unwrap(),
        100_000.0,
        "{ebpf}"
    );
    let speedups: Vec<&Value> = doc["tables"][0]["ratios"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["better"] == "higher")
        .collect();
    assert_eq!(speedups.len(), 1, "{speedups:?}");
    assert_eq!(speedups[0]["target"].as_f64(), Some(5.0));
    assert!(
        stdout.contains("eBPF backend vs packet backend: **")
            && stdout.contains("(target ≥ 5.00×: "),
        "{stdout}"
    );

    let rtt = doc["tables"][1]["rows"].as_array().unwrap();
    assert_eq!(rtt.len(), 2, "{rtt:?}");
    for row in rtt {
        assert_eq!(row["sent"].as_f64(), Some(100.0), "{row}");
        assert_eq!(row["received"].as_f64(), Some(100.0), "{row}");
        let (med, p99) = (
            row["RTT median ms"].as_f64().unwrap(),
            row["RTT p99 ms"].as_f64().unwrap(),
        );
        assert!(med > 0.0 && p99 >= med, "{row}");
    }
}
