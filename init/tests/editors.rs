//! `edit` and `oside` in a real terminal (tmux): keys sent as a person
//! presses them, the screen read back, the saved files checked byte for
//! byte, with serde_json and with tshark; the terminal's mode compared
//! before and after (`stty -g`), on normal exits and on errors.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{run, run_ok, TempDir};
use myinit_testkit::{pcap_timed, Frame};
use serde_json::Value;

/// A tmux session running one `myinit -c 'COMMAND'`, then printing its exit
/// status and saving the terminal mode; killed on drop.
struct Tmux {
    session: String,
    stty_before: PathBuf,
    stty_after: PathBuf,
}

impl Tmux {
    fn start(dir: &TempDir, command: &str) -> Tmux {
        Self::start_with(dir, command, "")
    }

    /// `start`, with a shell command run first (`stty ...`).
    fn start_with(dir: &TempDir, command: &str, setup: &str) -> Tmux {
        let session = common::unique("tm");
        let stty_before = dir.path("stty.before");
        let stty_after = dir.path("stty.after");
        let script = format!(
            "{setup} stty -g > {}; {} -c '{command}'; echo EXIT=$?; stty -g > {}; sleep 3600",
            stty_before.display(),
            common::myinit_bin(),
            stty_after.display()
        );
        run_ok(
            "tmux",
            &[
                "new-session",
                "-d",
                "-s",
                &session,
                "-x",
                "100",
                "-y",
                "30",
                "sh",
                "-c",
                &script,
            ],
        );
        Tmux {
            session,
            stty_before,
            stty_after,
        }
    }

    /// Presses keys one at a time (tmux key names).
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            run_ok("tmux", &["send-keys", "-t", &self.session, key]);
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Types text literally.
    fn type_text(&self, text: &str) {
        run_ok("tmux", &["send-keys", "-t", &self.session, "-l", text]);
        std::thread::sleep(Duration::from_millis(30));
    }

    fn screen(&self) -> String {
        run_ok("tmux", &["capture-pane", "-p", "-t", &self.session])
    }

    /// The screen with its attributes as escape sequences (reverse video
    /// is `ESC [ 7 m`).
    /// The screen with wrapped lines joined (long error lines).
    fn joined_screen(&self) -> String {
        run_ok("tmux", &["capture-pane", "-p", "-J", "-t", &self.session])
    }

    fn screen_with_attributes(&self) -> String {
        run_ok("tmux", &["capture-pane", "-p", "-e", "-t", &self.session])
    }

    fn wait_until(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&self, text: &str) -> String {
        self.wait_until(text, |s| s.contains(text))
    }

    fn resize(&self, width: u16, height: u16) {
        run_ok(
            "tmux",
            &[
                "resize-window",
                "-t",
                &self.session,
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
            ],
        );
    }

    /// Waits for the command to end; returns its exit status and asserts
    /// the terminal's mode is what it was before and the full screen is
    /// gone (the shell's screen is back).
    fn wait_exit(&self) -> i32 {
        let screen = self.wait_for("EXIT=");
        let status: i32 = screen
            .lines()
            .find_map(|l| l.trim().strip_prefix("EXIT="))
            .and_then(|s| s.trim().parse().ok())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.stty_after.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(100));
        let before = std::fs::read_to_string(&self.stty_before).unwrap();
        let after = std::fs::read_to_string(&self.stty_after).unwrap();
        assert_eq!(before, after, "terminal mode not restored");
        assert!(
            !screen.contains("^S save") && !screen.contains(" oside "),
            "the editor's screen is still up:\n{screen}"
        );
        status
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = run("tmux", &["kill-session", "-t", &self.session]);
    }
}

// ---------------------------------------------------------------- edit

