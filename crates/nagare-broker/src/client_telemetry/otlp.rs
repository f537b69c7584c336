//! A decoder for the part of OpenTelemetry's OTLP `MetricsData` protobuf (the payload of a
//! KIP-714 PushTelemetry request) that Nagare re-exports: gauges and sums with their number
//! data points and attributes, and the resource attributes. Protobuf's wire format is small
//! enough to read by hand (varints, fixed 64-bit, length-delimited); unknown fields are
//! skipped as protobuf requires, and histograms, summaries and exemplars are skipped too.
//!
//! Field numbers, from `opentelemetry/proto/metrics/v1/metrics.proto` and `common/v1`:
//! MetricsData{1: ResourceMetrics}; ResourceMetrics{1: Resource, 2: ScopeMetrics};
//! Resource{1: KeyValue}; ScopeMetrics{2: Metric}; Metric{1: name, 5: Gauge, 7: Sum};
//! Gauge{1: NumberDataPoint}; Sum{1: NumberDataPoint, 2: temporality, 3: is_monotonic};
//! NumberDataPoint{7: KeyValue, 3: time_unix_nano (fixed64), 4: as_double (fixed64),
//! 6: as_int (sfixed64)}; KeyValue{1: key, 2: AnyValue}; AnyValue{1: string, 2: bool,
//! 3: int64, 4: double}.

/// Why a payload did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed OTLP metrics: {0}")]
pub struct DecodeError(pub &'static str);

/// What a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A value that goes up and down.
    Gauge,
    /// A monotonic sum (a counter).
    Counter,
    /// A non-monotonic sum (exported as a gauge).
    UpDownSum,
}

/// One number data point of a gauge or sum.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The metric's name, e.g. `org.apache.kafka.producer.node.request.latency.avg`.
    pub name: String,
    /// Gauge or sum.
    pub kind: MetricKind,
    /// Whether a sum's points are deltas (AGGREGATION_TEMPORALITY_DELTA) to accumulate.
    pub delta: bool,
    /// The point's attributes, as text.
    pub attributes: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A decoded `MetricsData`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsData {
    /// Resource attributes (of every ResourceMetrics, in order).
    pub resource: Vec<(String, String)>,
    /// Every gauge and sum data point.
    pub points: Vec<Point>,
    /// Metrics of kinds not re-exported (histograms, summaries).
    pub skipped: usize,
}

/// A protobuf wire-format reader over one message's bytes.
struct Reader<'a> {
    buf: &'a [u8],
}

/// A field's value.
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or(DecodeError("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError("truncated field"));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// The next field: its number and value, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = tag >> 3;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Value::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| DecodeError("length out of range"))?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            _ => return Err(DecodeError("unsupported wire type")),
        };
        Ok(Some((field, value)))
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An AnyValue as text (strings, booleans, integers and doubles; others empty).
fn any_value(buf: &[u8]) -> Result<String, DecodeError> {
    let mut r = Reader::new(buf);
    let mut out = String::new();
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (1, Value::Bytes(b)) => out = text(b),
            (2, Value::Varint(n)) => out = (n != 0).to_string(),
            (3, Value::Varint(n)) => out = (n as i64).to_string(),
            (4, Value::Fixed64(n)) => out = f64::from_bits(n).to_string(),
            _ => {}
        }
    }
    Ok(out)
}

fn key_value(buf: &[u8]) -> Result<(String, String), DecodeError> {
    let mut r = Reader::new(buf);
    let (mut k, mut v) = (String::new(), String::new());
    while let Some((f, val)) = r.next()? {
        match (f, val) {
            (1, Value::Bytes(b)) => k = text(b),
            (2, Value::Bytes(b)) => v = any_value(b)?,
            _ => {}
        }
    }
    Ok((k, v))
}

fn data_point(buf: &[u8], name: &str, kind: MetricKind, delta: bool) -> Result<Point, DecodeError> {
    let mut r = Reader::new(buf);
    let mut p = Point {
        name: name.to_string(),
        kind,
        delta,
        attributes: Vec::new(),
        value: 0.0,
    };
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (7, Value::Bytes(b)) => p.attributes.push(key_value(b)?),
            (4, Value::Fixed64(n)) => p.value = f64::from_bits(n),
            (6, Value::Fixed64(n)) => p.value = n as i64 as f64,
            _ => {}
        }
    }
    Ok(p)
}

/// Gauge (`sum == false`) or Sum message: its data points.
fn number_points(
    buf: &[u8],
    name: &str,
    sum: bool,
    out: &mut Vec<Point>,
) -> Result<(), DecodeError> {
    // Temporality and monotonicity may follow the points on the wire: read them first.
    let (mut delta, mut monotonic) = (false, false);
    if sum {
        let mut r = Reader::new(buf);
        while let Some((f, v)) = r.next()? {
            match (f, v) {
                (2, Value::Varint(t)) => delta = t == 1,
                (3, Value::Varint(m)) => monotonic = m != 0,
                _ => {}
            }
        }
    }
    let kind = match (sum, monotonic) {
        (false, _) => MetricKind::Gauge,
        (true, true) => MetricKind::Counter,
        (true, false) => MetricKind::UpDownSum,
    };
    let mut r = Reader::new(buf);
    while let Some((f, v)) = r.next()? {
        if let (1, Value::Bytes(b)) = (f, v) {
            out.push(data_point(b, name, kind, delta)?);
        }
    }
    Ok(())
}

