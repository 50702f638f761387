//! Which `__consumer_offsets` partition owns a group.
//!
//! Kafka mirrors: `GroupMetadataManager.partitionFor` = `Utils.abs(groupId.hashCode) %
//! offsets.topic.num.partitions`, where `hashCode` is Java's `String.hashCode` over UTF-16 code
//! units and `Utils.abs` is `n & 0x7fffffff`. The broker leading that partition is the group's
//! coordinator; every other broker answers NOT_COORDINATOR.

/// Name of the internal topic holding committed offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's default for `offsets.topic.num.partitions`.
pub const DEFAULT_OFFSETS_TOPIC_PARTITIONS: i32 = 50;

/// Java's `String.hashCode`: `s[0]*31^(n-1) + ... + s[n-1]` with wrapping i32 arithmetic.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The `__consumer_offsets` partition that coordinates `group_id`.
pub fn partition_for(group_id: &str, num_partitions: i32) -> i32 {
    (java_string_hash(group_id) & 0x7fff_ffff) % num_partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values checked against Java's `"...".hashCode()`.
    #[test]
    fn java_hash_matches_java() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        // Overflowing hash: "polygenelubricants".hashCode() == Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    }

    /// A negative hash is masked, not negated, as `Utils.abs` does.
    #[test]
    fn partition_masks_sign_bit() {
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99_162_322 % 50);
        for g in ["", "g", "my-group", "ünïcode"] {
            let p = partition_for(g, 50);
            assert!((0..50).contains(&p));
        }
    }
}