#[test]
fn edit_moves_inserts_deletes_and_saves_exactly_the_typed_bytes() {
    let dir = TempDir::new("ed");
    let file = dir.path("script.run");
    std::fs::write(&file, "hello\nworld\n").unwrap();
    let t = Tmux::start(&dir, &format!("edit {}", file.display()));
    let screen = t.wait_for("line 1:1 of 3");
    assert!(screen.lines().next().unwrap().starts_with("hello"));
    // Line 2: "world" -> "World!!"; line 1: "hello" -> "hell".
    t.keys(&["Down", "End"]);
    t.type_text("!!");
    t.keys(&["Home", "Delete"]);
    t.type_text("W");
    t.keys(&["Up", "End", "BSpace"]);
    let screen = t.wait_for("[modified]");
    assert!(screen.contains("line 1:5 of 3"), "{screen}");
    assert!(screen.contains("World!!"), "{screen}");
    t.keys(&["C-s"]);
    t.wait_for("saved 13 bytes");
    assert_eq!(std::fs::read(&file).unwrap(), b"hell\nWorld!!\n");
    // Saved: no longer modified, and Ctrl+Q quits at once.
    let screen = t.screen();
    assert!(!screen.contains("[modified]"), "{screen}");
    // Enter splits a line, Backspace at a line's start joins it again.
    t.keys(&["Down", "Home", "Right", "Enter", "BSpace", "Enter"]);
    t.wait_for("line 3:1 of 4");
    t.keys(&["C-x"]);
    assert_eq!(t.wait_exit(), 0);
    assert_eq!(std::fs::read(&file).unwrap(), b"hell\nW\norld!!\n");
}

#[test]
fn edit_asks_before_quitting_with_unsaved_changes() {
    let dir = TempDir::new("ed");
    let file = dir.path("notes.txt");
    std::fs::write(&file, "keep me\n").unwrap();
    let t = Tmux::start(&dir, &format!("edit {}", file.display()));
    t.wait_for("notes.txt");
    t.type_text("x");
    t.wait_for("[modified]");
    t.keys(&["C-q"]);
    t.wait_for("unsaved changes: save them before quitting?");
    // Any other key goes back to the text.
    t.keys(&["Escape"]);
    t.wait_for("quit cancelled");
    t.keys(&["C-q"]);
    t.wait_for("unsaved changes");
    t.keys(&["n"]);
    assert_eq!(t.wait_exit(), 0);
    assert_eq!(std::fs::read(&file).unwrap(), b"keep me\n");
}

#[test]
fn edit_creates_a_new_file_on_save_with_tabs_and_no_added_newline() {
    let dir = TempDir::new("ed");
    let file = dir.path("new.run");
    let t = Tmux::start(&dir, &format!("edit {}", file.display()));
    t.wait_for("line 1:1 of 1");
    assert!(!file.exists(), "created before saving");
    t.type_text("echo one");
    t.keys(&["Enter", "Tab"]);
    t.type_text("echo two");
    t.wait_for("line 2:10 of 2");
    t.keys(&["C-q"]);
    t.wait_for("unsaved changes");
    t.keys(&["y"]);
    assert_eq!(t.wait_exit(), 0);
    assert_eq!(std::fs::read(&file).unwrap(), b"echo one\n\techo two");
}

#[test]
fn edit_scrolls_long_lines_horizontally() {
    let dir = TempDir::new("ed");
    let file = dir.path("long.txt");
    let long: String = (0..150)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    std::fs::write(&file, format!("{long}END\nshort\n")).unwrap();
    let t = Tmux::start(&dir, &format!("edit {}", file.display()));
    t.wait_for("line 1:1");
    let first = t.screen().lines().next().unwrap().to_string();
    assert_eq!(first, long[..100], "the line is cut at the screen's edge");
    t.keys(&["End"]);
    let screen = t.wait_for("line 1:154 of 3");
    let first = screen.lines().next().unwrap();
    assert!(first.trim_end().ends_with("END"), "{screen}");
    assert!(!first.starts_with("abc"), "not scrolled:\n{screen}");
    t.keys(&["Home"]);
    let screen = t.wait_for("line 1:1 of 3");
    assert!(screen.starts_with("abcdef"), "{screen}");
    t.keys(&["C-q"]);
    assert_eq!(t.wait_exit(), 0);
}

