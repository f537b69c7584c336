//! Sans-I/O helpers of the message browser: splitting fetched record bytes into batches,
//! decoding them (compressed ones too), and showing keys, values and headers as text, JSON
//! or hex.

use bytes::Bytes;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use serde_json::{json, Value};

/// How a key, value or header is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// UTF-8 text (invalid sequences replaced).
    Text,
    /// Pretty-printed JSON; bytes that are not JSON are shown as text with `json: false`.
    Json,
    /// Lower-case hex.
    Hex,
}

impl Format {
    /// Parses `text`, `json` or `hex`.
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "text" => Some(Format::Text),
            "json" => Some(Format::Json),
            "hex" => Some(Format::Hex),
            _ => None,
        }
    }
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes from hex (`None` for odd lengths or non-hex digits).
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// `b` shown as `format`: `null` for a null key/value, else a string.
pub fn show(b: Option<&[u8]>, format: Format) -> Value {
    let Some(b) = b else {
        return Value::Null;
    };
    match format {
        Format::Text => Value::String(String::from_utf8_lossy(b).into_owned()),
        Format::Hex => Value::String(hex(b)),
        Format::Json => match serde_json::from_slice::<Value>(b) {
            Ok(v) => Value::String(serde_json::to_string_pretty(&v).unwrap_or_default()),
            Err(_) => Value::String(String::from_utf8_lossy(b).into_owned()),
        },
    }
}

/// The complete record batches in `buf` (a fetch may end with a partial one, which is
/// left out, as a consumer ignores it), decoded; control records (transaction markers)
/// are dropped. A batch that does not decode ends the list (logged).
pub fn decode_records(buf: &Bytes) -> Vec<Record> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while buf.len() >= pos + 12 {
        let len_bytes = [buf[pos + 8], buf[pos + 9], buf[pos + 10], buf[pos + 11]];
        let Ok(len) = usize::try_from(i32::from_be_bytes(len_bytes)) else {
            break;
        };
        let end = pos + 12 + len;
        if end > buf.len() {
            break;
        }
        let mut batch = buf.slice(pos..end);
        match RecordBatchDecoder::decode(&mut batch) {
            Ok(set) => out.extend(set.records.into_iter().filter(|r| !r.control)),
            Err(e) => {
                tracing::warn!(error = %e, "console: a fetched batch did not decode");
                break;
            }
        }
        pos = end;
    }
    out
}

/// One record as the browser shows it.
pub fn record_json(partition: i32, r: &Record, format: Format) -> Value {
    let headers: Vec<Value> = r
        .headers
        .iter()
        .map(|(k, v)| json!({"key": k.to_string(), "value": show(v.as_deref(), format)}))
        .collect();
    json!({
        "partition": partition,
        "offset": r.offset,
        "timestamp": r.timestamp,
        "key": show(r.key.as_deref(), format),
        "value": show(r.value.as_deref(), format),
        "headers": headers,
        "size": r.value.as_ref().map(|v| v.len()).unwrap_or(0)
            + r.key.as_ref().map(|k| k.len()).unwrap_or(0),
    })
}

/// Kafka's name for error code `code` (`UNKNOWN_TOPIC_OR_PARTITION`), or the number.
pub fn error_name(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        Some(e) => {
            let camel = format!("{e:?}");
            let mut out = String::new();
            for (i, c) in camel.chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
        None => format!("error {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{Compression, RecordBatchEncoder, RecordEncodeOptions};

    fn rec(offset: i64, value: &[u8]) -> Record {
        let plain = crate::testing::plain_record(
            offset as usize,
            1_700_000_000_000,
            Bytes::copy_from_slice(value),
        );
        Record {
            // One batch per encode call (kafka-protocol splits where offset - sequence changes).
            sequence: offset as i32 - 1,
            key: Some(Bytes::from_static(b"k")),
            ..plain
        }
    }

    #[test]
    fn formats_and_decodes() {
        assert_eq!(show(None, Format::Text), Value::Null);
        assert_eq!(show(Some(b"hi"), Format::Hex), json!("6869"));
        assert_eq!(
            show(Some(b"{\"a\":1}"), Format::Json),
            json!("{\n  \"a\": 1\n}")
        );
        assert_eq!(show(Some(b"not json"), Format::Json), json!("not json"));
        assert_eq!(show(Some(b"\xffa"), Format::Text), json!("\u{fffd}a"));
        assert_eq!(unhex("6869"), Some(b"hi".to_vec()));
        assert_eq!(unhex("686"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(Format::parse("json"), Some(Format::Json));
        assert_eq!(Format::parse("xml"), None);
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(29), "TOPIC_AUTHORIZATION_FAILED");

        // Two batches, the second gzip-compressed, then a cut-off copy of the first.
        let mut buf = BytesMut::new();
        let opts = |c| RecordEncodeOptions {
            version: 2,
            compression: c,
        };
        RecordBatchEncoder::encode(
            &mut buf,
            [rec(0, b"a"), rec(1, b"b")].iter(),
            &opts(Compression::None),
        )
        .expect("encode");
        let first_len = buf.len();
        let mut mid = buf.clone();
        mid.clear();
        RecordBatchEncoder::encode(&mut mid, [rec(2, b"c")].iter(), &opts(Compression::Gzip))
            .expect("encode");
        let first = buf.clone().freeze();
        buf.extend_from_slice(&mid);
        buf.extend_from_slice(&first[..first_len - 3]);
        let records = decode_records(&buf.freeze());
        let values: Vec<_> = records
            .iter()
            .map(|r| r.value.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            values,
            vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")]
        );
        let j = record_json(0, &records[2], Format::Text);
        assert_eq!(j["offset"], 2);
        assert_eq!(j["key"], "k");
    }
}
