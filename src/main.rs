//! The `tollgate` binary: parse the command line, run the command, exit code (0, 1 when
//! part of the work failed, 2 on an error). The commands live in [`tollgate::cli`].

use std::process::ExitCode;

use tollgate::cli::{self, Cli};

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    cli::init_logs(cli.log_format);
    match cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tollgate: {e:#}");
            ExitCode::from(2)
        }
    }
}