#[test]
fn edit_redraws_for_the_new_size_after_a_resize() {
    let dir = TempDir::new("ed");
    let file = dir.path("resize.txt");
    std::fs::write(&file, "one\ntwo\n").unwrap();
    let t = Tmux::start(&dir, &format!("edit {}", file.display()));
    t.wait_for("line 1:1 of 3");
    t.resize(60, 12);
    // The status line moves to the new second-to-last row.
    let screen = t.wait_until("the status line on row 11", |s| {
        s.lines()
            .nth(10)
            .is_some_and(|l| l.contains("line 1:1 of 3"))
    });
    assert!(screen.lines().all(|l| l.chars().count() <= 60), "{screen}");
    t.type_text("1");
    t.keys(&["C-x"]);
    assert_eq!(t.wait_exit(), 0);
    assert_eq!(std::fs::read(&file).unwrap(), b"1one\ntwo\n");
}

#[test]
fn edit_asks_the_terminal_its_size_when_the_tty_says_0x0() {
    let dir = TempDir::new("ed");
    let file = dir.path("serial.txt");
    std::fs::write(&file, "one\n").unwrap();
    // As on a serial console: the tty knows no size. tmux answers the
    // cursor-position report with its 100x30; 80x24 would put the status
    // line on row 23.
    let t = Tmux::start_with(
        &dir,
        &format!("edit {}", file.display()),
        "stty rows 0 cols 0;",
    );
    let screen = t.wait_until("the status line on row 29", |s| {
        s.lines()
            .nth(28)
            .is_some_and(|l| l.contains("line 1:1 of 2"))
    });
    let status = screen.lines().nth(28).unwrap();
    assert_eq!(status.len(), 99, "not 100 columns wide: {status:?}");
    t.keys(&["C-q"]);
    assert_eq!(t.wait_exit(), 0);
}

#[test]
fn edit_refuses_a_binary_file_and_a_directory_with_one_error_line() {
    let dir = TempDir::new("ed");
    let file = dir.path("binary");
    std::fs::write(&file, b"ok\n\xff\xfe\x00garbage").unwrap();
    let t = Tmux::start(&dir, &format!("edit {}", file.display()));
    assert_eq!(t.wait_exit(), 1);
    let screen = t.screen();
    let line = format!(
        "edit: {}: not UTF-8 text (byte 3 is not valid): not opened",
        file.display()
    );
    assert!(screen.contains(&line), "{screen}");
    assert_eq!(std::fs::read(&file).unwrap(), b"ok\n\xff\xfe\x00garbage");
    drop(t);

    let t = Tmux::start(&dir, &format!("edit {}", dir.dir().display()));
    assert_eq!(t.wait_exit(), 1);
    let screen = t.screen();
    assert!(
        screen.contains(&format!("edit: {}: is a directory", dir.dir().display())),
        "{screen}"
    );
}

#[test]
fn edit_reports_a_failed_save_and_keeps_the_text() {
    let dir = TempDir::new("ed");
    let file = dir.path("missing-dir/file.txt");
    let t = Tmux::start(&dir, &format!("edit {}", file.display()));
    t.wait_for("line 1:1 of 1");
    t.type_text("precious");
    t.keys(&["C-s"]);
    t.wait_for("cannot save");
    let screen = t.wait_for("No such file or directory (nothing written)");
    assert!(
        screen.contains("precious") && screen.contains("[modified]"),
        "{screen}"
    );
    t.keys(&["C-q", "n"]);
    assert_eq!(t.wait_exit(), 0);
}

