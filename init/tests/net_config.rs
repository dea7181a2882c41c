//! ifconfig, tap and ip against real interfaces in namespaces made here,
//! cross-checked with iproute2's JSON output.

mod common;

use common::{MyinitIn, Netns};
use serde_json::Value;

/// iproute2 itself: inside myinit, `ip` is the built-in command.
const IPROUTE2: &str = "/usr/sbin/ip";

/// A namespace with a veth pair v0/v1 (both ends here).
fn ns_with_veth(tag: &str) -> Netns {
    let ns = Netns::new(tag);
    ns.veth("v0", "v1", None);
    ns
}

/// `ip -j addr show dev IF` → the link object.
fn link_json(ns: &Netns, dev: &str) -> Value {
    ns.ip_json(&["addr", "show", "dev", dev])[0].clone()
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"]
        .as_array()
        .expect("flags array")
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// (local, prefixlen) of every address of the link object.
fn addrs(link: &Value) -> Vec<(String, u64)> {
    link["addr_info"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["local"].as_str().unwrap().to_string(),
                        i["prefixlen"].as_u64().unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn has_addr(link: &Value, local: &str, prefix: u64) -> bool {
    addrs(link).contains(&(local.to_string(), prefix))
}

/// The one line a failing command printed, without the "-c:1: " origin.
fn error_line(run: &common::MyinitRun) -> &str {
    let line = run
        .stderr
        .strip_suffix('\n')
        .expect("stderr ends with a newline");
    assert!(!line.contains('\n'), "more than one line: {run:?}");
    line.split_once(": ")
        .filter(|(o, _)| o.starts_with("-c:"))
        .map_or(line, |(_, rest)| rest)
}

/// The JSON that an external `ip -j` printed between two `echo @@` markers,
/// `n`th such section (0-based).
fn section(stdout: &str, n: usize) -> Value {
    let part = stdout.split("@@\n").nth(2 * n + 1).expect("marker section");
    serde_json::from_str(part).unwrap_or_else(|e| panic!("bad JSON {part:?}: {e}"))
}

#[test]
fn ifconfig_sets_ipv4_with_netmask_and_replaces_it() {
    let ns = ns_with_veth("nci4");
    ns.myinit("ifconfig v0 10.1.2.3 netmask 255.255.0.0")
        .assert_ok();
    let link = link_json(&ns, "v0");
    assert!(has_addr(&link, "10.1.2.3", 16), "{link}");
    assert_eq!(
        link["addr_info"][0]["broadcast"].as_str(),
        Some("10.1.255.255")
    );
    let shown = ns.myinit("ifconfig v0");
    assert!(
        shown
            .stdout
            .contains("inet 10.1.2.3  netmask 255.255.0.0  broadcast 10.1.255.255\n"),
        "{shown:?}"
    );

    // Default /24, and the old IPv4 address is replaced, as ifconfig does.
    ns.myinit("ifconfig v0 10.5.5.5").assert_ok();
    let link = link_json(&ns, "v0");
    let v4: Vec<_> = addrs(&link)
        .into_iter()
        .filter(|(a, _)| a.contains('.'))
        .collect();
    assert_eq!(v4, vec![("10.5.5.5".to_string(), 24)], "{link}");

    // ADDR/LEN works too.
    ns.myinit("ifconfig v0 10.6.0.1/20").assert_ok();
    assert!(has_addr(&link_json(&ns, "v0"), "10.6.0.1", 20));
}

#[test]
fn ifconfig_adds_ipv6_with_default_and_explicit_prefix() {
    let ns = ns_with_veth("nci6");
    ns.myinit("ifconfig v0 2001:db8::1; ifconfig v0 2001:db8:1::1/112")
        .assert_ok();
    let link = link_json(&ns, "v0");
    assert!(has_addr(&link, "2001:db8::1", 64), "{link}");
    assert!(has_addr(&link, "2001:db8:1::1", 112), "{link}");
}

#[test]
fn ifconfig_up_down_promisc_hw_ether_and_mtu() {
    let ns = ns_with_veth("ncif");
    ns.myinit("ifconfig v0 up").assert_ok();
    assert!(flags(&link_json(&ns, "v0")).contains(&"UP".to_string()));

    ns.myinit("ifconfig v0 promisc").assert_ok();
    let link = link_json(&ns, "v0");
    assert!(flags(&link).contains(&"PROMISC".to_string()), "{link}");

    ns.myinit("ifconfig v0 -promisc").assert_ok();
    let link = link_json(&ns, "v0");
    assert!(!flags(&link).contains(&"PROMISC".to_string()), "{link}");

    ns.myinit("ifconfig v0 hw ether 02:00:00:AB:CD:01")
        .assert_ok();
    assert_eq!(
        link_json(&ns, "v0")["address"].as_str(),
        Some("02:00:00:ab:cd:01")
    );

    ns.myinit("ifconfig v0 mtu 1280").assert_ok();
    assert_eq!(link_json(&ns, "v0")["mtu"].as_u64(), Some(1280));

    ns.myinit("ifconfig v0 down").assert_ok();
    let link = link_json(&ns, "v0");
    assert!(!flags(&link).contains(&"UP".to_string()), "{link}");
    assert_eq!(link["operstate"].as_str(), Some("DOWN"));
}

#[test]
fn ifconfig_multi_word_line_on_a_tap() {
    let ns = Netns::new("ncmw");
    let run = ns.myinit(&format!(
        "tap add tp0; ifconfig tp0 192.168.1.1 netmask 255.255.255.0 up promisc mtu 1300 hw ether 02:00:00:00:00:0a; \
         echo @@; {IPROUTE2} -j addr show dev tp0; echo @@"
    ));
    run.assert_ok();
    let link = section(&run.stdout, 0)[0].clone();
    let f = flags(&link);
    assert!(
        f.contains(&"UP".into()) && f.contains(&"PROMISC".into()),
        "{link}"
    );
    assert_eq!(link["mtu"].as_u64(), Some(1300));
    assert_eq!(link["address"].as_str(), Some("02:00:00:00:00:0a"));
    assert!(has_addr(&link, "192.168.1.1", 24), "{link}");
    // The TAP went away with the myinit that made it.
    assert!(ns.exec("ip", &["link", "show", "tp0"]).status.code() != Some(0));
}

#[test]
fn ifconfig_shows_addresses_with_decimal_prefixlen() {
    let ns = ns_with_veth("ncis");
    ns.ip(&["link", "set", "v0", "address", "02:00:00:00:00:21"]);
    ns.ip(&["addr", "add", "10.7.0.1/16", "dev", "v0"]);
    ns.ip(&["addr", "add", "2001:db8::7/100", "dev", "v0"]);
    ns.ip(&["link", "set", "v0", "up"]);

    let one = ns.myinit("ifconfig v0");
    one.assert_ok();
    let out = &one.stdout;
    assert!(out.starts_with("v0: flags="), "{out}");
    assert!(out.contains("UP"), "{out}");
    assert!(
        out.contains("inet 10.7.0.1  netmask 255.255.0.0\n"),
        "{out}"
    );
    // 100 in decimal, not 0x64 or 64.
    assert!(
        out.contains("inet6 2001:db8::7  prefixlen 100  scopeid 0x0<global>"),
        "{out}"
    );
    assert!(out.contains("ether 02:00:00:00:00:21"), "{out}");
    assert!(
        out.contains("RX packets ") && out.contains("TX packets "),
        "{out}"
    );
    assert!(!out.contains("v1:"), "{out}");

    let all = ns.myinit("ifconfig");
    all.assert_ok();
    assert!(
        all.stdout.contains("lo: flags=") && all.stdout.contains("LOOPBACK"),
        "{all:?}"
    );
    assert!(all.stdout.contains("v0: flags=") && all.stdout.contains("v1: flags="));
    assert!(all.stdout.contains("prefixlen 100"));
}

#[test]
fn ifconfig_unknown_interface_is_one_line_error() {
    let ns = Netns::new("ncnx");
    for line in ["ifconfig nosuch0 10.0.0.1", "ifconfig nosuch0"] {
        let run = ns.myinit(line);
        assert_eq!(run.status, 1, "{run:?}");
        assert_eq!(error_line(&run), "ifconfig: nosuch0: no such interface");
    }
    let lo = link_json(&ns, "lo");
    assert!(!has_addr(&lo, "10.0.0.1", 24));
}

#[test]
fn ifconfig_bad_word_is_usage_and_changes_nothing() {
    let ns = ns_with_veth("ncbw");
    let run = ns.myinit("ifconfig v0 10.1.1.1 up mtu 1300 bogus");
    assert_eq!(run.status, 2, "{run:?}");
    assert!(
        run.stderr
            .ends_with("ifconfig: bogus: unknown word\nusage: ifconfig [-a]\n       ifconfig IF\n       ifconfig IF [IP[/LEN] [netmask MASK]] [ADDR6[/LEN]] [up|down] [promisc|-promisc] [hw ether MAC] [mtu N]...\n"),
        "{run:?}"
    );
    let link = link_json(&ns, "v0");
    assert!(addrs(&link).iter().all(|(a, _)| a != "10.1.1.1"), "{link}");
    assert!(!flags(&link).contains(&"UP".to_string()), "{link}");
    assert_eq!(link["mtu"].as_u64(), Some(1500));

    let run = ns.myinit("ifconfig v0 10.1.1.1 netmask 255.0.255.0");
    assert_eq!(run.status, 2, "{run:?}");
    assert!(addrs(&link_json(&ns, "v0")).is_empty());
}

#[test]
fn tap_add_show_del() {
    let ns = Netns::new("nctp");
    let run = ns.myinit(&format!(
        "tap add tq0; tap show; echo @@; {IPROUTE2} -j link show; echo @@; \
         tap del tq0; echo @@; {IPROUTE2} -j link show; echo @@; tap show"
    ));
    run.assert_ok();
    let before = section(&run.stdout, 0);
    let tap = before
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["ifname"] == "tq0")
        .unwrap_or_else(|| panic!("tq0 missing: {before}"));
    assert_eq!(tap["link_type"], "ether");
    let index = tap["ifindex"].as_u64().unwrap();
    // tap show: header, then "tq0 INDEX down …".
    let show: Vec<&str> = run.stdout.lines().take(2).collect();
    assert!(show[0].starts_with("NAME"), "{show:?}");
    let cols: Vec<&str> = show[1].split_whitespace().collect();
    assert_eq!(&cols[..3], &["tq0", &index.to_string(), "down"], "{show:?}");

    let after = section(&run.stdout, 1);
    assert!(
        after
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "tq0"),
        "tq0 still there after tap del: {after}"
    );
    // The last `tap show` lists nothing but its header.
    assert!(run.stdout.trim_end().ends_with("MAC"), "{}", run.stdout);
}

#[test]
fn tap_lives_while_its_myinit_runs() {
    let ns = Netns::new("nctl");
    // The external sleep keeps this myinit (and so the TAP's fd) alive.
    let child = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            common::myinit_bin(),
            "-c",
            "tap add tl0; /bin/sleep 3",
        ])
        .spawn()
        .expect("spawn myinit");
    struct Wait(std::process::Child);
    impl Drop for Wait {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Wait(child);
    let mut seen = false;
    for _ in 0..40 {
        if ns.exec("ip", &["link", "show", "tl0"]).status.success() {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(seen, "tl0 never appeared");
    assert!(child.0.wait().unwrap().success());
    assert!(!ns.exec("ip", &["link", "show", "tl0"]).status.success());
}

#[test]
fn tap_add_twice_or_over_an_interface_fails() {
    let ns = ns_with_veth("nct2");
    let run = ns.myinit("tap add tw0; tap add tw0");
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(error_line(&run), "tap: tw0: tap already exists");

    let run = ns.myinit("tap add v0");
    assert_eq!(run.status, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("v0: an interface of that name already exists"),
        "{run:?}"
    );
    // The veth is untouched.
    assert_eq!(ns.ip_json(&["link", "show", "v0"])[0]["link_type"], "ether");

    let run = ns.myinit("tap del nosuch0");
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(error_line(&run), "tap: nosuch0: no such tap");
}

/// `ip -j [-6] route` entries as (dst, gateway, dev).
fn routes(ns: &Netns, v6: bool) -> Vec<(String, Option<String>, Option<String>)> {
    let json = if v6 {
        ns.ip_json(&["-6", "route"])
    } else {
        ns.ip_json(&["route"])
    };
    json.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["dst"].as_str().unwrap().to_string(),
                r["gateway"].as_str().map(String::from),
                r["dev"].as_str().map(String::from),
            )
        })
        .collect()
}

