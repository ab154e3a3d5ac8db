//! The streaming report: size, SHA-256, BLAKE3, the type told by magic bytes, and for text
//! its encoding and line count.
//!
//! Bytes are fed in chunks of any size, in order; memory stays constant whatever the total
//! (the first 4 KiB are kept for the type, a few bytes of state for the text). [`Inspector`]
//! does it all on one thread; [`crate::pipeline`] runs the two hashes and the rest on separate
//! threads and assembles the same [`Report`].
//!
//! # Text
//! A file is text when no magic bytes matched and every byte is text in its encoding:
//! a UTF-16 byte order mark (`FF FE`, `FE FF`) means UTF-16 (surrogates must pair), a UTF-8
//! one (`EF BB BF`) or no mark means UTF-8, which must be valid (a sequence split across
//! chunks is fine), and "ASCII" when no byte is above `0x7F`. Control characters other
//! than tab, line feed, vertical tab, form feed, carriage return and escape (and `NUL`
//! in particular) make a file binary. `lines` counts line feeds, plus one for a last line
//! without one.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The report stored for a file (as JSON, through serde).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// BLAKE3 (32 bytes), lowercase hex.
    pub blake3: String,
    /// The type, from magic bytes.
    #[serde(rename = "type")]
    pub file_type: FileType,
    /// Encoding and line count, when `file_type` is [`FileType::Text`].
    pub text: Option<TextInfo>,
}

/// Encoding and line count of a text file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextInfo {
    pub encoding: Encoding,
    pub lines: u64,
}

/// A text encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    Ascii,
    Utf8,
    Utf8Bom,
    Utf16Le,
    Utf16Be,
}

impl Encoding {
    /// A name for people: `UTF-8 with BOM`.
    pub fn label(self) -> &'static str {
        match self {
            Encoding::Ascii => "ASCII",
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf8Bom => "UTF-8 with BOM",
            Encoding::Utf16Le => "UTF-16LE",
            Encoding::Utf16Be => "UTF-16BE",
        }
    }
}

/// A file type; serialized as its kebab-case name (`png`, `office-open-xml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum FileType {
    Empty,
    Text,
    Binary,
    Png,
    Jpeg,
    Gif,
    Webp,
    Pdf,
    Zip,
    OfficeOpenXml,
    OpenDocument,
    Epub,
    Jar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
    SevenZip,
    Tar,
    Elf,
    MachO,
    Pe,
    JavaClass,
    Wasm,
    Sqlite,
    Mp3,
    Mp4,
    Ogg,
    Flac,
    Wav,
    Avi,
    Webm,
    Matroska,
}

impl FileType {
    /// A description for people: `PNG image`.
    pub fn label(self) -> &'static str {
        use FileType::*;
        match self {
            Empty => "empty",
            Text => "text",
            Binary => "binary data of unknown type",
            Png => "PNG image",
            Jpeg => "JPEG image",
            Gif => "GIF image",
            Webp => "WebP image",
            Pdf => "PDF document",
            Zip => "ZIP archive (docx, xlsx, jar and apk files are ZIP archives too)",
            OfficeOpenXml => "Office Open XML document (docx, xlsx or pptx; a ZIP archive)",
            OpenDocument => "OpenDocument file (odt, ods or odp; a ZIP archive)",
            Epub => "EPUB e-book (a ZIP archive)",
            Jar => "Java archive (JAR; a ZIP archive)",
            Gzip => "gzip compressed data",
            Bzip2 => "bzip2 compressed data",
            Xz => "xz compressed data",
            Zstd => "Zstandard compressed data",
            SevenZip => "7-Zip archive",
            Tar => "tar archive",
            Elf => "ELF executable or library",
            MachO => "Mach-O executable or library",
            Pe => "Windows executable or DLL (PE)",
            JavaClass => "Java class file",
            Wasm => "WebAssembly module",
            Sqlite => "SQLite 3 database",
            Mp3 => "MP3 audio",
            Mp4 => "MP4 / ISO media (ftyp)",
            Ogg => "Ogg media",
            Flac => "FLAC audio",
            Wav => "WAV audio (RIFF)",
            Avi => "AVI video (RIFF)",
            Webm => "WebM video",
            Matroska => "Matroska media",
        }
    }

    /// The usual media type.
    pub fn mime(self) -> &'static str {
        use FileType::*;
        match self {
            Empty | Binary | Elf | MachO => "application/octet-stream",
            Text => "text/plain",
            Png => "image/png",
            Jpeg => "image/jpeg",
            Gif => "image/gif",
            Webp => "image/webp",
            Pdf => "application/pdf",
            Zip => "application/zip",
            OfficeOpenXml => "application/vnd.openxmlformats-officedocument",
            OpenDocument => "application/vnd.oasis.opendocument",
            Epub => "application/epub+zip",
            Jar => "application/java-archive",
            Gzip => "application/gzip",
            Bzip2 => "application/x-bzip2",
            Xz => "application/x-xz",
            Zstd => "application/zstd",
            SevenZip => "application/x-7z-compressed",
            Tar => "application/x-tar",
            Pe => "application/vnd.microsoft.portable-executable",
            JavaClass => "application/java-vm",
            Wasm => "application/wasm",
            Sqlite => "application/vnd.sqlite3",
            Mp3 => "audio/mpeg",
            Mp4 => "video/mp4",
            Ogg => "application/ogg",
            Flac => "audio/flac",
            Wav => "audio/wav",
            Avi => "video/x-msvideo",
            Webm => "video/webm",
            Matroska => "video/x-matroska",
        }
    }
}

