//! Consistent hashing tables: Envoy's ring hash (ketama) and maglev, built the way Envoy
//! builds them (xxHash64 of each endpoint's `ip:port`, the same replica counts and fill
//! order), so one key lands on the same endpoint through Bosun's proxy and through Envoy
//! and a mesh mixing both keeps its sessions where they are.

use std::net::SocketAddr;

use xxhash_rust::xxh64::xxh64;

/// Envoy's ring hash bounds when the cluster sets none.
pub const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;
pub const DEFAULT_MAXIMUM_RING_SIZE: u64 = 8 * 1024 * 1024;
/// Envoy's maglev table size when the cluster sets none (a prime).
pub const DEFAULT_MAGLEV_TABLE_SIZE: u64 = 65_537;

/// Which table a hashing cluster builds, with its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashingKind {
    Ring { minimum: u64, maximum: u64 },
    Maglev { table_size: u64 },
}

/// A built table: indices into the endpoint set it was built from.
#[derive(Debug)]
pub(super) enum HashTable {
    /// Points on the ring, sorted by hash.
    Ring(Vec<(u64, u32)>),
    Maglev(Vec<u32>),
}

impl HashTable {
    /// The table for `members` (address and weight); `None` when there are none.
    pub fn build(kind: HashingKind, members: &[(SocketAddr, u32)]) -> Option<Self> {
        if members.is_empty() {
            return None;
        }
        let weights = normalized_weights(members);
        Some(match kind {
            HashingKind::Ring { minimum, maximum } => {
                HashTable::Ring(ring(members, &weights, minimum, maximum))
            }
            HashingKind::Maglev { table_size } => {
                HashTable::Maglev(maglev(members, &weights, table_size))
            }
        })
    }

    /// The endpoint index for `hash`. A later `attempt` (a retry that must avoid the
    /// endpoints tried) flips the hash as Envoy does, to land elsewhere.
    pub fn lookup(&self, hash: u64, attempt: u32) -> usize {
        let hash = if attempt > 0 {
            hash ^ (u64::MAX - u64::from(attempt) + 1)
        } else {
            hash
        };
        match self {
            HashTable::Ring(points) => {
                // The first point at or after the hash, wrapping around.
                let at = points.partition_point(|(point, _)| *point < hash);
                points.get(at).unwrap_or(&points[0]).1 as usize
            }
            HashTable::Maglev(table) => table[(hash % table.len() as u64) as usize] as usize,
        }
    }
}

/// Each weight over the sum, as Envoy normalizes host weights.
fn normalized_weights(members: &[(SocketAddr, u32)]) -> Vec<f64> {
    let sum: u64 = members.iter().map(|(_, w)| u64::from((*w).max(1))).sum();
    members
        .iter()
        .map(|(_, w)| f64::from((*w).max(1)) / sum as f64)
        .collect()
}

/// Ketama: the least-weighted endpoint gets a whole number of points and the ring has at
/// least `minimum` (at most `maximum`); each point is xxHash64 of `ip:port_<n>`.
fn ring(
    members: &[(SocketAddr, u32)],
    weights: &[f64],
    minimum: u64,
    maximum: u64,
) -> Vec<(u64, u32)> {
    let least = weights.iter().copied().fold(f64::INFINITY, f64::min);
    let scale = ((least * minimum as f64).ceil() / least).min(maximum as f64);
    let mut points = Vec::with_capacity(scale as usize + members.len());
    let mut current = 0.0;
    let mut target = 0.0;
    let mut key = String::new();
    for (index, ((address, _), weight)) in members.iter().zip(weights).enumerate() {
        target += scale * weight;
        let mut replica = 0u64;
        while current < target {
            key.clear();
            use std::fmt::Write;
            let _ = write!(key, "{address}_{replica}");
            points.push((xxh64(key.as_bytes(), 0), index as u32));
            replica += 1;
            current += 1.0;
        }
    }
    points.sort_unstable_by_key(|(hash, _)| *hash);
    points
}

