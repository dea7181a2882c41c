//! Named tests in a script: `test NAME` starts one (and ends the one
//! before), `test done` ends the run. Results go out as KTAP, the format
//! the kernel's selftests and NIPA read:
//!
//! ```text
//! KTAP version 1
//! # test 1: echo-reply
//! ok 1 - echo-reply
//! # test 2: hop-limit
//! not ok 2 - hop-limit # expect: check 1: expected 1 packet, got 0
//! ok 3 - quote # SKIP not selected by MYINIT_TEST_FILTER
//! 1..3
//! # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0
//! ```
//!
//! The `# test N: NAME` line is printed when a test starts, so that a
//! kernel panic on the console can be pinned on the test that ran. While
//! a test runs the kernel log is watched ([`super::health`]): an Oops, a
//! WARNING or a KASAN report fails it.

use std::io::Write;
use std::time::Instant;

use super::health::{self, HealthWatch};

/// The variable (or kernel command-line word) that selects tests by name:
/// comma-separated names or globs (`*`, `?`).
pub const FILTER_VAR: &str = "MYINIT_TEST_FILTER";
/// Set to 1 to run a kmemleak scan after each test.
pub const KMEMLEAK_VAR: &str = "MYINIT_KMEMLEAK";

/// How a test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Result {
    Pass,
    Fail(String),
    Skip(String),
}

struct Current {
    number: usize,
    name: String,
    failure: Option<String>,
    skip: Option<String>,
    /// `set -e` and a step failed: the rest of the test is skipped.
    abandoned: bool,
    health: Option<HealthWatch>,
    started: Instant,
}