/// Builds a [`Report`] from chunks on the calling thread.
#[derive(Clone, Default)]
pub struct Inspector {
    sha256: Sha256,
    blake3: blake3::Hasher,
    sniffer: Sniffer,
}

impl std::fmt::Debug for Inspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inspector")
            .field("size", &self.sniffer.size)
            .finish_non_exhaustive()
    }
}

impl Inspector {
    pub fn new() -> Inspector {
        Inspector::default()
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.sha256.update(data);
        self.blake3.update(data);
        self.sniffer.update(data);
    }

    /// The report on everything fed.
    pub fn finish(self) -> Report {
        Report::assemble(
            self.sha256.finalize().into(),
            *self.blake3.finalize().as_bytes(),
            self.sniffer.finish(),
        )
    }

    /// The report on `data`, in one go.
    pub fn inspect(data: &[u8]) -> Report {
        let mut inspector = Inspector::new();
        inspector.update(data);
        inspector.finish()
    }
}

impl Report {
    pub(crate) fn assemble(sha256: [u8; 32], blake3: [u8; 32], sniffed: Sniffed) -> Report {
        Report {
            size: sniffed.size,
            sha256: hex(&sha256),
            blake3: hex(&blake3),
            file_type: sniffed.file_type,
            text: sniffed.text,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        text.push(DIGITS[usize::from(byte >> 4)] as char);
        text.push(DIGITS[usize::from(byte & 15)] as char);
    }
    text
}

/// How many leading bytes are kept to tell the type (a PE header offset, tar's magic at 257,
/// a ZIP's first entry name all fall within it).
const HEAD_LEN: usize = 4096;

/// Everything but the hashes: size, type and text, fed chunk by chunk.
#[derive(Clone, Default)]
pub(crate) struct Sniffer {
    size: u64,
    head: Vec<u8>,
    text: TextScan,
}

/// What a [`Sniffer`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sniffed {
    pub(crate) size: u64,
    pub(crate) file_type: FileType,
    pub(crate) text: Option<TextInfo>,
}

impl Sniffer {
    pub(crate) fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
        self.text.update(data);
    }

    pub(crate) fn finish(self) -> Sniffed {
        let text = self.text.finish();
        let file_type = if self.size == 0 {
            FileType::Empty
        } else if let Some(known) = magic(&self.head) {
            known
        } else if text.is_some() {
            FileType::Text
        } else if mpeg_audio_frame(&self.head) {
            // A frame sync is only two bytes of evidence (a UTF-16 byte order mark has it
            // too), so it counts only for what is not text.
            FileType::Mp3
        } else {
            FileType::Binary
        };
        Sniffed {
            size: self.size,
            file_type,
            text: if file_type == FileType::Text {
                text
            } else {
                None
            },
        }
    }
}