/// Maglev's permutation fill: each endpoint takes its next preferred free slot in turn,
/// endpoints with less weight skipping turns.
fn maglev(members: &[(SocketAddr, u32)], weights: &[f64], size: u64) -> Vec<u32> {
    struct Entry {
        offset: u64,
        skip: u64,
        weight: f64,
        target: f64,
        next: u64,
    }
    let heaviest = weights.iter().copied().fold(0.0, f64::max);
    let mut entries: Vec<Entry> = members
        .iter()
        .zip(weights)
        .map(|((address, _), weight)| {
            let key = address.to_string();
            Entry {
                offset: xxh64(key.as_bytes(), 0) % size,
                skip: xxh64(key.as_bytes(), 1) % (size - 1) + 1,
                weight: *weight,
                target: 0.0,
                next: 0,
            }
        })
        .collect();
    let mut table = vec![u32::MAX; size as usize];
    let mut filled = 0u64;
    let mut iteration = 1u32;
    while filled < size {
        for (index, entry) in entries.iter_mut().enumerate() {
            if filled >= size {
                break;
            }
            if f64::from(iteration) * entry.weight < entry.target {
                continue;
            }
            entry.target += heaviest;
            let mut slot = (entry.offset + entry.skip * entry.next) % size;
            while table[slot as usize] != u32::MAX {
                entry.next += 1;
                slot = (entry.offset + entry.skip * entry.next) % size;
            }
            table[slot as usize] = index as u32;
            entry.next += 1;
            filled += 1;
        }
        iteration += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(count: u16) -> Vec<(SocketAddr, u32)> {
        (0..count)
            .map(|i| (SocketAddr::from(([127, 0, 0, 1], 9000 + i)), 1))
            .collect()
    }

    const RING: HashingKind = HashingKind::Ring {
        minimum: DEFAULT_MINIMUM_RING_SIZE,
        maximum: DEFAULT_MAXIMUM_RING_SIZE,
    };
    const MAGLEV: HashingKind = HashingKind::Maglev { table_size: 65_537 };

    fn shares(table: &HashTable, count: usize) -> Vec<usize> {
        let mut hits = vec![0; count];
        for key in 0..10_000u64 {
            hits[table.lookup(xxh64(&key.to_le_bytes(), 0), 0)] += 1;
        }
        hits
    }

    #[test]
    fn equal_weights_get_equal_points_and_similar_shares() {
        let table = HashTable::build(RING, &members(3)).expect("table");
        let HashTable::Ring(points) = &table else {
            panic!("not a ring");
        };
        // ceil(1024 / 3) points each.
        assert_eq!(points.len(), 3 * 342);
        for kind in [RING, MAGLEV] {
            let table = HashTable::build(kind, &members(3)).expect("table");
            for hits in shares(&table, 3) {
                assert!((2_500..4_200).contains(&hits), "{kind:?}: {hits}");
            }
        }
    }

    #[test]
    fn weights_skew_the_shares() {
        let mut weighted = members(2);
        weighted[0].1 = 3;
        for kind in [RING, MAGLEV] {
            let table = HashTable::build(kind, &weighted).expect("table");
            let hits = shares(&table, 2);
            assert!(hits[0] > 2 * hits[1], "{kind:?}: {hits:?}");
        }
    }

    #[test]
    fn removing_an_endpoint_moves_only_its_keys() {
        for kind in [RING, MAGLEV] {
            let all = HashTable::build(kind, &members(4)).expect("table");
            // The same endpoints but the last: indices of the first three stay.
            let fewer = HashTable::build(kind, &members(3)).expect("table");
            let mut moved = 0;
            for key in 0..10_000u64 {
                let hash = xxh64(&key.to_le_bytes(), 0);
                let before = all.lookup(hash, 0);
                if before != 3 && fewer.lookup(hash, 0) != before {
                    moved += 1;
                }
            }
            // Minimal, not zero, disruption: maglev refills slots; the ring gives each
            // endpoint left more points (1,024 over 3, not 4) as Envoy's does.
            assert!(moved < 1_500, "{kind:?}: {moved} of ~7,500 keys moved");
        }
    }

    #[test]
    fn a_later_attempt_lands_elsewhere_for_most_keys() {
        let table = HashTable::build(MAGLEV, &members(5)).expect("table");
        let elsewhere = (0..1_000u64)
            .map(|key| xxh64(&key.to_le_bytes(), 0))
            .filter(|hash| table.lookup(*hash, 0) != table.lookup(*hash, 1))
            .count();
        assert!(elsewhere > 600, "{elsewhere}");
    }
}
