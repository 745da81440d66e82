//! The index rules of a blocking query, as Consul documents them for its own.

/// What to do with the index of an answer to a request made with `requested`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStep {
    /// The index of the next request.
    pub next: u64,
    /// The index went backwards (the sidecar restarted: its versions begin again at 1), so the
    /// client reset to 0 and must treat the answer as a full resync.
    pub reset: bool,
    /// The answer carries nothing new: same index as requested (a wait that ended).
    pub unchanged: bool,
}

/// Applies the rules to an answer index:
/// - greater than the requested one: use it next;
/// - equal: nothing changed (the wait ended), ask again with the same index;
/// - smaller: the sidecar restarted; reset to 0 (the next request answers at once with the
///   current state);
/// - 0: the sidecar has no snapshot yet; ask with 0, which waits for the first one.
pub fn next_index(requested: u64, answered: u64) -> IndexStep {
    if answered < requested {
        IndexStep {
            next: 0,
            reset: true,
            unchanged: false,
        }
    } else {
        IndexStep {
            next: answered,
            reset: false,
            unchanged: answered == requested,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_index_is_used_next() {
        assert_eq!(
            next_index(3, 7),
            IndexStep {
                next: 7,
                reset: false,
                unchanged: false
            }
        );
        assert_eq!(next_index(0, 1).next, 1);
    }

    #[test]
    fn same_index_means_the_wait_ended() {
        let s = next_index(7, 7);
        assert!(s.unchanged && !s.reset);
        assert_eq!(s.next, 7);
    }

    #[test]
    fn backwards_index_resets_to_zero() {
        let s = next_index(42, 3);
        assert!(s.reset && !s.unchanged);
        assert_eq!(s.next, 0);
        assert_eq!(next_index(1, 0).next, 0);
    }

    #[test]
    fn zero_stays_zero_until_a_first_snapshot() {
        let s = next_index(0, 0);
        assert!(s.unchanged && !s.reset);
        assert_eq!(s.next, 0);
    }
}
