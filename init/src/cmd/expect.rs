//! `expect`: packet assertions judged in the guest, on a capture file
//! (`--spec`, `--exact`, `--layers`) or live on an interface; `test`:
//! named tests with KTAP results.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use myinit_packet::jsonl::Direction;

use super::{parse_seconds, usage, CommandSpec};
use crate::expect::captured::{self, Captured};
use crate::expect::exact;
use crate::expect::ktap::FILTER_VAR;
use crate::expect::live::{self, Expectation};
use crate::expect::spec::{self, plural, PacketSpec, Verdict};
use crate::filter::FileFilter;
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "expect",
        usage: "expect FILE --spec SPEC\n\
                expect FILE --exact EXPECTED\n\
                expect FILE [rx|tx] [--layers JSON] [--count N | --none] [--only] [FILTER...]\n\
                expect IF [rx|tx] [--layers JSON] [--count N | --none] [--within SECONDS] [--only] [FILTER...]\n\
                expect arm IF...\n\
                expect disarm IF...|all",
        summary: "assert what a capture holds, or what passes on an interface, with per-field diffs",
        help: "On a capture file (JSONL in any dialect, pcap, pcapng):\n\
               --spec SPEC judges it as the nat46 harness does: SPEC is its `# packet assertion`\n\
               file (or the JSON alone): expected_rx_count, and checks of {count, packet:\n\
               {direction, layers, valid_checksums, valid_quoted_icmp_checksum,\n\
               udp_checksum_excludes_trailing_padding}}; each layer subset matches any layer of\n\
               the packet with every key equal; `data_prefix` is a prefix of `data`,\n\
               `nonzero_fields` must not be 0.\n\
               --exact EXPECTED: every packet equal to EXPECTED's, field for field, timestamps aside.\n\
               On an interface: waits until --count N packets (default 1) match, at most --within\n\
               SECONDS (default 1), and returns as soon as they have; --none passes when nothing\n\
               matches in the whole window; --only fails on any other packet (ARP, ND, MLD and\n\
               IGMP left out). A packet matches the FILTER (pcap-filter words) and the --layers\n\
               subsets ([{\"layertype\":\"Ipv6\",\"hop_limit\":63}], or a packet object as in a\n\
               spec); rx or tx picks a direction. Packets count from `expect arm IF` (or the end of\n\
               the previous expect on IF): arm before sending, expect after.\n\
               A failure prints each packet's differing fields (`tx #2 Ipv6.hop_limit: expected\n\
               63, got 64`), the packets seen one per line, and ends with one status line; the\n\
               status is 1. Inside a `test`, it fails that test.\n\
               Example: expect arm nat46dev; inject in.jsonl tap0; expect nat46dev tx --layers '[{\"layertype\":\"Ip\",\"ttl\":63}]'",
        run: expect_cmd,
        cli: None,
    },
    CommandSpec {
        name: "test",
        usage: "test NAME\ntest done",
        summary: "start a named test (ending the one before); results as KTAP",
        help: "Lines after `test NAME` belong to that test until the next `test` line, `test done`\n\
               or the end of the script. A test fails when one of its commands fails (its error\n\
               is the reason) or the kernel logs an Oops, BUG, WARNING, KASAN, UBSAN, kmemleak,\n\
               refcount_t, RCU stall, general protection fault or panic while it runs; the next\n\
               test runs anyway. With `set -e` the rest of a failed test is skipped.\n\
               Results print as KTAP (`ok 1 - NAME`, `not ok 2 - NAME # reason`); `test done`\n\
               (or the end of the script, or poweroff) prints the plan `1..N` and the totals,\n\
               and a failed test makes the exit status 1.\n\
               MYINIT_TEST_FILTER (a variable, or on the kernel command line) selects tests by\n\
               name: comma-separated names or globs; the others are reported as SKIP.\n\
               MYINIT_KMEMLEAK=1 runs a kmemleak scan after each test where the kernel has it.",
        run: test_cmd,
        cli: None,
    },
];

