//! fakehost: answer ARP, NDP, ping and router solicitations for addresses
//! on the far side of an interface (see src/fakehost/).

use std::io::Write;

use clap::{CommandFactory, Parser, Subcommand};

use super::{parse_args, CommandSpec};
use crate::fakehost::{self, Backend};
use crate::shell::Ctx;

pub const COMMANDS: &[CommandSpec] = &[CommandSpec {
    name: "fakehost",
    usage: "",
    summary: "answer ARP, NDP, ping and router solicitations for fake hosts (TC eBPF)",
    help: "The kernel's own requests leaving IF for IP are answered as if IP were on the\n\
           far side: ARP requests, Neighbor Solicitations (a duplicate address probe gets\n\
           an unsolicited NA to ff02::1; router sets the R flag, as the original's did),\n\
           with icmp echo requests. A router with ra (or a prefix to announce) also\n\
           answers Router Solicitations, from its link-local address (the MAC's when IP\n\
           is global): the kernel then takes a default route through it. Several routers\n\
           on one IF each answer with their own RA (up to 4 advertise).\n\
           The default MAC is 02:00:+IPv4, or 02:06:+hash of the IPv6.\n\
           The ebpf backend answers in the kernel (TC egress, redirected to IF's ingress);\n\
           the packet backend works on TAPs from `tap add` and on veths whose peer is here.\n\
           Example: fakehost add veth0 10.0.0.2 icmp; ping 10.0.0.2",
    run: fakehost,
    cli: Some(Cli::command),
}];

#[derive(Parser, Debug)]
#[command(
    name = "fakehost",
    disable_help_subcommand = true,
    override_usage = "fakehost add IF IP [mac MAC] [icmp] [router [ra] [prefix P/LEN]] [--backend auto|ebpf|packet]\n\
                      fakehost del IF IP\n\
                      fakehost show"
)]
struct Cli {
    #[command(subcommand)]
    command: Sub,
}

#[derive(Subcommand, Debug)]
enum Sub {
    /// answer for IP on IF
    Add {
        /// the interface the kernel reaches the fake host through
        #[arg(value_name = "IF")]
        iface: String,
        /// the fake host's IPv4 or IPv6 address
        #[arg(value_name = "IP")]
        ip: String,
        /// mac MAC (default: derived from IP), icmp (answer echo requests),
        /// router (IPv6: the R flag in NAs), ra (a router that answers Router
        /// Solicitations), prefix P/LEN (announced in RAs; implies ra)
        #[arg(value_name = "OPTION", allow_hyphen_values = false)]
        options: Vec<String>,
        /// auto (default) tries eBPF first and says why it falls back
        #[arg(long, value_enum, default_value = "auto")]
        backend: Backend,
    },
    /// stop answering for IP; the last host on IF detaches at once
    Del {
        /// the interface
        #[arg(value_name = "IF")]
        iface: String,
        /// the fake host's address
        #[arg(value_name = "IP")]
        ip: String,
    },
    /// each fake host with its MAC, backend, answers per kind and options
    Show,
}

fn fakehost(ctx: &mut Ctx<'_>, args: &[String]) -> anyhow::Result<i32> {
    let cli: Cli = parse_args("fakehost", args)?;
    let state = ctx.state();
    let lines = match cli.command {
        Sub::Add {
            iface,
            ip,
            options,
            backend,
        } => {
            let host = fakehost::parse_host(&ip, &options)?;
            fakehost::add(&state, &iface, host, backend)?
        }
        Sub::Del { iface, ip } => fakehost::del(&state, &iface, &ip)?,
        Sub::Show => {
            write!(ctx.out, "{}", fakehost::show(&state))?;
            Vec::new()
        }
    };
    for line in lines {
        writeln!(ctx.out, "{line}")?;
    }
    Ok(0)
}