fn route(dst: &str, gw: Option<&str>, dev: &str) -> (String, Option<String>, Option<String>) {
    (dst.into(), gw.map(String::from), Some(dev.into()))
}

#[test]
fn ip_route_add_show_del_ipv4() {
    let ns = ns_with_veth("ncr4");
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "v0"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["link", "set", "v1", "up"]);
    let run = ns.myinit(
        "ip route add 10.9.0.0/16 via 10.0.0.254; ip route add 10.8.0.0/16 dev v0; \
         ip route add default via 10.0.0.254; ip r a 10.7.0.0/16 via 10.0.0.253 dev v0 metric 7; ip route show",
    );
    run.assert_ok();
    let r = routes(&ns, false);
    assert!(
        r.contains(&route("10.9.0.0/16", Some("10.0.0.254"), "v0")),
        "{r:?}"
    );
    assert!(r.contains(&route("10.8.0.0/16", None, "v0")), "{r:?}");
    assert!(
        r.contains(&route("default", Some("10.0.0.254"), "v0")),
        "{r:?}"
    );
    assert!(
        r.contains(&route("10.7.0.0/16", Some("10.0.0.253"), "v0")),
        "{r:?}"
    );
    let json = ns.ip_json(&["route", "show", "10.8.0.0/16"]);
    assert_eq!(json[0]["scope"], "link");
    let shown = &run.stdout;
    assert!(shown.contains("default via 10.0.0.254 dev v0\n"), "{shown}");
    assert!(
        shown.contains("10.9.0.0/16 via 10.0.0.254 dev v0\n"),
        "{shown}"
    );
    assert!(shown.contains("10.8.0.0/16 dev v0 scope link\n"), "{shown}");
    assert!(
        shown.contains("10.7.0.0/16 via 10.0.0.253 dev v0 metric 7\n"),
        "{shown}"
    );
    assert!(
        shown.contains("10.0.0.0/24 dev v0 proto kernel scope link src 10.0.0.1\n"),
        "{shown}"
    );

    ns.myinit("ip route replace 10.9.0.0/16 via 10.0.0.253")
        .assert_ok();
    let r = routes(&ns, false);
    assert!(
        r.contains(&route("10.9.0.0/16", Some("10.0.0.253"), "v0")),
        "{r:?}"
    );
    assert!(
        !r.contains(&route("10.9.0.0/16", Some("10.0.0.254"), "v0")),
        "{r:?}"
    );

    ns.myinit("ip route del 10.9.0.0/16; ip route del default; ip route delete 10.8.0.0/16 dev v0")
        .assert_ok();
    let r = routes(&ns, false);
    assert!(
        !r.iter()
            .any(|(d, _, _)| d == "10.9.0.0/16" || d == "default" || d == "10.8.0.0/16"),
        "{r:?}"
    );
    assert!(
        r.contains(&route("10.7.0.0/16", Some("10.0.0.253"), "v0")),
        "{r:?}"
    );

    let run = ns.myinit("ip route del 10.9.0.0/16");
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(error_line(&run), "ip: route 10.9.0.0/16: no such route");
}

