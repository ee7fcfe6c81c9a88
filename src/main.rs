//! `orderflow`: the OrderFlow Connect binary. Everything lives in the library; this only starts it.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    // A missing .env is normal (production sets real environment variables).
    let _ = dotenvy::dotenv();
    orderflow::cli::run()
}
