//! Commands of the language itself: echo, variables, scripts, help, exit,
//! and the power commands.

use std::io::Write;
use std::sync::atomic::Ordering;

use super::{usage, CommandSpec};
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[
    CommandSpec {
        name: "echo",
        usage: "echo [-n] [WORD...]",
        summary: "print words, separated by spaces",
        help: "  -n   no newline at the end\n\nThe whole line is written with one write(2), so\n`echo add nat46dev > /proc/net/nat46/control` works.",
        run: echo,
        cli: None,
    },
    CommandSpec {
        name: "env",
        usage: "env",
        summary: "list the shell's variables as NAME=value, sorted",
        help: "Variables are set with NAME=value and expanded as $NAME or ${NAME}.\nAn undefined variable expands to nothing, as in sh. $? is the last status.",
        run: env,
        cli: None,
    },
    CommandSpec {
        name: "set",
        usage: "set -e|+e",
        summary: "stop a script at its first failing command (-e), or not (+e)",
        help: "The option lasts until the end of the script that set it.",
        run: set,
        cli: None,
    },
    CommandSpec {
        name: "run",
        usage: "run SCRIPT",
        summary: "run a script file with the same variables",
        help: "",
        run,
        cli: None,
    },
    CommandSpec {
        name: "help",
        usage: "help [COMMAND]",
        summary: "list the commands, or show one command's help",
        help: "",
        run: help,
        cli: None,
    },
    CommandSpec {
        name: "sleep",
        usage: "sleep SECONDS",
        summary: "wait (fractions allowed: sleep 0.5); Ctrl-C stops it",
        help: "",
        run: sleep,
        cli: None,
    },
    CommandSpec {
        name: "exit",
        usage: "exit [STATUS]",
        summary: "end the `run` script it is in, or leave the shell (not as PID 1: use poweroff)",
        help: "",
        run: exit,
        cli: None,
    },
    CommandSpec {
        name: "cd",
        usage: "cd [DIR]",
        summary: "change the working directory (default /)",
        help: "",
        run: cd,
        cli: None,
    },
    CommandSpec {
        name: "pwd",
        usage: "pwd",
        summary: "print the working directory",
        help: "",
        run: pwd,
        cli: None,
    },
    CommandSpec {
        name: "poweroff",
        usage: "poweroff [STATUS]",
        summary: "stop all jobs, sync and power off (not as PID 1: exit with STATUS)",
        help: "STATUS (default 0) becomes the exit status of `cargo xtask vm`\nwhen the VM runs with the isa-debug-exit device.",
        run: poweroff,
        cli: None,
    },
    CommandSpec {
        name: "reboot",
        usage: "reboot",
        summary: "stop all jobs, sync and reboot (not as PID 1: exit)",
        help: "",
        run: reboot,
        cli: None,
    },
    CommandSpec {
        name: "log",
        usage: "log [on|off]",
        summary: "show or set whether eBPF programs' log lines reach the console",
        help: "Off by default. Programs loaded while it is on log at debug level;\ntheir lines are printed with an \"ebpf:\" prefix.",
        run: log,
        cli: None,
    },
    CommandSpec {
        name: "jobs",
        usage: "jobs",
        summary: "list running background jobs",
        help: "",
        run: jobs,
        cli: None,
    },
];

fn echo(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let (newline, words) = match args.first().map(String::as_str) {
        Some("-n") => (false, &args[1..]),
        _ => (true, args),
    };
    let mut line = words.join(" ");
    if newline {
        line.push('\n');
    }
    ctx.out.write_all(line.as_bytes())?;
    Ok(0)
}

fn env(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    if !args.is_empty() {
        return Err(usage("takes no arguments"));
    }
    let mut text = String::new();
    for (name, value) in ctx.shell.vars() {
        text.push_str(&format!("{name}={value}\n"));
    }
    ctx.out.write_all(text.as_bytes())?;
    Ok(0)
}

fn set(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    match args {
        [flag] if flag == "-e" => ctx.shell.errexit = true,
        [flag] if flag == "+e" => ctx.shell.errexit = false,
        _ => return Err(usage("expected -e or +e")),
    }
    Ok(0)
}

fn run(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let [script] = args else {
        return Err(usage("expected one SCRIPT"));
    };
    ctx.shell.run_nested(script, ctx.out)
}