/// At most this many lines of the packet list after a failure.
const MOST_LISTED: usize = 40;

fn expect_cmd(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    match args.first().map(String::as_str) {
        None => Err(usage("missing FILE or IF")),
        Some("arm") => {
            if args.len() < 2 {
                return Err(usage("arm needs at least one IF"));
            }
            let state = ctx.state();
            for ifname in &args[1..] {
                live::arm(&state, ifname)?;
            }
            Ok(0)
        }
        Some("disarm") => {
            match args.get(1..).unwrap_or_default() {
                [] => return Err(usage("disarm needs IF... or all")),
                [all] if all == "all" => {
                    live::disarm_all();
                }
                names => {
                    for ifname in names {
                        if !live::disarm(ifname) {
                            bail!("{ifname}: not armed (armed: {})", armed_list());
                        }
                    }
                }
            }
            Ok(0)
        }
        Some(target) => {
            let options = Options::parse(&args[1..])?;
            let file_form = options.spec.is_some() || options.exact.is_some();
            if !file_form && crate::net::iface::exists(target) {
                return live_expect(ctx, target, options);
            }
            if !file_form && !std::path::Path::new(target).exists() {
                bail!("{target}: no such interface or file");
            }
            file_expect(ctx, target, options)
        }
    }
}

fn armed_list() -> String {
    let names = live::armed();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

#[derive(Default)]
struct Options {
    spec: Option<String>,
    exact: Option<String>,
    layers: Option<PacketSpec>,
    direction: Option<Direction>,
    count: Option<usize>,
    none: bool,
    within: Option<Duration>,
    only: bool,
    filter: Vec<String>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut o = Options::default();
        let mut words = args.iter();
        while let Some(word) = words.next() {
            let mut value = |flag: &str| {
                words
                    .next()
                    .cloned()
                    .ok_or_else(|| usage(format!("{flag} needs a value")))
            };
            match word.as_str() {
                "--spec" => o.spec = Some(value("--spec")?),
                "--exact" => o.exact = Some(value("--exact")?),
                "--layers" => {
                    let text = value("--layers")?;
                    let json: serde_json::Value = serde_json::from_str(&text)
                        .map_err(|e| usage(format!("--layers: not valid JSON: {e}")))?;
                    o.layers = Some(
                        spec::parse_layers(&json).map_err(|e| usage(format!("--layers: {e:#}")))?,
                    );
                }
                "--count" => {
                    let text = value("--count")?;
                    o.count = Some(
                        text.parse()
                            .map_err(|_| usage(format!("--count: not a number: {text}")))?,
                    );
                }
                "--none" => o.none = true,
                "--only" => o.only = true,
                "--within" => o.within = Some(parse_seconds(&value("--within")?)?),
                "rx" if o.filter.is_empty() && o.direction.is_none() => {
                    o.direction = Some(Direction::Rx)
                }
                "tx" if o.filter.is_empty() && o.direction.is_none() => {
                    o.direction = Some(Direction::Tx)
                }
                flag if flag.starts_with("--") => {
                    return Err(usage(format!("unknown option {flag}")))
                }
                _ => o.filter.push(word.clone()),
            }
        }
        if o.none && o.count.is_some() {
            return Err(usage("--none and --count exclude each other"));
        }
        if o.spec.is_some() && o.exact.is_some() {
            return Err(usage("--spec and --exact exclude each other"));
        }
        let judged = o.spec.is_some() || o.exact.is_some();
        if judged
            && (o.layers.is_some()
                || o.count.is_some()
                || o.none
                || o.only
                || !o.filter.is_empty()
                || o.direction.is_some())
        {
            return Err(usage("--spec and --exact take no other option"));
        }
        Ok(o)
    }

    fn file_filter(&self) -> anyhow::Result<Option<FileFilter>> {
        if self.filter.is_empty() {
            return Ok(None);
        }
        let text = self.filter.join(" ");
        Ok(Some(
            FileFilter::new(&text).map_err(|e| anyhow!("filter: {e}"))?,
        ))
    }
}