/// The tests of one run.
#[derive(Default)]
pub struct TestRun {
    header_printed: bool,
    current: Option<Current>,
    results: Vec<(String, Result)>,
    health_unavailable_said: bool,
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` one char).
pub fn glob(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matching with one backtrack point, linear in practice.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

/// Whether the selection (`None`: everything) picks `name`.
pub fn selected(selection: Option<&str>, name: &str) -> bool {
    match selection.map(str::trim) {
        None | Some("") => true,
        Some(list) => list
            .split([',', ' '])
            .filter(|p| !p.is_empty())
            .any(|p| glob(p, name)),
    }
}

impl TestRun {
    /// Whether a test is running.
    pub fn in_test(&self) -> bool {
        self.current.is_some()
    }

    /// Whether lines are being skipped: the test is not selected, or it
    /// failed under `set -e`.
    pub fn skipping(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|c| c.skip.is_some() || c.abandoned)
    }

    /// Records a failed step of the running test; the first reason stays.
    /// `abandon`: skip the rest of the test (`set -e`).
    pub fn fail(&mut self, reason: &str, abandon: bool) {
        if let Some(current) = self.current.as_mut() {
            if current.failure.is_none() {
                current.failure = Some(one_line(reason));
            }
            current.abandoned |= abandon;
        }
    }

    /// Starts test `name`, ending the running one.
    pub fn begin(
        &mut self,
        name: &str,
        selection: Option<&str>,
        out: &mut dyn Write,
    ) -> std::io::Result<()> {
        self.end(out)?;
        if !self.header_printed {
            writeln!(out, "KTAP version 1")?;
            self.header_printed = true;
        }
        let number = self.results.len() + 1;
        let skip = (!selected(selection, name)).then(|| format!("not selected by {FILTER_VAR}"));
        let mut health = None;
        if skip.is_none() {
            writeln!(out, "# test {number}: {name}")?;
            match HealthWatch::start() {
                Ok(watch) => health = Some(watch),
                Err(e) if !self.health_unavailable_said => {
                    writeln!(out, "# kernel log not watched: {e}")?;
                    self.health_unavailable_said = true;
                }
                Err(_) => {}
            }
        }
        self.current = Some(Current {
            number,
            name: name.to_string(),
            failure: None,
            skip,
            abandoned: false,
            health,
            started: Instant::now(),
        });
        Ok(())
    }

    /// Looks at the kernel log now: a problem fails the running test.
    pub fn check_health(&mut self) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if current.failure.is_some() {
            // Still read, so the record stays bounded; the first reason wins.
            if let Some(watch) = current.health.as_mut() {
                watch.poll();
            }
            return;
        }
        if let Some(problem) = current.health.as_mut().and_then(HealthWatch::poll) {
            current.failure = Some(one_line(&problem.to_string()));
        }
    }

    /// Ends the running test and prints its result line.
    pub fn end(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        self.check_health();
        let kmemleak = std::env::var(KMEMLEAK_VAR).is_ok_and(|v| v == "1");
        let Some(mut current) = self.current.take() else {
            return Ok(());
        };
        if kmemleak && current.skip.is_none() && health::kmemleak_available() {
            match health::kmemleak_scan() {
                Ok(Some(leak)) if current.failure.is_none() => {
                    current.failure = Some(one_line(&format!("kmemleak: {leak}")));
                }
                Ok(_) => {}
                Err(e) => writeln!(out, "# kmemleak: {e}")?,
            }
        }
        let (line, result) = match (current.skip, current.failure) {
            (Some(why), _) => (
                format!("ok {} - {} # SKIP {why}", current.number, current.name),
                Result::Skip(why),
            ),
            (None, Some(why)) => (
                format!("not ok {} - {} # {why}", current.number, current.name),
                Result::Fail(why),
            ),
            (None, None) => (
                format!("ok {} - {}", current.number, current.name),
                Result::Pass,
            ),
        };
        if !matches!(result, Result::Skip(_)) {
            writeln!(
                out,
                "# test {}: {} took {} ms",
                current.number,
                current.name,
                current.started.elapsed().as_millis()
            )?;
        }
        writeln!(out, "{line}")?;
        self.results.push((current.name, result));
        Ok(())
    }

    /// Ends the run: the plan and the totals. None when no test ran;
    /// else whether every test passed or was skipped.
    pub fn finish(&mut self, out: &mut dyn Write) -> std::io::Result<Option<bool>> {
        self.end(out)?;
        if self.results.is_empty() {
            return Ok(None);
        }
        let count = |f: fn(&Result) -> bool| self.results.iter().filter(|(_, r)| f(r)).count();
        let pass = count(|r| *r == Result::Pass);
        let fail = count(|r| matches!(r, Result::Fail(_)));
        let skip = count(|r| matches!(r, Result::Skip(_)));
        writeln!(out, "1..{}", self.results.len())?;
        writeln!(
            out,
            "# Totals: pass:{pass} fail:{fail} xfail:0 xpass:0 skip:{skip} error:0"
        )?;
        *self = TestRun {
            health_unavailable_said: self.health_unavailable_said,
            ..TestRun::default()
        };
        Ok(Some(fail == 0))
    }
}

/// A reason on one line (KTAP's result line ends at the newline).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_select_tests_by_name() {
        assert!(glob("icmp-*", "icmp-quote"));
        assert!(glob("*quote*", "icmp-quote-echo"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "abbc"));
        assert!(!glob("icmp-*", "udp"));
        assert!(selected(None, "x"));
        assert!(selected(Some("udp,icmp-*"), "icmp-1"));
        assert!(!selected(Some("udp icmp-*"), "tcp"));
    }

    #[test]
    fn a_run_prints_ktap_with_a_plan_and_totals() {
        let mut run = TestRun::default();
        let mut out = Vec::new();
        run.begin("first", None, &mut out).unwrap();
        run.begin("second", None, &mut out).unwrap();
        run.fail("expect: check 1: expected 1 packet,\n got 0", false);
        run.fail("a later reason", false);
        run.begin("third", Some("first,second"), &mut out).unwrap();
        assert!(run.skipping());
        assert_eq!(run.finish(&mut out).unwrap(), Some(false));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with("# test") && !l.starts_with("# kernel log"))
            .collect();
        assert_eq!(
            lines,
            [
                "KTAP version 1",
                "ok 1 - first",
                "not ok 2 - second # expect: check 1: expected 1 packet, got 0",
                "ok 3 - third # SKIP not selected by MYINIT_TEST_FILTER",
                "1..3",
                "# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0",
            ]
        );
        assert!(text.contains("# test 2: second\n"));
        // A new run starts afresh.
        let mut out = Vec::new();
        assert_eq!(run.finish(&mut out).unwrap(), None);
        assert!(out.is_empty());
    }
}
