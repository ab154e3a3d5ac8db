//! Compiles the assets when the binary is built, never at run time: every file in `assets/`
//! is processed (CSS loses its comments and indentation), fingerprinted with a hash of its
//! processed content (`app.css` → `app.3f9a0c1b2d4e5f60.css`) and written to `OUT_DIR`, and a
//! table of them is generated for `src/web/assets.rs`, which embeds them with `include_bytes!`.

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let dir = Path::new("assets");
    println!("cargo::rerun-if-changed=assets");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let out = Path::new(&out);
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read `{}`: {e}", dir.display()))
        .map(|e| e.expect("read the assets directory").path())
        .filter(|p| p.is_file())
        .collect();
    entries.sort();
    let mut table = String::from("&[\n");
    for path in entries {
        let name = path
            .file_name()
            .unwrap()
            .to_str()
            .expect("UTF-8 asset names");
        let (stem, ext) = name
            .rsplit_once('.')
            .unwrap_or_else(|| panic!("asset `{name}` has no extension"));
        let content_type = match ext {
            "css" => "text/css; charset=utf-8",
            "js" => "text/javascript; charset=utf-8",
            "svg" => "image/svg+xml",
            "png" => "image/png",
            "ico" => "image/x-icon",
            other => panic!("asset `{name}`: no content type known for `.{other}`"),
        };
        let raw = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read `{name}`: {e}"));
        let body = if ext == "css" {
            minify_css(&String::from_utf8(raw).expect("CSS is UTF-8")).into_bytes()
        } else {
            raw
        };
        let file = format!("{stem}.{:016x}.{ext}", fnv1a(&body));
        std::fs::write(out.join(&file), &body).expect("write the processed asset");
        let _ = writeln!(
            table,
            "    Asset {{ name: {name:?}, file: {file:?}, content_type: {content_type:?}, \
             body: include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{file}\")) }},"
        );
    }
    table.push(']');
    std::fs::write(out.join("assets.rs"), table).expect("write the asset table");
}

/// 64-bit FNV-1a: a stable content hash for cache busting (not a security property).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Drops `/* comments */`, indentation and blank lines. Enough for hand-written CSS without
/// comment markers inside strings.
fn minify_css(css: &str) -> String {
    let mut without_comments = String::with_capacity(css.len());
    let mut rest = css;
    while let Some(start) = rest.find("/*") {
        without_comments.push_str(&rest[..start]);
        rest = rest[start + 2..]
            .find("*/")
            .map_or("", |end| &rest[start + 2 + end + 2..]);
    }
    without_comments.push_str(rest);
    without_comments
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