fn metric(buf: &[u8], data: &mut MetricsData) -> Result<(), DecodeError> {
    let mut r = Reader::new(buf);
    let mut name = String::new();
    let mut bodies: Vec<(bool, &[u8])> = Vec::new();
    let mut other = false;
    while let Some((f, v)) = r.next()? {
        match (f, v) {
            (1, Value::Bytes(b)) => name = text(b),
            (5, Value::Bytes(b)) => bodies.push((false, b)),
            (7, Value::Bytes(b)) => bodies.push((true, b)),
            (9..=11, _) => other = true,
            _ => {}
        }
    }
    if other {
        data.skipped += 1;
    }
    for (sum, b) in bodies {
        number_points(b, &name, sum, &mut data.points)?;
    }
    Ok(())
}

/// Decodes a `MetricsData` message.
pub fn decode(buf: &[u8]) -> Result<MetricsData, DecodeError> {
    let mut data = MetricsData::default();
    let mut r = Reader::new(buf);
    while let Some((f, v)) = r.next()? {
        let (1, Value::Bytes(rm)) = (f, v) else {
            continue;
        };
        let mut r = Reader::new(rm);
        while let Some((f, v)) = r.next()? {
            match (f, v) {
                (1, Value::Bytes(res)) => {
                    let mut r = Reader::new(res);
                    while let Some((f, v)) = r.next()? {
                        if let (1, Value::Bytes(kv)) = (f, v) {
                            data.resource.push(key_value(kv)?);
                        }
                    }
                }
                (2, Value::Bytes(sm)) => {
                    let mut r = Reader::new(sm);
                    while let Some((f, v)) = r.next()? {
                        if let (2, Value::Bytes(m)) = (f, v) {
                            metric(m, &mut data)?;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(data)
}

/// A minimal OTLP encoder, for tests (the broker only decodes).
#[cfg(test)]
pub mod encode {
    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A length-delimited field.
    pub fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    /// A varint field.
    pub fn uint(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3);
        varint(out, v);
    }

    /// A fixed64 field.
    pub fn fixed64(out: &mut Vec<u8>, field: u64, v: u64) {
        varint(out, field << 3 | 1);
        out.extend_from_slice(&v.to_le_bytes());
    }

    /// A KeyValue with a string value.
    pub fn kv(key: &str, value: &str) -> Vec<u8> {
        let mut any = Vec::new();
        bytes(&mut any, 1, value.as_bytes());
        let mut out = Vec::new();
        bytes(&mut out, 1, key.as_bytes());
        bytes(&mut out, 2, &any);
        out
    }

    /// A NumberDataPoint: a double (`Ok`) or an int (`Err`), with attributes.
    pub fn point(value: Result<f64, i64>, attrs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        fixed64(&mut out, 3, 1_700_000_000_000_000_000);
        match value {
            Ok(d) => fixed64(&mut out, 4, d.to_bits()),
            Err(i) => fixed64(&mut out, 6, i as u64),
        }
        for (k, v) in attrs {
            bytes(&mut out, 7, &kv(k, v));
        }
        out
    }

    /// A Metric holding a gauge, or a sum (`Some((monotonic, delta))`), of points.
    pub fn metric(name: &str, sum: Option<(bool, bool)>, points: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for p in points {
            bytes(&mut body, 1, p);
        }
        let mut out = Vec::new();
        bytes(&mut out, 1, name.as_bytes());
        match sum {
            None => bytes(&mut out, 5, &body),
            Some((monotonic, delta)) => {
                uint(&mut body, 2, if delta { 1 } else { 2 });
                uint(&mut body, 3, u64::from(monotonic));
                bytes(&mut out, 7, &body);
            }
        }
        out
    }

    /// A MetricsData of one resource and one scope.
    pub fn metrics_data(resource: &[(&str, &str)], metrics: &[Vec<u8>]) -> Vec<u8> {
        let mut res = Vec::new();
        for (k, v) in resource {
            bytes(&mut res, 1, &kv(k, v));
        }
        let mut scope = Vec::new();
        for m in metrics {
            bytes(&mut scope, 2, m);
        }
        let mut rm = Vec::new();
        bytes(&mut rm, 1, &res);
        bytes(&mut rm, 2, &scope);
        let mut out = Vec::new();
        bytes(&mut out, 1, &rm);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::encode::{metric, metrics_data, point};
    use super::{decode, MetricKind};

    #[test]
    fn decodes_gauges_sums_and_attributes() {
        let payload = metrics_data(
            &[("client_rack", "r1")],
            &[
                metric(
                    "org.apache.kafka.producer.node.request.latency.avg",
                    None,
                    &[point(Ok(1.5), &[("node_id", "1")])],
                ),
                metric(
                    "org.apache.kafka.producer.record.queue.time.max",
                    Some((true, false)),
                    &[point(Err(42), &[])],
                ),
                metric("x.updown", Some((false, true)), &[point(Err(-3), &[])]),
            ],
        );
        let d = decode(&payload).expect("decodes");
        assert_eq!(d.resource, vec![("client_rack".into(), "r1".into())]);
        assert_eq!(d.points.len(), 3);
        assert_eq!(d.points[0].kind, MetricKind::Gauge);
        assert_eq!(d.points[0].value, 1.5);
        assert_eq!(d.points[0].attributes, vec![("node_id".into(), "1".into())]);
        assert_eq!(d.points[1].kind, MetricKind::Counter);
        assert!(!d.points[1].delta);
        assert_eq!(d.points[1].value, 42.0);
        assert_eq!(d.points[2].kind, MetricKind::UpDownSum);
        assert!(d.points[2].delta);
        assert_eq!(d.points[2].value, -3.0);
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let payload = metrics_data(&[], &[metric("m", None, &[point(Ok(1.0), &[])])]);
        for n in 0..payload.len() {
            // Every prefix either decodes (a prefix ending on a field boundary) or errs.
            let _ = decode(&payload[..n]);
        }
        assert!(decode(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode(&[0x0b]).is_err(), "wire type 3 (groups) is refused");
    }
}