/// The judgement of a file: diffs, the packet list, then one status line.
fn report(
    ctx: &mut Ctx<'_>,
    what: &str,
    packets: &[Captured],
    verdict: Verdict,
    ok_line: String,
) -> anyhow::Result<i32> {
    let Some(failure) = verdict.failure else {
        writeln!(ctx.out, "{ok_line}")?;
        return Ok(0);
    };
    for line in &verdict.lines {
        writeln!(ctx.out, "{line}")?;
    }
    list_packets(ctx, packets)?;
    Err(anyhow!("FAIL {what}: {failure}"))
}

fn list_packets(ctx: &mut Ctx<'_>, packets: &[Captured]) -> anyhow::Result<()> {
    if packets.is_empty() {
        writeln!(ctx.out, "no packets seen")?;
        return Ok(());
    }
    writeln!(
        ctx.out,
        "{} {} seen:",
        packets.len(),
        plural(packets.len() as u64)
    )?;
    for (i, p) in packets.iter().enumerate().take(MOST_LISTED) {
        writeln!(ctx.out, "  {}", p.summary(i))?;
    }
    if packets.len() > MOST_LISTED {
        writeln!(ctx.out, "  … and {} more", packets.len() - MOST_LISTED)?;
    }
    Ok(())
}

fn file_expect(ctx: &mut Ctx<'_>, file: &str, o: Options) -> anyhow::Result<i32> {
    if let Some(spec_path) = &o.spec {
        let text = std::fs::read_to_string(spec_path)
            .map_err(|e| anyhow!("{spec_path}: {}", crate::util::io_error(&e)))?;
        let spec = spec::parse_spec(&text).with_context(|| spec_path.to_string())?;
        let packets = captured::load(std::path::Path::new(file))?;
        let received = packets
            .iter()
            .filter(|p| p.direction == Some(Direction::Rx))
            .count();
        let verdict = spec.judge(&packets);
        let ok = format!(
            "expect: ok {file}: {} {}, {received} received, {} {} hold",
            packets.len(),
            plural(packets.len() as u64),
            spec.checks.len(),
            if spec.checks.len() == 1 {
                "check"
            } else {
                "checks"
            }
        );
        return report(ctx, file, &packets, verdict, ok);
    }
    if let Some(expected_path) = &o.exact {
        let expected = captured::load(std::path::Path::new(expected_path))?;
        let packets = captured::load(std::path::Path::new(file))?;
        let verdict = exact::judge(&expected, &packets);
        let ok = format!(
            "expect: ok {file}: {} {} equal to {expected_path}'s",
            packets.len(),
            plural(packets.len() as u64)
        );
        return report(ctx, file, &packets, verdict, ok);
    }
    // A count of matching packets in the file.
    let packets = captured::load(std::path::Path::new(file))?;
    let mut filter = o.file_filter()?;
    let mut matching = Vec::new();
    let mut others = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        let by_direction = o.direction.is_none_or(|d| p.direction == Some(d));
        let by_filter = match filter.as_mut() {
            Some(f) => f
                .matches(p.linktype, &p.bytes)
                .map_err(|e| anyhow!("filter: {e}"))?,
            None => true,
        };
        let by_layers = o.layers.as_ref().is_none_or(|l| l.matches(p));
        if by_direction && by_filter && by_layers {
            matching.push(i);
        } else if by_direction && !live::is_noise(p.linktype, &p.bytes) {
            others.push(i);
        }
    }
    judge_count(ctx, file, &o, &packets, &matching, &others, None)
}