fn help(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    match args {
        [] => {
            let mut text = String::from("Commands (help COMMAND for details):\n");
            for spec in super::all() {
                text.push_str(&format!("  {:<10} {}\n", spec.name, spec.summary));
                for form in spec.usage_forms() {
                    text.push_str(&format!("  {:<10}   {form}\n", ""));
                }
            }
            text.push_str(
                "\nAny other word that names an executable file runs it.\n\
                 Syntax: 'quotes', \"quotes\", \\escapes, # comments, ; between commands,\n\
                 NAME=value, $NAME, ${NAME}, $?, < FILE, > FILE, >> FILE.\n\
                 Not supported (an error; quote it to pass it literally):\n\
                 | && || & 2> >&2 << $(...) `...`.\n",
            );
            ctx.out.write_all(text.as_bytes())?;
            Ok(0)
        }
        [name] => match super::find(name) {
            Some(spec) => {
                ctx.out.write_all(spec.help_text().as_bytes())?;
                Ok(0)
            }
            None => anyhow::bail!("no such command: {name}"),
        },
        _ => Err(usage("expected at most one COMMAND")),
    }
}

fn sleep(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let [secs] = args else {
        return Err(usage("expected SECONDS"));
    };
    let duration = super::parse_seconds(secs)?;
    // Created inside the runtime: tokio's timer needs its context.
    ctx.block_on(async move { tokio::time::sleep(duration).await })?;
    Ok(0)
}

fn parse_status(args: &[String]) -> anyhow::Result<i32> {
    match args {
        [] => Ok(0),
        [s] => s
            .parse::<u8>()
            .map(i32::from)
            .map_err(|_| usage(format!("status must be 0-255: {s}"))),
        _ => Err(usage("expected at most one STATUS")),
    }
}

fn exit(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let status = parse_status(args)?;
    // As in `sh script`, `exit` ends only the `run` script it is in, which
    // is safe even as PID 1.
    if ctx.shell.in_run_script() {
        ctx.shell.script_exit = Some(status);
        return Ok(status);
    }
    if ctx.shell.state.is_pid1 {
        anyhow::bail!("PID 1 cannot exit (the kernel would panic): use poweroff or reboot");
    }
    ctx.shell.exit_request = Some(status);
    Ok(status)
}

fn cd(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let dir = match args {
        [] => "/",
        [d] => d.as_str(),
        _ => return Err(usage("expected at most one DIR")),
    };
    std::env::set_current_dir(dir)
        .map_err(|e| anyhow::anyhow!("{dir}: {}", crate::util::io_error(&e)))?;
    let _ = ctx;
    Ok(0)
}

fn pwd(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    if !args.is_empty() {
        return Err(usage("takes no arguments"));
    }
    writeln!(ctx.out, "{}", std::env::current_dir()?.display())?;
    Ok(0)
}

/// Stops every background job, printing each one's report.
pub fn stop_all_jobs(ctx: &mut Ctx<'_>) {
    let jobs = &ctx.shell.state.jobs;
    jobs.stop_all_reporting(ctx.out);
}

fn poweroff(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let mut status = parse_status(args)?;
    // The named tests end here: a failed one makes a plain poweroff 1.
    if ctx.shell.finish_tests(ctx.out) == Some(false) && args.is_empty() {
        status = 1;
    }
    if ctx.shell.state.is_pid1 {
        // First, so that the supervisor finishes the power off if the
        // engine dies while the jobs stop.
        crate::power::request(Some(status));
    }
    stop_all_jobs(ctx);
    nix::unistd::sync();
    if ctx.shell.state.is_pid1 {
        crate::power::off(status);
    }
    ctx.shell.exit_request = Some(status);
    Ok(status)
}

fn reboot(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    if !args.is_empty() {
        return Err(usage("takes no arguments"));
    }
    if ctx.shell.state.is_pid1 {
        crate::power::request(None);
    }
    stop_all_jobs(ctx);
    nix::unistd::sync();
    if ctx.shell.state.is_pid1 {
        crate::power::reboot();
    }
    ctx.shell.exit_request = Some(0);
    Ok(0)
}

fn log(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let flag = &crate::ebpf::EBPF_LOG;
    match args {
        [] => {}
        [on] if on == "on" => flag.store(true, Ordering::Relaxed),
        [off] if off == "off" => flag.store(false, Ordering::Relaxed),
        _ => return Err(usage("expected on or off")),
    }
    let state = if flag.load(Ordering::Relaxed) {
        "on"
    } else {
        "off"
    };
    writeln!(ctx.out, "eBPF log: {state}")?;
    Ok(0)
}

fn jobs(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    if !args.is_empty() {
        return Err(usage("takes no arguments"));
    }
    let jobs = ctx.shell.state.jobs.list();
    if jobs.is_empty() {
        writeln!(ctx.out, "no background jobs")?;
    }
    for job in jobs {
        let finished = if job.finished { " (finished)" } else { "" };
        writeln!(ctx.out, "{}{finished}", job.description)?;
    }
    Ok(0)
}
