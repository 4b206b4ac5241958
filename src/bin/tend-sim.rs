//! `tend-sim`: the Telethon service emulator as a standalone binary (all logic is in `tend::sim`).

fn main() -> std::process::ExitCode {
    tend::sim::main_with_args(std::env::args())
}
