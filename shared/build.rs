//! Compresses the large text files the functions bundle (zlib, into `OUT_DIR`): the common
//! passwords (`login`, `reset`, `users`) and the deployed OpenAPI document (`login`). Each is
//! inflated on first use, never at cold start; compressed, they take about 390 KiB less in
//! `login` and 100 KiB less in `reset` and `users`
//! (docs/performance.md, "Binary size"). The console's files (`console/`, served by `login`
//! and the local server under `/console`) are packed the same way.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::var("OUT_DIR")?;
    for (source, name) in [
        ("data/common-passwords.txt", "common-passwords.txt.z"),
        ("../docs/openapi.json", "openapi.json.z"),
    ] {
        println!("cargo::rerun-if-changed={source}");
        let data = std::fs::read(source)?;
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&data, 10);
        std::fs::write(Path::new(&out).join(name), packed)?;
    }
    std::fs::create_dir_all(Path::new(&out).join("console"))?;
    for name in crate_console_files() {
        let source = format!("console/{name}");
        println!("cargo::rerun-if-changed={source}");
        let data = std::fs::read(&source)?;
        let packed = miniz_oxide::deflate::compress_to_vec_zlib(&data, 10);
        std::fs::write(
            Path::new(&out).join("console").join(format!("{name}.z")),
            packed,
        )?;
    }
    Ok(())
}

/// Every file of the console; `src/console.rs` serves the same list.
fn crate_console_files() -> [&'static str; 6] {
    [
        "index.html",
        "app.css",
        "app.js",
        "core.js",
        "user.js",
        "admin.js",
    ]
}
