//! The interactive shell in a real terminal (tmux): line editing, history,
//! Tab completion, and Ctrl-C stopping a running `ping` but not the shell.

mod common;

use std::time::{Duration, Instant};

use common::{run, run_ok, Netns};

/// A tmux session running `myinit shell` in a namespace; killed on drop.
struct Tmux {
    session: String,
    _ns: Netns,
}

impl Tmux {
    fn start() -> Self {
        let ns = Netns::new("tty");
        let session = common::unique("sh");
        let command = format!("ip netns exec {} {} shell", ns.name, common::myinit_bin());
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
                "40",
                &command,
            ],
        );
        let tmux = Tmux { session, _ns: ns };
        tmux.wait_for("myinit#");
        tmux
    }

    /// Presses keys one at a time, as a person does: rustyline can miss
    /// an escape sequence that arrives in the same read as the one before.
    fn keys(&self, keys: &[&str]) {
        for key in keys {
            run_ok("tmux", &["send-keys", "-t", &self.session, key]);
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Types text literally (no key-name interpretation).
    fn type_text(&self, text: &str) {
        run_ok("tmux", &["send-keys", "-t", &self.session, "-l", text]);
    }

    fn screen(&self) -> String {
        run_ok("tmux", &["capture-pane", "-p", "-t", &self.session])
    }

    /// Waits until the screen satisfies `check`, or panics showing the screen.
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
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for(&self, text: &str) -> String {
        self.wait_until(text, |s| s.contains(text))
    }

    /// Lines of the screen that are exactly `text` (command output lines).
    fn count_lines(&self, text: &str) -> usize {
        self.screen()
            .lines()
            .filter(|l| l.trim_end() == text)
            .count()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = run("tmux", &["kill-session", "-t", &self.session]);
    }
}

#[test]
fn line_editing_keys_work() {
    let t = Tmux::start();
    // Left arrow and insert: "echo wrld" -> "echo world".
    t.type_text("echo wrld");
    // Typed in one burst (as a paste): the whole text shows at once.
    t.wait_for("myinit# echo wrld");
    t.keys(&["Left", "Left", "Left"]);
    t.type_text("o");
    t.keys(&["Enter"]);
    t.wait_until("world", |s| s.lines().any(|l| l.trim_end() == "world"));
    // Ctrl-U drops the line typed so far.
    t.type_text("garbage");
    t.keys(&["C-u"]);
    t.type_text("echo after-ctrl-u");
    t.keys(&["Enter"]);
    t.wait_until("after-ctrl-u", |s| {
        s.lines().any(|l| l.trim_end() == "after-ctrl-u")
    });
    // Ctrl-A / Ctrl-E / Home / End / Ctrl-K / Ctrl-W / Backspace / Delete.
    t.type_text("cho middle");
    t.keys(&["C-a"]);
    t.type_text("e");
    t.keys(&["C-e"]);
    t.type_text(" tail extra");
    t.keys(&["C-w"]); // removes "extra"
    t.keys(&["BSpace"]); // removes the space before it
    t.keys(&["Home", "Right", "Right", "Right", "Right", "Right"]);
    t.type_text("X");
    t.keys(&[
        "BSpace", "End", "C-a", "C-e", "Left", "Left", "Left", "Left",
    ]);
    t.keys(&["C-k"]); // "echo middle " left
    t.type_text("ok");
    t.keys(&["Home", "DC"]); // Delete removes "e"
    t.type_text("e");
    t.keys(&["Enter"]);
    t.wait_until("middle ok", |s| {
        s.lines().any(|l| l.trim_end() == "middle ok")
    });
}

#[test]
fn history_recalls_previous_lines() {
    let t = Tmux::start();
    t.type_text("echo first-entry");
    t.keys(&["Enter"]);
    t.wait_until("first output", |_| t.count_lines("first-entry") == 1);
    t.type_text("echo second-entry");
    t.keys(&["Enter"]);
    t.wait_until("second output", |s| {
        s.lines().any(|l| l.trim_end() == "second-entry")
    });
    t.keys(&["Up", "Up", "Enter"]);
    t.wait_until("first-entry twice", |_| t.count_lines("first-entry") == 2);
    t.keys(&["Up", "Down", "Up", "Enter"]);
    t.wait_until("first-entry three times", |_| {
        t.count_lines("first-entry") == 3
    });
}

#[test]
fn tab_completes_commands_and_paths() {
    let t = Tmux::start();
    let dir = common::TempDir::new("tab");
    std::fs::write(dir.join("unique-file-name.txt"), "completed-content\n").unwrap();
    t.type_text("ech");
    t.keys(&["Tab"]);
    t.type_text("tabbed");
    t.keys(&["Enter"]);
    t.wait_until("tabbed", |s| s.lines().any(|l| l.trim_end() == "tabbed"));
    t.type_text(&format!("cat {}/uniq", dir.display()));
    t.keys(&["Tab", "Enter"]);
    t.wait_for("completed-content");
    drop(dir);
}

#[test]
fn ctrl_c_stops_ping_but_not_the_shell() {
    let t = Tmux::start();
    t.type_text("ping -c 100 -i 0.2 127.0.0.1");
    t.keys(&["Enter"]);
    t.wait_for("icmp_seq=3");
    t.keys(&["C-c"]);
    let screen = t.wait_for("packets transmitted");
    assert!(!screen.contains("100 packets transmitted"), "{screen}");
    // Ctrl-C at the prompt only drops the line.
    t.type_text("echo dropped");
    t.keys(&["C-c"]);
    t.type_text("echo still-alive");
    t.keys(&["Enter"]);
    let screen = t.wait_until("still-alive", |s| {
        s.lines().any(|l| l.trim_end() == "still-alive")
    });
    assert!(!screen.lines().any(|l| l.trim_end() == "dropped"));
}

#[test]
fn lines_typed_ahead_or_pasted_together_all_run() {
    let t = Tmux::start();
    // Two lines in one burst, as a paste delivers them.
    t.type_text("echo pasted-one\recho pasted-two\r");
    t.wait_until("both pasted lines ran", |_| {
        t.count_lines("pasted-one") == 1 && t.count_lines("pasted-two") == 1
    });
    // Typed while a command still runs: kept for the prompt that follows.
    t.type_text("sleep 1\r");
    std::thread::sleep(Duration::from_millis(300));
    t.type_text("echo ahead-one\recho ahead-two\r");
    t.wait_until("both typed-ahead lines ran", |_| {
        t.count_lines("ahead-one") == 1 && t.count_lines("ahead-two") == 1
    });
}