/// The verdict of a count: `--count N` exactly N in a file (at least N
/// live, where it returns when N came), `--none` none, `--only` nothing
/// else.
fn judge_count(
    ctx: &mut Ctx<'_>,
    what: &str,
    o: &Options,
    packets: &[Captured],
    matching: &[usize],
    others: &[usize],
    waited: Option<Duration>,
) -> anyhow::Result<i32> {
    let want = if o.none { 0 } else { o.count.unwrap_or(1) };
    let got = matching.len();
    let live = waited.is_some();
    let described = describe(o);
    let mut failure = None;
    let mut lines = Vec::new();
    let count_ok = if live && !o.none {
        got >= want
    } else {
        got == want
    };
    if !count_ok {
        let within = waited
            .map(|w| format!(" within {:.1} s", w.as_secs_f64()))
            .unwrap_or_default();
        failure = Some(format!(
            "expected {want} {} matching {described}, got {got}{within}",
            plural(want as u64)
        ));
        if got < want {
            if let Some(layers) = &o.layers {
                let candidates: Vec<Captured> = packets.to_vec();
                lines.extend(layers.closest(&candidates, 3));
            }
        } else {
            let which: Vec<String> = matching.iter().map(|&i| packets[i].label(i)).collect();
            lines.push(format!("matching: {}", which.join(", ")));
        }
    }
    if o.only && !others.is_empty() && failure.is_none() {
        let which: Vec<String> = others.iter().map(|&i| packets[i].label(i)).collect();
        failure = Some(format!(
            "{} other {} besides those matching {described}: {}",
            others.len(),
            plural(others.len() as u64),
            which.join(", ")
        ));
    }
    match failure {
        None => {
            let time = waited
                .map(|w| format!(" in {} ms", w.as_millis()))
                .unwrap_or_default();
            writeln!(
                ctx.out,
                "expect: ok {what}: {got} {} matching {described}{time}",
                plural(got as u64)
            )?;
            Ok(0)
        }
        Some(failure) => {
            for line in lines {
                writeln!(ctx.out, "{line}")?;
            }
            list_packets(ctx, packets)?;
            Err(anyhow!("FAIL {what}: {failure}"))
        }
    }
}

fn describe(o: &Options) -> String {
    let mut parts = Vec::new();
    if let Some(d) = o.direction {
        parts.push(spec::direction_word(Some(d)).to_string());
    }
    if !o.filter.is_empty() {
        parts.push(format!("`{}`", o.filter.join(" ")));
    }
    if let Some(layers) = &o.layers {
        parts.push(layers.describe());
    }
    if parts.is_empty() {
        "any packet".into()
    } else {
        parts.join(" ")
    }
}

fn live_expect(ctx: &mut Ctx<'_>, ifname: &str, o: Options) -> anyhow::Result<i32> {
    let filter = o.file_filter()?;
    let expectation = Expectation {
        ifname: ifname.to_string(),
        direction: o.direction,
        filter,
        packet: o.layers.clone(),
        count: if o.none {
            None
        } else {
            Some(o.count.unwrap_or(1))
        },
        within: o.within.unwrap_or(Duration::from_secs(1)),
        only: o.only,
    };
    let interrupts = ctx.interrupts();
    let interrupted = move || interrupts.has_changed().unwrap_or(false);
    let state = ctx.state();
    let outcome = live::wait(&state, &expectation, &interrupted)?;
    if outcome.cut > 0 {
        writeln!(
            ctx.out,
            "note: {} {} longer than 64 KiB, judged on the first 64 KiB",
            outcome.cut,
            plural(outcome.cut as u64)
        )?;
    }
    judge_count(
        ctx,
        ifname,
        &o,
        &outcome.packets,
        &outcome.matching,
        &outcome.others,
        Some(outcome.waited),
    )
}

fn test_cmd(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    match args {
        [done] if done == "done" => {
            let passed = ctx.shell.finish_tests(ctx.out);
            Ok(match passed {
                Some(false) => 1,
                _ => 0,
            })
        }
        [name] => {
            if name.starts_with('-') || name.contains('#') {
                return Err(usage(format!(
                    "{name}: a test name is one word, without a leading '-' or a '#'"
                )));
            }
            let selection = ctx.shell.var(FILTER_VAR);
            ctx.shell.tests.begin(name, selection.as_deref(), ctx.out)?;
            Ok(0)
        }
        [] => Err(usage("missing NAME")),
        _ => Err(usage("a test name is one word (quote it if it has spaces)")),
    }
}