#[test]
fn ip_route_add_show_del_ipv6() {
    let ns = ns_with_veth("ncr6");
    ns.ip(&["addr", "add", "2001:db8::1/64", "dev", "v0", "nodad"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["link", "set", "v1", "up"]);
    let run = ns.myinit(
        "ip -6 route add 2001:db8:9::/48 via 2001:db8::fe; ip route add 2001:db8:8::/48 dev v0; \
         ip -6 route add default via 2001:db8::fe dev v0; ip -6 route show",
    );
    run.assert_ok();
    let r = routes(&ns, true);
    assert!(
        r.contains(&route("2001:db8:9::/48", Some("2001:db8::fe"), "v0")),
        "{r:?}"
    );
    assert!(r.contains(&route("2001:db8:8::/48", None, "v0")), "{r:?}");
    assert!(
        r.contains(&route("default", Some("2001:db8::fe"), "v0")),
        "{r:?}"
    );
    let shown = &run.stdout;
    assert!(
        shown.contains("2001:db8:9::/48 via 2001:db8::fe dev v0 metric 1024\n"),
        "{shown}"
    );
    assert!(
        shown.contains("default via 2001:db8::fe dev v0 metric 1024\n"),
        "{shown}"
    );
    assert!(
        shown.contains("2001:db8::/64 dev v0 proto kernel metric 256\n"),
        "{shown}"
    );
    // Plain `ip route` lists IPv4 only.
    let v4 = ns.myinit("ip route");
    assert!(!v4.stdout.contains("2001:db8"), "{v4:?}");

    ns.myinit("ip route del 2001:db8:9::/48; ip -6 route del default via 2001:db8::fe; ip r d 2001:db8:8::/48")
        .assert_ok();
    let r = routes(&ns, true);
    assert!(
        !r.iter().any(|(d, _, _)| d == "default"
            || d.starts_with("2001:db8:9")
            || d.starts_with("2001:db8:8")),
        "{r:?}"
    );
}

#[test]
fn ip_addr_add_show_del() {
    let ns = ns_with_veth("ncad");
    let run = ns.myinit(
        "ip addr add 10.3.0.1/24 dev v0; ip a add 2001:db8:3::1/64 dev v0; ip addr add 10.4.0.1 dev v0; ip addr show dev v0",
    );
    run.assert_ok();
    let link = link_json(&ns, "v0");
    assert!(has_addr(&link, "10.3.0.1", 24), "{link}");
    assert!(has_addr(&link, "2001:db8:3::1", 64), "{link}");
    assert!(has_addr(&link, "10.4.0.1", 32), "{link}");
    let out = &run.stdout;
    assert!(
        out.contains(": v0: <BROADCAST,MULTICAST> mtu 1500"),
        "{out}"
    );
    assert!(
        out.contains("    inet 10.3.0.1/24 brd 10.3.0.255 scope global v0\n"),
        "{out}"
    );
    assert!(
        out.contains("    inet6 2001:db8:3::1/64 scope global"),
        "{out}"
    );
    assert!(!out.contains("v1"), "{out}");
    let all = ns.myinit("ip -4 a");
    assert!(
        all.stdout.contains("inet 10.3.0.1/24") && !all.stdout.contains("inet6"),
        "{all:?}"
    );

    ns.myinit("ip addr del 10.3.0.1/24 dev v0; ip addr del 2001:db8:3::1/64 dev v0; ip addr del 10.4.0.1 dev v0")
        .assert_ok();
    let link = link_json(&ns, "v0");
    assert!(addrs(&link).is_empty(), "{link}");

    let run = ns.myinit("ip addr del 10.3.0.1/24 dev v0");
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(error_line(&run), "ip: 10.3.0.1/24: no such address on v0");
    let run = ns.myinit("ip addr add 10.3.0.1/24 dev nosuch0");
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(error_line(&run), "ip: nosuch0: no such interface");
}

#[test]
fn ip_link_set_and_show() {
    let ns = ns_with_veth("ncls");
    ns.myinit("ip link set v0 up").assert_ok();
    assert!(flags(&link_json(&ns, "v0")).contains(&"UP".to_string()));

    let run = ns.myinit(
        "ip link set dev v0 down mtu 1280 address 02:00:00:00:00:05 promisc on; ip link show dev v0",
    );
    run.assert_ok();
    let link = link_json(&ns, "v0");
    let f = flags(&link);
    assert!(
        !f.contains(&"UP".to_string()) && f.contains(&"PROMISC".to_string()),
        "{link}"
    );
    assert_eq!(link["mtu"].as_u64(), Some(1280));
    assert_eq!(link["address"].as_str(), Some("02:00:00:00:00:05"));
    let out = &run.stdout;
    assert!(out.contains(": v0@v1: ") || out.contains(": v0: "), "{out}");
    assert!(out.contains("PROMISC") && out.contains("mtu 1280"), "{out}");
    assert!(
        out.contains("    link/ether 02:00:00:00:00:05 brd ff:ff:ff:ff:ff:ff\n"),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "{out}");

    ns.myinit("ip l set v0 promisc off").assert_ok();
    assert!(!flags(&link_json(&ns, "v0")).contains(&"PROMISC".to_string()));

    let run = ns.myinit("ip link set v0 sideways");
    assert_eq!(run.status, 2, "{run:?}");
}

#[test]
fn ip_neigh_add_show_del_flush() {
    let ns = ns_with_veth("ncnb");
    ns.ip(&["link", "set", "v0", "up"]);
    let run = ns.myinit(
        "ip neigh add 10.0.0.7 lladdr 02:00:00:00:00:07 dev v0; \
         ip neigh add 10.0.0.8 lladdr 02:00:00:00:00:08 dev v0; \
         ip n add 2001:db8::7 lladdr 02:00:00:00:00:77 dev v0; ip neigh show dev v0",
    );
    run.assert_ok();
    let neigh = |ns: &Netns| -> Vec<(String, String, String)> {
        ns.ip_json(&["neigh", "show", "dev", "v0"])
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["dst"].as_str().unwrap().to_string(),
                    n["lladdr"].as_str().unwrap_or("").to_string(),
                    n["state"][0].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    };
    let entry = |ip: &str, mac: &str| (ip.to_string(), mac.to_string(), "PERMANENT".to_string());
    let n = neigh(&ns);
    assert!(n.contains(&entry("10.0.0.7", "02:00:00:00:00:07")), "{n:?}");
    assert!(n.contains(&entry("10.0.0.8", "02:00:00:00:00:08")), "{n:?}");
    assert!(
        n.contains(&entry("2001:db8::7", "02:00:00:00:00:77")),
        "{n:?}"
    );
    let out = &run.stdout;
    assert!(
        out.contains("10.0.0.7 dev v0 lladdr 02:00:00:00:00:07 PERMANENT\n"),
        "{out}"
    );
    assert!(
        out.contains("2001:db8::7 dev v0 lladdr 02:00:00:00:00:77 PERMANENT\n"),
        "{out}"
    );

    ns.myinit("ip neigh del 10.0.0.7 dev v0").assert_ok();
    let n = neigh(&ns);
    assert!(!n.iter().any(|(ip, _, _)| ip == "10.0.0.7"), "{n:?}");
    assert!(n.iter().any(|(ip, _, _)| ip == "10.0.0.8"), "{n:?}");
    let run = ns.myinit("ip neigh del 10.0.0.7 dev v0");
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(error_line(&run), "ip: 10.0.0.7: no such neighbour on v0");

    ns.myinit("ip neigh flush dev v0").assert_ok();
    let n = neigh(&ns);
    assert!(
        !n.iter()
            .any(|(ip, _, _)| ip == "10.0.0.8" || ip == "2001:db8::7"),
        "{n:?}"
    );
}

/// `onlink`: a gateway outside the link's prefixes (a tunnel's far end)
/// is refused without it and taken with it, shown as iproute2 shows it.
#[test]
fn ip_route_onlink_takes_a_gateway_off_the_link_s_prefixes() {
    let ns = ns_with_veth("ncro");
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "v0"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["link", "set", "v1", "up"]);
    let refused = ns.myinit("ip route add 10.7.0.0/16 via 10.99.0.1 dev v0");
    assert!(
        refused
            .stderr
            .contains("ip: route 10.7.0.0/16 via 10.99.0.1 dev v0: Network is unreachable"),
        "{refused:#?}"
    );
    let run = ns.myinit("ip route add 10.7.0.0/16 via 10.99.0.1 dev v0 onlink metric 5; ip route");
    run.assert_ok();
    assert!(
        run.stdout
            .contains("10.7.0.0/16 via 10.99.0.1 dev v0 metric 5 onlink\n"),
        "{run:#?}"
    );
    let shown = ns.ip(&["route", "show", "10.7.0.0/16"]);
    assert!(
        shown.contains("via 10.99.0.1 dev v0 metric 5 onlink"),
        "{shown}"
    );
}