#[test]
fn edit_stays_responsive_on_a_10000_line_file() {
    let dir = TempDir::new("ed");
    let file = dir.path("big.txt");
    let text: String = (1..=10_000).map(|i| format!("line number {i}\n")).collect();
    std::fs::write(&file, &text).unwrap();
    let t = Tmux::start(&dir, &format!("edit {}", file.display()));
    t.wait_for("line 1:1 of 10001");
    // 30 rows: 28 lines a page; 357 pages reach the last line.
    for _ in 0..40 {
        t.keys(&["PageDown"]);
    }
    t.wait_for("line 1121:1 of 10001");
    // Each key is answered within a bound, also far into the file.
    for (key, expect) in [
        ("Down", "line 1122:1"),
        ("End", "line 1122:17"),
        ("Up", "line 1121:17"),
    ] {
        let start = Instant::now();
        t.keys(&[key]);
        t.wait_for(expect);
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "{key} took {:?}",
            start.elapsed()
        );
    }
    let start = Instant::now();
    t.type_text("!");
    t.wait_for("line number 1121!");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    t.keys(&["C-x"]);
    assert_eq!(t.wait_exit(), 0);
    let saved = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        saved,
        text.replace("line number 1121\n", "line number 1121!\n")
    );
}

// ---------------------------------------------------------------- oside

/// Writes a classic pcap (µs, Ethernet) of three TCP SYNs with a 2-byte
/// payload, 10.0.0.1:100N -> 10.0.0.2:80, valid checksums, at
/// 1,700,000,000 + N s and N µs.
fn write_tcp_pcap(path: &Path) {
    let frames: Vec<(Duration, Vec<u8>)> = (0..3u16)
        .map(|i| {
            let frame = Frame::ether([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1])
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2])
                .tcp(1000 + i, 80, 1, 0x02)
                .payload(b"hi")
                .bytes();
            let at = Duration::new(1_700_000_000 + u64::from(i), u32::from(i) * 1000);
            (at, frame)
        })
        .collect();
    let timed: Vec<(Duration, &[u8])> = frames.iter().map(|(t, f)| (*t, &f[..])).collect();
    std::fs::write(path, pcap_timed(1, false, false, &timed)).unwrap();
}

