//! The streaming report against known digests, and chunking that must not change anything.

mod support;

use digest_app::inspect::{Encoding, FileType, Inspector, Report, TextInfo};

use support::generated;

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const EMPTY_BLAKE3: &str = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
const ABC_BLAKE3: &str = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";

fn in_chunks(data: &[u8], sizes: &[usize]) -> Report {
    let mut inspector = Inspector::new();
    let mut rest = data;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = (*sizes.next().unwrap()).min(rest.len());
        inspector.update(&rest[..size]);
        rest = &rest[size..];
    }
    inspector.finish()
}

#[test]
fn empty_input() {
    let report = Inspector::new().finish();
    assert_eq!(report.size, 0);
    assert_eq!(report.sha256, EMPTY_SHA256);
    assert_eq!(report.blake3, EMPTY_BLAKE3);
    assert_eq!(report.file_type, FileType::Empty);
    assert_eq!(report.text, None);
}

#[test]
fn abc() {
    for report in [Inspector::inspect(b"abc"), in_chunks(b"abc", &[1])] {
        assert_eq!(report.size, 3);
        assert_eq!(report.sha256, ABC_SHA256);
        assert_eq!(report.blake3, ABC_BLAKE3);
        assert_eq!(report.file_type, FileType::Text);
        assert_eq!(
            report.text,
            Some(TextInfo {
                encoding: Encoding::Ascii,
                lines: 1
            })
        );
    }
}

#[test]
fn million_a_matches_the_nist_vector() {
    let data = vec![b'a'; 1_000_000];
    let report = in_chunks(&data, &[4093]);
    assert_eq!(
        report.sha256,
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
    );
    assert_eq!(report.text.unwrap().lines, 1);
}

#[test]
fn odd_chunks_of_a_multi_mib_input_equal_one_shot_hashing() {
    let data = generated(5 * 1024 * 1024 + 77, 42);
    let whole = Inspector::inspect(&data);
    assert_eq!(whole.size, data.len() as u64);
    assert_eq!(whole.file_type, FileType::Binary);
    assert_eq!(whole.blake3, blake3::hash(&data).to_hex().as_str());
    for sizes in [&[1, 7, 4096, 65_537][..], &[131_071], &[3, 1_048_577, 2]] {
        assert_eq!(in_chunks(&data, sizes), whole, "chunk sizes {sizes:?}");
    }
}

#[test]
fn multibyte_text_split_at_every_boundary() {
    let line = "grüße, 世界, 𝄞 — ünïcödé\n";
    let text = line.repeat(1000);
    let data = text.as_bytes();
    let expected = Inspector::inspect(data);
    assert_eq!(expected.file_type, FileType::Text);
    assert_eq!(
        expected.text,
        Some(TextInfo {
            encoding: Encoding::Utf8,
            lines: 1000
        })
    );
    for size in 1..=9 {
        assert_eq!(in_chunks(data, &[size]), expected, "chunks of {size}");
    }
}

#[test]
fn utf16_text_in_odd_chunks() {
    let mut data = vec![0xFF, 0xFE];
    for unit in "line one\r\nline 𝄞 two\r\nthree".encode_utf16() {
        data.extend_from_slice(&unit.to_le_bytes());
    }
    for size in [1, 3, 5, 1000] {
        let report = in_chunks(&data, &[size]);
        assert_eq!(report.file_type, FileType::Text, "chunks of {size}");
        assert_eq!(
            report.text,
            Some(TextInfo {
                encoding: Encoding::Utf16Le,
                lines: 3
            })
        );
    }
}

#[test]
fn invalid_utf8_late_in_the_file_makes_it_binary() {
    let mut data = "ok\n".repeat(100_000).into_bytes();
    data.push(0xC0);
    data.extend_from_slice(b"\n");
    let report = in_chunks(&data, &[65_536]);
    assert_eq!(report.file_type, FileType::Binary);
    assert_eq!(report.text, None);
}

#[test]
fn report_round_trips_through_json() {
    let report = Inspector::inspect("€\n".as_bytes());
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["type"], "text");
    assert_eq!(json["text"]["encoding"], "utf8");
    assert_eq!(json["text"]["lines"], 1);
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);

    let zip = Inspector::inspect(b"PK\x03\x04\x14\0\0\0\x08\0");
    assert_eq!(serde_json::to_value(&zip).unwrap()["type"], "zip");
    assert_eq!(
        serde_json::to_value(&zip).unwrap()["text"],
        serde_json::Value::Null
    );
    assert!(zip.file_type.label().contains("docx"));
}
