//! File names as a line of text may show them. A name is the app's: a newline in it would
//! start a line of its own (a fake line of shoal's), and an escape sequence would steer the
//! operator's terminal. `shoal start --isolate`'s lines and `shoal verify`'s report show
//! every name the app chose through [`shown`].

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `path` as a line may show it: control characters, the invisible marks that reorder or
/// hide text, `\` and bytes that are not UTF-8 are written as Rust escapes (`\n`, `\u{1b}`,
/// `\u{202e}`, `\\`, `\xff`).
pub(crate) fn shown(path: &Path) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for chunk in path.as_os_str().as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            let hidden = matches!(
                c,
                '\u{200b}'..='\u{200f}'
                    | '\u{2028}'..='\u{202e}'
                    | '\u{2060}'..='\u{2069}'
                    | '\u{061c}'
                    | '\u{feff}'
            );
            if c == '\\' || c.is_control() || hidden {
                out.extend(c.escape_debug());
            } else {
                out.push(c);
            }
        }
        for byte in chunk.invalid() {
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;

    use super::*;

    #[test]
    fn a_file_name_cannot_start_a_line_or_steer_the_terminal() {
        let name = OsStr::from_bytes(b"up/a\nb\x1b[2J\xff\\ \xe2\x80\xaeok \xc3\xa9t\xc3\xa9.txt");
        assert_eq!(
            shown(Path::new(name)),
            r"up/a\nb\u{1b}[2J\xff\\ \u{202e}ok été.txt"
        );
    }
}
