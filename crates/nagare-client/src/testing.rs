//! Helpers for tests that stand in for a Kafka broker at the socket level (this crate's tests
//! and, with the `testing` feature, other crates' tests).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::protocol::Encodable;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one size-prefixed request frame (without its size).
pub async fn read_frame(s: &mut TcpStream) -> std::io::Result<Bytes> {
    let size = s.read_i32().await?;
    let len = usize::try_from(size)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "negative frame size"))?;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(Bytes::from(buf))
}

/// Reads the ApiVersions request a [`crate::Connection`] opens with (an error if the frame is
/// another API) and answers it with an
/// empty ApiVersionsResponse at the request's version (response header v0, as Kafka answers
/// ApiVersions).
pub async fn answer_api_versions(s: &mut TcpStream) -> std::io::Result<()> {
    let mut req = read_frame(s).await?;
    if req.remaining() < 8 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "short request header",
        ));
    }
    let api_key = req.get_i16();
    if api_key != kafka_protocol::messages::ApiKey::ApiVersions as i16 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("expected ApiVersions, got API key {api_key}"),
        ));
    }
    let version = req.get_i16();
    let correlation_id = req.get_i32();
    let mut out = BytesMut::new();
    out.put_i32(0);
    out.put_i32(correlation_id);
    ApiVersionsResponse::default()
        .encode(&mut out, version)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
    let size = i32::try_from(out.len() - 4)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "response too large"))?;
    out[..4].copy_from_slice(&size.to_be_bytes());
    s.write_all(&out).await
}
