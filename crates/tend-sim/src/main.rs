//! `tend-sim`: the Telethon service emulator as a standalone binary (all logic is in the `tend_sim`
//! library, which `tend sim` runs too).

fn main() -> std::process::ExitCode {
    tend_sim::main_with_args(std::env::args())
}