/// The route attributes a test sets, as the original's users write them
/// (`ip -6 route add P via fe80::1 dev tap1 mtu 1280`), read back by
/// iproute2; and the kernel keeps to the MTU.
#[test]
fn ip_route_takes_mtu_advmss_src_and_metric() {
    let ns = ns_with_veth("ncrm");
    ns.ip(&["addr", "add", "2001:db8::1/64", "dev", "v0", "nodad"]);
    ns.ip(&["addr", "add", "10.0.0.1/24", "dev", "v0"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["link", "set", "v1", "up"]);
    let run = ns.myinit(
        "ip -6 route add 2001:db8:6::/64 via fe80::1 dev v0 mtu 1280; \
         ip route add 10.6.0.0/16 via 10.0.0.254 dev v0 mtu lock 1400 advmss 1300 src 10.0.0.1 metric 9; \
         ip -6 route show; ip route show",
    );
    run.assert_ok();
    let shown = &run.stdout;
    assert!(
        shown.contains("2001:db8:6::/64 via fe80::1 dev v0 metric 1024 mtu 1280\n"),
        "{shown}"
    );
    assert!(
        shown.contains(
            "10.6.0.0/16 via 10.0.0.254 dev v0 src 10.0.0.1 metric 9 mtu 1400 advmss 1300\n"
        ),
        "{shown}"
    );
    let v6 = ns.ip(&["-6", "route", "show", "2001:db8:6::/64"]);
    assert!(v6.contains("mtu 1280"), "{v6}");
    let v4 = ns.ip(&["route", "show", "10.6.0.0/16"]);
    assert!(
        v4.contains("mtu 1400") && v4.contains("advmss 1300") && v4.contains("src 10.0.0.1"),
        "{v4}"
    );
    // The kernel keeps to it: a 1400-byte ping through the route is too
    // big for it (the local error names the route's MTU).
    let out = ns.exec(
        "ping",
        &[
            "-6",
            "-c",
            "1",
            "-W",
            "1",
            "-s",
            "1400",
            "-M",
            "do",
            "2001:db8:6::5",
        ],
    );
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("message too long, mtu: 1280"), "{text}");
    for bad in ["mtu", "mtu 0", "mtu x", "advmss -1"] {
        let run = ns.myinit(&format!("ip route add 10.5.0.0/16 dev v0 {bad}"));
        assert_eq!(run.status, 2, "{bad}: {run:?}");
        let word = bad.split(' ').next().unwrap();
        assert!(
            run.stderr.lines().next().unwrap().contains(word),
            "{bad}: {run:?}"
        );
    }
    assert!(
        !ns.ip(&["route"]).contains("10.5.0.0"),
        "a refused line changes nothing"
    );
}
