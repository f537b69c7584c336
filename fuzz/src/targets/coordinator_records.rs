//! `__consumer_offsets` and `__transaction_state` record decoding: the input is a run of
//! (key, value-or-tombstone) pairs as those logs hold them, decoded by the group
//! (`nagare-coordinator`) or the transaction (`nagare-transaction-coordinator`) record
//! codec, checked to re-encode to a fixed point, and replayed into a coordinator shard the
//! way loading a partition does, then the shard finishes loading. Never a panic.

use crate::Input;
use nagare_coordinator::{CoordinatorRecord, GroupCoordinatorConfig, GroupCoordinatorShard};
use nagare_transaction_coordinator::{
    TransactionCoordinatorConfig, TransactionCoordinatorShard, TxnRecord,
};

/// Runs one input.
pub fn run(data: &[u8]) {
    let mut input = Input(data);
    let transactions = input.u8() & 1 == 1;
    let mut pairs: Vec<(&[u8], Option<&[u8]>)> = Vec::new();
    while !input.is_empty() && pairs.len() < 32 {
        let key_len = input.u16() as usize;
        let key = input.take(key_len);
        let value_len = input.u16();
        // 0xffff: a tombstone (null value).
        let value = (value_len != 0xffff).then(|| input.take(value_len as usize));
        pairs.push((key, value));
    }
    if transactions {
        let mut shard =
            TransactionCoordinatorShard::new(0, TransactionCoordinatorConfig::default());
        for (k, v) in &pairs {
            if let Ok(rec) = TxnRecord::decode(k, *v) {
                // An older version re-encoded as the current one may drop fields, so
                // the check is that encoding is then a fixed point.
                let key = rec.encode_key();
                let value = rec.encode_value();
                let again = TxnRecord::decode(&key, value.as_deref())
                    .expect("a re-encoded transaction record decodes");
                assert_eq!(
                    (again.encode_key(), again.encode_value()),
                    (key, value),
                    "encode/decode is not a fixed point"
                );
                shard.replay(&rec);
            }
        }
        let _ = shard.on_loaded(1_000);
    } else {
        let mut shard = GroupCoordinatorShard::new(0, GroupCoordinatorConfig::default());
        for (k, v) in &pairs {
            if let Ok(rec) = CoordinatorRecord::decode(k, *v) {
                // An older version re-encoded as the current one may drop fields, so
                // the check is that encoding is then a fixed point.
                let key = rec.encode_key();
                let value = rec.encode_value();
                let again = CoordinatorRecord::decode(&key, value.as_deref())
                    .expect("a re-encoded group record decodes");
                assert_eq!(
                    (again.encode_key(), again.encode_value()),
                    (key, value),
                    "encode/decode is not a fixed point"
                );
                shard.replay(&rec);
            }
        }
        let _ = shard.on_loaded(1_000);
    }
}
