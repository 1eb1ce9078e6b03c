//! What clap writes from the CLI's own definition: shell completions (`clap_complete`) and the
//! man page (`clap_mangen`), printed to stdout for packagers and users to install.

use clap::CommandFactory as _;

use super::Cli;

pub(super) fn completions(shell: clap_complete::Shell) -> anyhow::Result<i32> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "ppsync", &mut out);
    write_out(&out)
}

/// `ppsync(1)` in roff: the options, and a SUBCOMMANDS section naming each with its summary
/// (`ppsync <command> --help` has the rest).
pub(super) fn man() -> anyhow::Result<i32> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut out)?;
    write_out(&out)
}

fn write_out(bytes: &[u8]) -> anyhow::Result<i32> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(bytes)?;
    stdout.flush()?;
    Ok(0)
}
