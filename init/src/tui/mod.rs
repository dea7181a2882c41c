//! Terminal code shared by the commands that use the console directly:
//! `raw` (one key at a time, for the boot countdowns and `droptrace watch`),
//! `screen` (the full-screen frame and keys of `edit` and `oside`) and
//! `line_edit` (the one-line editor of `oside`'s field values).

pub mod line_edit;
pub mod raw;
pub mod screen;

pub use raw::RawConsole;