/// The type told by the first bytes, if any.
fn magic(head: &[u8]) -> Option<FileType> {
    use FileType::*;
    let starts = |prefix: &[u8]| head.starts_with(prefix);
    let at = |offset: usize, bytes: &[u8]| head.get(offset..offset + bytes.len()) == Some(bytes);
    let u32_be = |offset: usize| {
        head.get(offset..offset + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };

    let found = if starts(b"\x89PNG\r\n\x1a\n") {
        Png
    } else if starts(&[0xFF, 0xD8, 0xFF]) {
        Jpeg
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Gif
    } else if starts(b"RIFF") && at(8, b"WEBP") {
        Webp
    } else if starts(b"RIFF") && at(8, b"WAVE") {
        Wav
    } else if starts(b"RIFF") && at(8, b"AVI ") {
        Avi
    } else if starts(b"%PDF-") {
        Pdf
    } else if starts(b"PK\x03\x04") {
        zip_kind(head)
    } else if starts(b"PK\x05\x06") || starts(b"PK\x07\x08") {
        Zip
    } else if starts(&[0x1F, 0x8B]) {
        Gzip
    } else if starts(b"BZh")
        && head.get(3).is_some_and(u8::is_ascii_digit)
        && (at(4, &[0x31, 0x41, 0x59, 0x26, 0x53, 0x59]) || at(4, &[0x17, 0x72, 0x45, 0x38]))
    {
        Bzip2
    } else if starts(&[0xFD, b'7', b'z', b'X', b'Z', 0]) {
        Xz
    } else if starts(&[0x28, 0xB5, 0x2F, 0xFD]) {
        Zstd
    } else if starts(&[b'7', b'z', 0xBC, 0xAF, 0x27, 0x1C]) {
        SevenZip
    } else if starts(b"\x7fELF") {
        Elf
    } else if [
        [0xFE, 0xED, 0xFA, 0xCE],
        [0xFE, 0xED, 0xFA, 0xCF],
        [0xCE, 0xFA, 0xED, 0xFE],
        [0xCF, 0xFA, 0xED, 0xFE],
    ]
    .iter()
    .any(|magic| starts(magic))
    {
        MachO
    } else if starts(&[0xCA, 0xFE, 0xBA, 0xBE]) {
        // A universal Mach-O counts its architectures here (a handful); a Java class file
        // has its version (major 45 and up).
        match u32_be(4) {
            Some(1..30) => MachO,
            Some(_) => JavaClass,
            None => return None,
        }
    } else if starts(b"MZ") {
        let offset = head
            .get(0x3C..0x40)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)?;
        if at(offset, b"PE\0\0") {
            Pe
        } else {
            return None;
        }
    } else if starts(b"\0asm") {
        Wasm
    } else if starts(b"SQLite format 3\0") {
        Sqlite
    } else if starts(b"ID3") {
        Mp3
    } else if at(4, b"ftyp") {
        Mp4
    } else if starts(b"OggS") {
        Ogg
    } else if starts(b"fLaC") {
        Flac
    } else if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        let header = &head[..head.len().min(64)];
        if header.windows(4).any(|w| w == b"webm") {
            Webm
        } else {
            Matroska
        }
    } else if at(257, b"ustar") {
        Tar
    } else {
        return None;
    };
    Some(found)
}

/// An MPEG audio Layer III frame header (MP3 without an ID3 tag): sync bits, layer III, and
/// no reserved version, bitrate or sample rate.
fn mpeg_audio_frame(head: &[u8]) -> bool {
    let [0xFF, b1, b2, ..] = *head else {
        return false;
    };
    b1 & 0xE0 == 0xE0
        && (b1 >> 3) & 3 != 1
        && (b1 >> 1) & 3 == 1
        && b2 >> 4 != 0xF
        && (b2 >> 2) & 3 != 3
}

