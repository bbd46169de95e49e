//! `vfio-harness`: the command-line front end of the library.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