/// tshark's view of a capture: one line per packet of the given fields,
/// with checksum validation on.
fn tshark(path: &Path, fields: &[&str]) -> Vec<String> {
    let mut args = vec![
        "-r",
        path.to_str().unwrap(),
        "-o",
        "ip.check_checksum:TRUE",
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-T",
        "fields",
        "-E",
        "separator=,",
    ];
    for f in fields {
        args.extend(["-e", f]);
    }
    run_ok("tshark", &args)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Selects packet 2's IPv4 `dst` and TCP `dport` and types new values
/// (packet 1, layer 0 is where oside starts).
fn change_packet_2(t: &Tmux) {
    t.keys(&["n", "Down"]);
    // Ip: version ihl tos len id flags ttl proto chksum src dst
    for _ in 0..10 {
        t.keys(&["Right"]);
    }
    t.keys(&["e", "C-u"]);
    t.type_text("10.0.0.9");
    t.keys(&["Enter", "Down", "Right", "e", "C-u"]);
    t.type_text("8080");
    t.keys(&["Enter"]);
    t.wait_for("10.0.0.9  1001 > 8080");
    t.keys(&["f"]);
    t.wait_for("checksums and lengths recomputed");
}

#[test]
fn oside_changes_an_address_and_a_port_fixes_checksums_and_saves_a_valid_pcap() {
    let dir = TempDir::new("ed");
    let file = dir.path("syn.pcap");
    write_tcp_pcap(&file);
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    let screen = t.wait_for("packet 1/3");
    assert!(screen.contains("(pcap)"), "{screen}");
    assert!(
        screen.contains("ether/Ip/Tcp/raw  10.0.0.1 > 10.0.0.2  1000 > 80"),
        "{screen}"
    );
    change_packet_2(&t);
    t.keys(&["s"]);
    t.wait_for("saved 3 packets");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    let magic = std::fs::read(&file).unwrap()[..4].to_vec();
    assert_eq!(
        magic,
        0xa1b2c3d4u32.to_le_bytes(),
        "saved in another format"
    );
    let fields = [
        "ip.dst",
        "tcp.srcport",
        "tcp.dstport",
        "ip.checksum.status",
        "tcp.checksum.status",
        "frame.time_epoch",
    ];
    // Checksum status 1 is "Good".
    assert_eq!(
        tshark(&file, &fields),
        [
            "10.0.0.2,1000,80,1,1,1700000000.000000000",
            "10.0.0.9,1001,8080,1,1,1700000001.000001000",
            "10.0.0.2,1002,80,1,1,1700000002.000002000",
        ]
    );
}

#[test]
fn oside_saves_a_pcapng_file_back_as_pcapng() {
    let dir = TempDir::new("ed");
    let pcap = dir.path("syn.pcap");
    let file = dir.path("syn.pcapng");
    write_tcp_pcap(&pcap);
    run_ok(
        "editcap",
        &[
            "-F",
            "pcapng",
            pcap.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    );
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    t.wait_for("(pcapng)  packet 1/3");
    change_packet_2(&t);
    t.keys(&["s"]);
    t.wait_for("saved 3 packets");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    let magic = std::fs::read(&file).unwrap()[..4].to_vec();
    assert_eq!(magic, 0x0a0d0d0au32.to_le_bytes());
    assert_eq!(
        tshark(
            &file,
            &[
                "ip.dst",
                "tcp.dstport",
                "ip.checksum.status",
                "tcp.checksum.status"
            ]
        )[1],
        "10.0.0.9,8080,1,1"
    );
}

/// The one's complement sum of 16-bit words, for checking checksums.
fn ones_complement(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[test]
fn oside_edits_a_jsonl_file_and_writes_the_fixed_fields() {
    let dir = TempDir::new("ed");
    let pcap = dir.path("syn.pcap");
    write_tcp_pcap(&pcap);
    // The JSONL file as the original's editor wrote it: no direction, no
    // newline after the last line, sorted keys.
    let file = dir.path("syn.jsonl");
    let mut lines = Vec::new();
    let bytes = std::fs::read(&pcap).unwrap();
    let mut at = 24;
    while at < bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let sec = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as u64;
        let usec = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as u64;
        let hex: String = bytes[at + 16..at + 16 + len]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        lines.push(format!(
            r#"{{"data":"{hex}","timestamp_us":{}}}"#,
            sec * 1_000_000 + usec
        ));
        at += 16 + len;
    }
    std::fs::write(&file, lines.join("\n")).unwrap();
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    t.wait_for("(JSONL)  packet 1/3");
    change_packet_2(&t);
    t.keys(&["s"]);
    t.wait_for("saved 3 packets");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    let saved = std::fs::read_to_string(&file).unwrap();
    let records: Vec<Value> = saved
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 3);
    let layers = &records[1]["layers"];
    let names: Vec<&str> = layers
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["layertype"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ether", "Ip", "Tcp", "raw"]);
    let (ip, tcp) = (&layers[1], &layers[2]);
    assert_eq!(ip["dst"], "10.0.0.9");
    assert_eq!(tcp["dport"], 8080);
    assert_eq!(records[1]["timestamp_us"], 1_700_000_001_000_001u64);
    assert_eq!(records[0]["layers"][1]["dst"], "10.0.0.2");
    // The IPv4 header checksum over the saved fields (its sum with the
    // checksum in place is zero), and TCP's over the pseudo header.
    let n = |v: &Value| v.as_u64().unwrap();
    let header = [
        0x45,
        0,
        (n(&ip["len"]) >> 8) as u8,
        n(&ip["len"]) as u8,
        0,
        1,
        0x40,
        0,
        64,
        6,
        (n(&ip["chksum"]) >> 8) as u8,
        n(&ip["chksum"]) as u8,
        10,
        0,
        0,
        1,
        10,
        0,
        0,
        9,
    ];
    assert_eq!(n(&ip["len"]), 42);
    assert_eq!(
        ones_complement(&header),
        0,
        "IPv4 checksum {}",
        ip["chksum"]
    );
    let mut segment = vec![10, 0, 0, 1, 10, 0, 0, 9, 0, 6, 0, 22];
    for (field, width) in [("sport", 2), ("dport", 2), ("seq", 4), ("ack", 4)] {
        segment.extend_from_slice(&n(&tcp[field]).to_be_bytes()[8 - width..]);
    }
    segment.extend_from_slice(&[(n(&tcp["dataofs"]) << 4) as u8, n(&tcp["flags"]) as u8]);
    segment.extend_from_slice(&(n(&tcp["window"]) as u16).to_be_bytes());
    segment.extend_from_slice(&(n(&tcp["chksum"]) as u16).to_be_bytes());
    segment.extend_from_slice(&[0, 0, b'h', b'i']);
    assert_eq!(
        ones_complement(&segment),
        0,
        "TCP checksum {}",
        tcp["chksum"]
    );
}

#[test]
fn oside_adds_and_removes_layers() {
    let dir = TempDir::new("ed");
    let file = dir.path("syn.pcap");
    write_tcp_pcap(&file);
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    t.wait_for("packet 1/3");
    // Packet 1: remove raw and Tcp, add UDP after Ip.
    t.keys(&["Down", "Down", "Down"]);
    t.wait_for("> raw:");
    t.keys(&["r"]);
    t.wait_for("raw removed");
    t.keys(&["r"]);
    t.wait_for("Tcp removed");
    t.keys(&["a"]);
    t.wait_for(
        "add layer: 1 Ethernet  2 IPv4  3 IPv6  4 TCP  5 UDP  6 ICMP  7 ICMPv6  8 ARP  9 Raw",
    );
    t.keys(&["5"]);
    t.wait_for("UDP added as layer 2");
    t.keys(&["f"]);
    t.wait_for("ether/Ip/Udp  10.0.0.1 > 10.0.0.2  1024 > 1024");
    // The timestamp is not a layer to remove.
    t.keys(&["Up", "Up", "Up", "r"]);
    t.wait_for("the timestamp is not a layer that can be removed");
    // Packet 3: an ICMP echo request in place of TCP.
    t.keys(&["n", "n", "Down", "Down", "Down", "r", "r", "a", "6", "f"]);
    t.wait_for("ether/Ip/Icmp/echo  10.0.0.1 > 10.0.0.2");
    t.keys(&["s"]);
    t.wait_for("saved 3 packets");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_eq!(
        tshark(
            &file,
            &[
                "frame.protocols",
                "ip.checksum.status",
                "udp.checksum.status",
                "icmp.checksum.status"
            ]
        ),
        [
            "eth:ethertype:ip:udp,1,1,",
            "eth:ethertype:ip:tcp,1,,",
            "eth:ethertype:ip:icmp,1,,1",
        ]
    );
}

#[test]
fn oside_builds_a_packet_in_a_new_file_layer_by_layer() {
    let dir = TempDir::new("ed");
    let file = dir.path("new.jsonl");
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    t.wait_for("no packets: a adds a layer to a new packet");
    t.keys(&["a", "1"]);
    t.wait_for("Ethernet added as layer 0");
    t.keys(&["a", "3", "a", "7", "f"]);
    t.wait_for("ether/Ipv6/Icmpv6/icmpv6EchoRequest  fd00::1 > fd00::2");
    t.keys(&["s"]);
    t.wait_for("saved 1 packets");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let layers = saved["layers"].as_array().unwrap();
    assert_eq!(layers[0]["etype"], 0x86dd);
    assert_eq!(layers[1]["next_header"], 58);
    assert_eq!(layers[1]["payload_length"], 8);
    assert_eq!(layers[2]["type_"], 128);
    assert!(layers[2]["checksum"].as_u64().unwrap() > 0);
}

#[test]
fn oside_deletes_and_copies_packets() {
    let dir = TempDir::new("ed");
    let file = dir.path("syn.pcap");
    write_tcp_pcap(&file);
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    t.wait_for("packet 1/3");
    t.keys(&["d"]);
    t.wait_for("packet 1 deleted");
    t.wait_for("packet 1/2");
    t.keys(&["c"]);
    t.wait_for("copied as packet 2");
    t.wait_for("packet 2/3");
    t.keys(&["s"]);
    t.wait_for("saved 3 packets");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_eq!(
        tshark(&file, &["tcp.srcport", "tcp.checksum.status"]),
        ["1001,1", "1001,1", "1002,1"]
    );
}

#[test]
fn oside_warns_before_quitting_with_unsaved_changes() {
    let dir = TempDir::new("ed");
    let file = dir.path("syn.pcap");
    write_tcp_pcap(&file);
    let before = std::fs::read(&file).unwrap();
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    t.wait_for("packet 1/3");
    t.keys(&["d", "q"]);
    t.wait_for("unsaved changes: q again quits without saving");
    t.keys(&["x"]);
    t.wait_for("quit cancelled");
    t.wait_for("packet 1/2  [modified]");
    t.keys(&["q", "q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn oside_refuses_a_value_that_does_not_fit_its_field() {
    let dir = TempDir::new("ed");
    let file = dir.path("syn.pcap");
    write_tcp_pcap(&file);
    let before = std::fs::read(&file).unwrap();
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    t.wait_for("packet 1/3");
    // Tcp dport = 70000.
    t.keys(&["Down", "Down", "Right", "e", "C-u"]);
    t.type_text("70000");
    t.keys(&["Enter"]);
    let screen = t.wait_for("not changed: 70000 does not fit dport (a u16)");
    // Still editing: Esc gives up, nothing changed.
    assert!(screen.contains("dport: 70000"), "{screen}");
    t.keys(&["Escape"]);
    t.wait_for("not changed");
    // Ip ttl = 300 and a bad address, the same way.
    t.keys(&[
        "Up", "Right", "Right", "Right", "Right", "Right", "Right", "e", "C-u",
    ]);
    t.type_text("300");
    t.keys(&["Enter"]);
    t.wait_for("300 does not fit ttl (a u8)");
    t.keys(&["Escape", "q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_eq!(std::fs::read(&file).unwrap(), before);
}

#[test]
fn oside_highlights_the_selected_fields_bytes_in_the_hex_view() {
    let dir = TempDir::new("ed");
    let file = dir.path("syn.pcap");
    write_tcp_pcap(&file);
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    t.wait_for("packet 1/3");
    // Ip dst: bytes 30-33 of the frame, 0a 00 00 02, on hex rows 0x10/0x20.
    t.keys(&["Down"]);
    for _ in 0..10 {
        t.keys(&["Right"]);
    }
    t.wait_for("dst=10.0.0.2");
    let screen = t.screen_with_attributes();
    let row = |offset: &str| {
        screen
            .lines()
            .find(|l| l.contains(offset))
            .unwrap_or_else(|| panic!("no hex row {offset}:\n{screen}"))
            .to_string()
    };
    // Reverse video on exactly the field's bytes: "0a 00" ending row 0x10,
    // "00 02" starting row 0x20.
    let reversed = |line: &str| -> Vec<String> {
        line.split("\x1b[7m")
            .skip(1)
            .map(|s| s.split('\x1b').next().unwrap().to_string())
            .collect()
    };
    let r10 = reversed(&row("0010  "));
    let r20 = reversed(&row("0020  "));
    // Then the same bytes in the ASCII column.
    assert_eq!(r10, ["0a", "00", ".."]);
    assert_eq!(r20, ["00", "02", ".."]);
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
}

#[test]
fn oside_redraws_for_the_new_size_after_a_resize() {
    let dir = TempDir::new("ed");
    let file = dir.path("syn.pcap");
    write_tcp_pcap(&file);
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    t.wait_for("packet 1/3");
    t.resize(72, 16);
    let screen = t.wait_until("a 16-row screen", |s| {
        s.starts_with(" oside ")
            && s.lines()
                .nth(15)
                .is_some_and(|l| l.starts_with("arrows move"))
    });
    assert!(screen.lines().all(|l| l.chars().count() <= 72), "{screen}");
    assert!(screen.starts_with(" oside "), "{screen}");
    t.keys(&["d", "s"]);
    t.wait_for("saved 2 packets");
    t.resize(100, 30);
    t.wait_until("a 30-row screen", |s| {
        s.lines()
            .nth(29)
            .is_some_and(|l| l.starts_with("saved 2 packets"))
    });
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_eq!(tshark(&file, &["tcp.srcport"]), ["1001", "1002"]);
}

#[test]
fn oside_refuses_a_malformed_file_with_one_error_line() {
    let dir = TempDir::new("ed");
    let file = dir.path("bad.jsonl");
    std::fs::write(
        &file,
        "{\"timestamp_us\":1,\"data\":\"00\"}\nthis is not json\n",
    )
    .unwrap();
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    assert_eq!(t.wait_exit(), 1);
    let screen = t.joined_screen();
    let errors: Vec<&str> = screen.lines().filter(|l| l.contains("oside:")).collect();
    assert_eq!(
        errors,
        [format!(
            "-c:1: oside: {}: not a JSONL packet file: line 2: not JSON: expected ident at line 1 column 2",
            file.display()
        )],
        "{screen}"
    );
    drop(t);

    // A pcap cut in the middle of a record.
    let pcap = dir.path("cut.pcap");
    write_tcp_pcap(&pcap);
    let bytes = std::fs::read(&pcap).unwrap();
    std::fs::write(&pcap, &bytes[..bytes.len() - 10]).unwrap();
    let t = Tmux::start(&dir, &format!("oside {}", pcap.display()));
    assert_eq!(t.wait_exit(), 1);
    let screen = t.joined_screen();
    let errors: Vec<&str> = screen.lines().filter(|l| l.contains("oside:")).collect();
    assert_eq!(errors.len(), 1, "{screen}");
    assert!(errors[0].contains("record 3"), "{screen}");
}

#[test]
fn oside_takes_ip_flags_in_their_json_form_and_edits_the_timestamp_layer() {
    let dir = TempDir::new("ed");
    let file = dir.path("syn.pcap");
    write_tcp_pcap(&file);
    let t = Tmux::start(&dir, &format!("oside {}", file.display()));
    t.wait_for("packet 1/3");
    // Layer -1 is the timestamp.
    t.keys(&["Up", "e", "C-u"]);
    t.type_text("1800000000123456000");
    t.keys(&["Enter"]);
    t.wait_for("1 1800000000.123456 ether/Ip/Tcp/raw");
    // Ip flags: version ihl tos len id flags.
    t.keys(&["Down", "Down"]);
    for _ in 0..5 {
        t.keys(&["Right"]);
    }
    t.keys(&["e", "C-u"]);
    t.type_text(
        r#"{"reserved":false,"dont_fragment":false,"more_fragments":true,"fragment_offset":0}"#,
    );
    t.keys(&["Enter"]);
    t.wait_for(r#""more_fragments":true"#);
    t.keys(&["f", "s"]);
    t.wait_for("saved 3 packets");
    t.keys(&["q"]);
    assert_eq!(t.wait_exit(), 0);
    assert_eq!(
        tshark(
            &file,
            &["frame.time_epoch", "ip.flags", "ip.checksum.status"]
        )[0],
        "1800000000.123456000,0x01,1"
    );
}