/// A ZIP archive, refined by its first entry when that names a well-known container.
fn zip_kind(head: &[u8]) -> FileType {
    let field = |offset: usize| {
        head.get(offset..offset + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    };
    let (Some(name_len), Some(extra_len)) = (field(26), field(28)) else {
        return FileType::Zip;
    };
    let Some(name) = head.get(30..30 + name_len) else {
        return FileType::Zip;
    };
    let data = head.get(30 + name_len + extra_len..).unwrap_or(&[]);
    if name == b"mimetype" {
        if data.starts_with(b"application/epub+zip") {
            return FileType::Epub;
        }
        if data.starts_with(b"application/vnd.oasis.opendocument") {
            return FileType::OpenDocument;
        }
    }
    if name == b"[Content_Types].xml"
        || [&b"word/"[..], b"xl/", b"ppt/", b"_rels/"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
    {
        return FileType::OfficeOpenXml;
    }
    if name.starts_with(b"META-INF/") {
        return FileType::Jar;
    }
    FileType::Zip
}

/// The text state, fed chunk by chunk.
#[derive(Clone, Debug)]
enum TextScan {
    /// The first bytes, until there are enough to tell a byte order mark.
    Start {
        prefix: [u8; 3],
        len: usize,
    },
    Utf8(Utf8Scan),
    Utf16(Utf16Scan),
    Binary,
}

impl Default for TextScan {
    fn default() -> Self {
        TextScan::Start {
            prefix: [0; 3],
            len: 0,
        }
    }
}

impl TextScan {
    fn update(&mut self, mut data: &[u8]) {
        if let TextScan::Start { prefix, len } = self {
            let take = (3 - *len).min(data.len());
            prefix[*len..*len + take].copy_from_slice(&data[..take]);
            *len += take;
            data = &data[take..];
            if *len < 3 {
                return;
            }
            let prefix = *prefix;
            self.begin(&prefix);
        }
        self.feed(data);
    }

    /// Leaves `Start`: the byte order mark (or its absence) picks the encoding, and the
    /// bytes after it are fed.
    fn begin(&mut self, prefix: &[u8]) {
        let (next, skip) = if prefix.starts_with(&[0xEF, 0xBB, 0xBF]) {
            (TextScan::Utf8(Utf8Scan::new(true)), 3)
        } else if prefix.starts_with(&[0xFF, 0xFE]) {
            (TextScan::Utf16(Utf16Scan::new(false)), 2)
        } else if prefix.starts_with(&[0xFE, 0xFF]) {
            (TextScan::Utf16(Utf16Scan::new(true)), 2)
        } else {
            (TextScan::Utf8(Utf8Scan::new(false)), 0)
        };
        *self = next;
        self.feed(&prefix[skip..]);
    }

    fn feed(&mut self, data: &[u8]) {
        let ok = match self {
            TextScan::Utf8(scan) => scan.feed(data),
            TextScan::Utf16(scan) => scan.feed(data),
            TextScan::Start { .. } | TextScan::Binary => true,
        };
        if !ok {
            *self = TextScan::Binary;
        }
    }

    fn finish(mut self) -> Option<TextInfo> {
        if let TextScan::Start { prefix, len } = self {
            self = TextScan::default();
            self.begin(&prefix[..len]);
        }
        match self {
            TextScan::Utf8(scan) => scan.finish(),
            TextScan::Utf16(scan) => scan.finish(),
            TextScan::Start { .. } | TextScan::Binary => None,
        }
    }
}

/// Whether `byte` is a control character that text does not contain: C0 controls other
/// than tab, LF, VT, FF, CR and ESC, and DEL. Written without branches so that the scan
/// loop vectorizes.
#[inline(always)]
fn is_binary_control(byte: u8) -> bool {
    ((byte < 0x20) & (byte.wrapping_sub(9) > 4) & (byte != 0x1B)) | (byte == 0x7F)
}

#[derive(Clone, Debug)]
struct Utf8Scan {
    bom: bool,
    ascii: bool,
    /// The start of a multi-byte sequence the previous chunk ended in.
    carry: [u8; 4],
    carry_len: usize,
    newlines: u64,
    last: Option<u8>,
}

impl Utf8Scan {
    fn new(bom: bool) -> Utf8Scan {
        Utf8Scan {
            bom,
            ascii: true,
            carry: [0; 4],
            carry_len: 0,
            newlines: 0,
            last: None,
        }
    }

    /// Returns false once the data cannot be text.
    fn feed(&mut self, data: &[u8]) -> bool {
        let Some(&last) = data.last() else {
            return true;
        };
        let mut newlines = 0u64;
        let mut high = 0u8;
        for block in data.chunks(128) {
            let mut block_newlines = 0u8;
            let mut bad = false;
            for &byte in block {
                block_newlines += u8::from(byte == b'\n');
                high |= byte;
                bad |= is_binary_control(byte);
            }
            if bad {
                return false;
            }
            newlines += u64::from(block_newlines);
        }
        self.newlines += newlines;
        self.last = Some(last);
        if high < 0x80 && self.carry_len == 0 {
            return true;
        }
        self.ascii = false;
        self.validate(data)
    }

    /// UTF-8 validation that carries an incomplete sequence over to the next chunk.
    fn validate(&mut self, mut data: &[u8]) -> bool {
        if self.carry_len > 0 {
            let width = match self.carry[0] {
                0xC2..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            let take = (width - self.carry_len).min(data.len());
            self.carry[self.carry_len..self.carry_len + take].copy_from_slice(&data[..take]);
            self.carry_len += take;
            data = &data[take..];
            if self.carry_len < width {
                // Still incomplete: the continuation bytes so far must be valid.
                return match std::str::from_utf8(&self.carry[..self.carry_len]) {
                    Ok(_) => true,
                    Err(e) => e.error_len().is_none(),
                };
            }
            if std::str::from_utf8(&self.carry[..width]).is_err() {
                return false;
            }
            self.carry_len = 0;
        }
        match std::str::from_utf8(data) {
            Ok(_) => true,
            Err(e) if e.error_len().is_none() => {
                let tail = &data[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len();
                true
            }
            Err(_) => false,
        }
    }

    fn finish(self) -> Option<TextInfo> {
        if self.carry_len > 0 {
            return None;
        }
        let encoding = if self.bom {
            Encoding::Utf8Bom
        } else if self.ascii {
            Encoding::Ascii
        } else {
            Encoding::Utf8
        };
        Some(TextInfo {
            encoding,
            lines: count_lines(self.newlines, self.last.map(|byte| byte == b'\n')),
        })
    }
}

#[derive(Clone, Debug)]
struct Utf16Scan {
    big_endian: bool,
    /// The first byte of a code unit split across chunks.
    odd: Option<u8>,
    /// A high surrogate waiting for its low half.
    high_surrogate: bool,
    newlines: u64,
    last: Option<u16>,
}

impl Utf16Scan {
    fn new(big_endian: bool) -> Utf16Scan {
        Utf16Scan {
            big_endian,
            odd: None,
            high_surrogate: false,
            newlines: 0,
            last: None,
        }
    }

    fn feed(&mut self, mut data: &[u8]) -> bool {
        if let Some(first) = self.odd {
            let Some((&second, rest)) = data.split_first() else {
                return true;
            };
            self.odd = None;
            if !self.unit([first, second]) {
                return false;
            }
            data = rest;
        }
        let mut pairs = data.chunks_exact(2);
        for pair in &mut pairs {
            if !self.unit([pair[0], pair[1]]) {
                return false;
            }
        }
        if let [byte] = pairs.remainder() {
            self.odd = Some(*byte);
        }
        true
    }

    fn unit(&mut self, bytes: [u8; 2]) -> bool {
        let unit = if self.big_endian {
            u16::from_be_bytes(bytes)
        } else {
            u16::from_le_bytes(bytes)
        };
        self.last = Some(unit);
        if self.high_surrogate {
            self.high_surrogate = false;
            return (0xDC00..=0xDFFF).contains(&unit);
        }
        match unit {
            0xD800..=0xDBFF => {
                self.high_surrogate = true;
                true
            }
            0xDC00..=0xDFFF => false,
            0x0A => {
                self.newlines += 1;
                true
            }
            0..=0x7F => !is_binary_control(unit as u8),
            _ => true,
        }
    }

    fn finish(self) -> Option<TextInfo> {
        if self.odd.is_some() || self.high_surrogate {
            return None;
        }
        Some(TextInfo {
            encoding: if self.big_endian {
                Encoding::Utf16Be
            } else {
                Encoding::Utf16Le
            },
            lines: count_lines(self.newlines, self.last.map(|unit| unit == 0x0A)),
        })
    }
}

/// Line feeds, plus one for a last line that has none. `ends_with_newline` is `None` for
/// no content.
fn count_lines(newlines: u64, ends_with_newline: Option<bool>) -> u64 {
    match ends_with_newline {
        Some(false) => newlines + 1,
        _ => newlines,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff(data: &[u8]) -> Sniffed {
        let mut sniffer = Sniffer::default();
        sniffer.update(data);
        sniffer.finish()
    }

    fn sniff_bytewise(data: &[u8]) -> Sniffed {
        let mut sniffer = Sniffer::default();
        for byte in data {
            sniffer.update(std::slice::from_ref(byte));
        }
        sniffer.finish()
    }

    fn text(data: &[u8]) -> Option<TextInfo> {
        let whole = sniff(data).text;
        assert_eq!(sniff_bytewise(data).text, whole, "{data:?} byte by byte");
        whole
    }

    #[test]
    fn control_characters() {
        let bad: Vec<u8> = (0..=255u8).filter(|&b| is_binary_control(b)).collect();
        let mut expected: Vec<u8> = (0..9).collect();
        expected.extend(14..27);
        expected.extend(28..32);
        expected.push(127);
        assert_eq!(bad, expected);
    }

    #[test]
    fn line_counts() {
        let lines = |data: &[u8]| text(data).map(|info| info.lines);
        assert_eq!(lines(b"a"), Some(1));
        assert_eq!(lines(b"a\n"), Some(1));
        assert_eq!(lines(b"a\nb"), Some(2));
        assert_eq!(lines(b"\n\n\n"), Some(3));
        assert_eq!(lines(b"a\r\nb\r\n"), Some(2));
        assert_eq!(lines(b"\xEF\xBB\xBF"), Some(0));
        assert_eq!(lines(b"\xFF\xFEa\0\n\0b\0"), Some(2));
    }

    #[test]
    fn encodings() {
        let encoding = |data: &[u8]| text(data).map(|info| info.encoding);
        assert_eq!(encoding(b"plain\ttext\x1b[0m\x0c"), Some(Encoding::Ascii));
        assert_eq!(encoding("héllo wörld €𝄞".as_bytes()), Some(Encoding::Utf8));
        assert_eq!(encoding(b"\xEF\xBB\xBFhi"), Some(Encoding::Utf8Bom));
        assert_eq!(encoding(b"\xFF\xFEh\0i\0"), Some(Encoding::Utf16Le));
        assert_eq!(encoding(b"\xFE\xFF\0h\0i"), Some(Encoding::Utf16Be));
        assert_eq!(encoding(b"\xFF\xFE=\xD8\x00\xDE"), Some(Encoding::Utf16Le));
        assert_eq!(encoding(b"ab"), Some(Encoding::Ascii));
        // Not text: NUL, invalid or truncated UTF-8, lone surrogates, odd UTF-16.
        for data in [
            &b"a\0b"[..],
            b"caf\xE9",
            b"\xC3",
            b"ok \xE2\x82",
            b"\xED\xA0\x80",
            b"\xFF\xFE\x00\xD8a\0",
            b"\xFF\xFE\x00\xDC",
            b"\xFF\xFEa",
            b"\x01\x02",
        ] {
            assert_eq!(encoding(data), None, "{data:?}");
        }
    }

    #[test]
    fn magic_bytes() {
        let mut tar = vec![b'a'; 512];
        tar[257..263].copy_from_slice(b"ustar\0");
        let mut pe = b"MZ".to_vec();
        pe.resize(0x80, 0);
        pe[0x3C] = 0x80;
        pe.extend_from_slice(b"PE\0\0");
        let mut docx = b"PK\x03\x04".to_vec();
        docx.resize(26, 0);
        docx.extend_from_slice(&[19, 0, 0, 0]);
        docx.extend_from_slice(b"[Content_Types].xml");
        let mut epub = b"PK\x03\x04".to_vec();
        epub.resize(26, 0);
        epub.extend_from_slice(&[8, 0, 0, 0]);
        epub.extend_from_slice(b"mimetypeapplication/epub+zip");
        let mut jar = b"PK\x03\x04".to_vec();
        jar.resize(26, 0);
        jar.extend_from_slice(&[20, 0, 0, 0]);
        jar.extend_from_slice(b"META-INF/MANIFEST.MF");
        let cases: Vec<(Vec<u8>, FileType)> = vec![
            (b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec(), FileType::Png),
            (b"\xFF\xD8\xFF\xE0\0\x10JFIF".to_vec(), FileType::Jpeg),
            (b"GIF89a\x01\0".to_vec(), FileType::Gif),
            (b"RIFF\0\0\0\0WEBPVP8 ".to_vec(), FileType::Webp),
            (b"RIFF\0\0\0\0WAVEfmt ".to_vec(), FileType::Wav),
            (b"RIFF\0\0\0\0AVI LIST".to_vec(), FileType::Avi),
            (b"%PDF-1.7\n".to_vec(), FileType::Pdf),
            (b"PK\x03\x04\x14\0\0\0\x08\0".to_vec(), FileType::Zip),
            (b"PK\x05\x06\0\0\0\0".to_vec(), FileType::Zip),
            (docx, FileType::OfficeOpenXml),
            (epub, FileType::Epub),
            (jar, FileType::Jar),
            (b"\x1f\x8b\x08\0".to_vec(), FileType::Gzip),
            (b"BZh91AY&SY".to_vec(), FileType::Bzip2),
            (b"\xFD7zXZ\0\0".to_vec(), FileType::Xz),
            (b"\x28\xB5\x2F\xFD\x04".to_vec(), FileType::Zstd),
            (b"7z\xBC\xAF\x27\x1C\0\x04".to_vec(), FileType::SevenZip),
            (tar, FileType::Tar),
            (b"\x7fELF\x02\x01\x01".to_vec(), FileType::Elf),
            (b"\xCF\xFA\xED\xFE\x07\0\0\x01".to_vec(), FileType::MachO),
            (b"\xCA\xFE\xBA\xBE\0\0\0\x02".to_vec(), FileType::MachO),
            (b"\xCA\xFE\xBA\xBE\0\0\0\x41".to_vec(), FileType::JavaClass),
            (pe, FileType::Pe),
            (b"\0asm\x01\0\0\0".to_vec(), FileType::Wasm),
            (b"SQLite format 3\0\x10\0".to_vec(), FileType::Sqlite),
            (b"ID3\x04\0\0\0\0\0\0".to_vec(), FileType::Mp3),
            (b"\xFF\xFB\x90\x64\0".to_vec(), FileType::Mp3),
            (b"\0\0\0\x20ftypisom".to_vec(), FileType::Mp4),
            (b"OggS\0\x02".to_vec(), FileType::Ogg),
            (b"fLaC\0\0\0\x22".to_vec(), FileType::Flac),
            (
                b"\x1A\x45\xDF\xA3\x9F\x42\x82\x84webm".to_vec(),
                FileType::Webm,
            ),
            (
                b"\x1A\x45\xDF\xA3\xA3\x42\x82\x88matroska".to_vec(),
                FileType::Matroska,
            ),
        ];
        for (data, expected) in cases {
            assert_eq!(sniff(&data).file_type, expected, "{data:?}");
            assert_eq!(
                sniff_bytewise(&data).file_type,
                expected,
                "{data:?} byte by byte"
            );
            assert_eq!(sniff(&data).text, None);
        }
        // Near misses are text or binary, not the format.
        assert_eq!(sniff(b"MZ is not enough").file_type, FileType::Text);
        assert_eq!(sniff(b"BZh9 nor this").file_type, FileType::Text);
        assert_eq!(sniff(b"RIFF\0\0\0\0XXXX").file_type, FileType::Binary);
        assert_eq!(sniff(b"").file_type, FileType::Empty);
    }

    #[test]
    fn hex_digits() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }
}
