//! Kernel addresses to `function+0xoff/0xsize`, from `/proc/kallsyms`
//! (read once per process, then cached): 6.1's ftrace text and every eBPF
//! event carry raw addresses.

use std::sync::{Arc, OnceLock};

/// Text symbols sorted by address.
#[derive(Debug, Default)]
pub struct Kallsyms {
    /// (address, name); the size of a symbol is the gap to the next one.
    symbols: Vec<(u64, String)>,
}

impl Kallsyms {
    /// The running kernel's symbols, loaded at first use. Empty (every
    /// address printed in hex) when kallsyms is unreadable or hidden
    /// (kptr_restrict shows zeros to unprivileged readers).
    pub fn get() -> Arc<Kallsyms> {
        static CACHE: OnceLock<Arc<Kallsyms>> = OnceLock::new();
        CACHE
            .get_or_init(|| {
                let text = std::fs::read_to_string("/proc/kallsyms").unwrap_or_default();
                Arc::new(Kallsyms::parse(&text))
            })
            .clone()
    }

    pub fn parse(text: &str) -> Self {
        let mut symbols: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let addr = u64::from_str_radix(words.next()?, 16).ok()?;
                let kind = words.next()?;
                let name = words.next()?;
                (addr != 0 && matches!(kind, "t" | "T" | "w" | "W"))
                    .then(|| (addr, name.to_string()))
            })
            .collect();
        symbols.sort_unstable_by_key(|s| s.0);
        Kallsyms { symbols }
    }

    /// (function, offset, size) of the symbol containing `addr`.
    pub fn lookup(&self, addr: u64) -> Option<(&str, u64, u64)> {
        let i = self
            .symbols
            .partition_point(|s| s.0 <= addr)
            .checked_sub(1)?;
        let (start, name) = &self.symbols[i];
        // The last symbol has no known end: do not claim far addresses.
        let end = self.symbols.get(i + 1).map(|s| s.0)?;
        Some((name, addr - start, end - start))
    }

    /// `function+0xoff/0xsize`, or the address in hex when unknown.
    pub fn symbolize(&self, addr: u64) -> String {
        match self.lookup(addr) {
            Some((name, off, size)) => format!("{name}+{off:#x}/{size:#x}"),
            None => format!("{addr:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symbolizes_like_the_kernel_does() {
        let k = Kallsyms::parse(
            "ffffffff81000100 T ip_rcv_core\nffffffff81000440 t ip_rcv_finish\n\
             ffffffff81000000 D some_data\nffffffff81000500 T last\n0000000000000000 T hidden\n",
        );
        assert_eq!(k.symbolize(0xffffffff810002d0), "ip_rcv_core+0x1d0/0x340");
        assert_eq!(k.symbolize(0xffffffff81000440), "ip_rcv_finish+0x0/0xc0");
        assert_eq!(k.symbolize(0xffffffff81000010), "0xffffffff81000010");
        assert_eq!(k.symbolize(0xffffffff81000600), "0xffffffff81000600");
    }
}
