//! Task routing against one snapshot (docs/design.md §6), without any DataFusion type: the
//! `datafusion` module's route-tasks handler is a thin adapter over `route_tasks`.

use url::Url;

/// How a stage's tasks are assigned to workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RoutingStrategy {
    /// Round robin from a random start (what Distributed DataFusion does by default).
    RoundRobin,
    /// Round robin from a start derived from the query and stage keys: a retry of the same
    /// query routes the same way.
    Seeded,
    /// Highest-random-weight (rendezvous) hashing of each task's key: a task keeps its worker
    /// while other workers come and go (cache affinity); tasks of one stage go to distinct
    /// workers while there are enough.
    #[default]
    Rendezvous,
}

/// The workers to route to: the plan's snapshot, minus the workers that left since (so a task
/// is not sent to a worker known to be gone); the live list when none of the planned ones is
/// left. `live = None` means "no newer information".
pub(crate) fn route_candidates(planned: &[Url], live: Option<&[Url]>) -> Vec<Url> {
    match live {
        None => planned.to_vec(),
        Some(live) => {
            let kept: Vec<Url> = planned
                .iter()
                .filter(|u| live.contains(u))
                .cloned()
                .collect();
            if kept.is_empty() { live.to_vec() } else { kept }
        }
    }
}

/// One URL per task (`task_count` of them, in task order) from `candidates`.
///
/// `query_key` identifies the query (used by `Seeded`), `stage_key` the stage (used by
/// `Seeded` and `Rendezvous`), `random` is a random number (used by `RoundRobin`).
/// Returns `None` when there is no candidate (routing to zero workers is an error for the caller).
pub(crate) fn route_tasks(
    strategy: RoutingStrategy,
    candidates: &[Url],
    task_count: usize,
    query_key: &str,
    stage_key: &str,
    random: u64,
) -> Option<Vec<Url>> {
    if candidates.is_empty() {
        return None;
    }
    let n = candidates.len();
    let round_robin = |start: usize| {
        (0..task_count)
            .map(|i| candidates[(start + i) % n].clone())
            .collect()
    };
    Some(match strategy {
        RoutingStrategy::RoundRobin => round_robin((random % n as u64) as usize),
        RoutingStrategy::Seeded => {
            let seed = hash(&[query_key.as_bytes(), b"\0", stage_key.as_bytes()]);
            round_robin((seed % n as u64) as usize)
        }
        RoutingStrategy::Rendezvous => {
            let mut used = vec![false; n];
            let mut out = Vec::with_capacity(task_count);
            for task in 0..task_count {
                if used.iter().all(|u| *u) {
                    used.iter_mut().for_each(|u| *u = false);
                }
                let key = format!("{stage_key}#{task}");
                let best = (0..n)
                    .filter(|&i| !used[i])
                    .max_by_key(|&i| {
                        (
                            hash(&[key.as_bytes(), b"\0", candidates[i].as_str().as_bytes()]),
                            i,
                        )
                    })
                    .expect("an unused candidate");
                used[best] = true;
                out.push(candidates[best].clone());
            }
            out
        }
    })
}

/// FNV-1a, then a splitmix64 finaliser: stable across processes, platforms and Rust versions.
fn hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(ports: &[u16]) -> Vec<Url> {
        ports
            .iter()
            .map(|p| Url::parse(&format!("http://127.0.0.1:{p}/")).unwrap())
            .collect()
    }

    #[test]
    fn candidates_drop_departed_workers_and_fall_back_to_live() {
        let planned = urls(&[1, 2, 3]);
        assert_eq!(route_candidates(&planned, None), planned);
        assert_eq!(
            route_candidates(&planned, Some(&urls(&[1, 3, 4]))),
            urls(&[1, 3])
        );
        assert_eq!(route_candidates(&planned, Some(&urls(&[7]))), urls(&[7]));
        assert!(route_candidates(&[], Some(&[])).is_empty());
    }

    #[test]
    fn zero_candidates_cannot_be_routed() {
        for s in [
            RoutingStrategy::RoundRobin,
            RoutingStrategy::Seeded,
            RoutingStrategy::Rendezvous,
        ] {
            assert_eq!(route_tasks(s, &[], 3, "q", "s", 0), None);
        }
    }

    #[test]
    fn round_robin_and_seeded_cycle_through_the_workers() {
        let c = urls(&[1, 2, 3]);
        let r = route_tasks(RoutingStrategy::RoundRobin, &c, 4, "q", "s", 4).unwrap();
        assert_eq!(r, urls(&[2, 3, 1, 2]));
        let a = route_tasks(RoutingStrategy::Seeded, &c, 3, "query-1", "stage-1", 0).unwrap();
        let b = route_tasks(RoutingStrategy::Seeded, &c, 3, "query-1", "stage-1", 99).unwrap();
        assert_eq!(a, b, "same query and stage, same routing");
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, c, "a stage of n tasks uses n distinct workers");
    }

    #[test]
    fn rendezvous_is_distinct_and_stable_under_churn() {
        let c = urls(&[1, 2, 3, 4, 5]);
        let r = route_tasks(RoutingStrategy::Rendezvous, &c, 3, "q", "stage", 0).unwrap();
        let mut d = r.clone();
        d.sort();
        d.dedup();
        assert_eq!(d.len(), 3, "distinct workers while there are enough");
        // Adding a worker moves a task only to the newcomer, never between old workers.
        let grown = urls(&[1, 2, 3, 4, 5, 6]);
        let r2 = route_tasks(RoutingStrategy::Rendezvous, &grown, 1, "q", "stage", 0).unwrap();
        let r1 = route_tasks(RoutingStrategy::Rendezvous, &c, 1, "q", "stage", 0).unwrap();
        assert!(r2 == r1 || r2 == urls(&[6]), "{r1:?} -> {r2:?}");
        // Removing a worker that a task did not use keeps that task where it was.
        let other = c.iter().find(|u| **u != r1[0]).unwrap().clone();
        let shrunk: Vec<Url> = c.iter().filter(|u| **u != other).cloned().collect();
        assert_eq!(
            route_tasks(RoutingStrategy::Rendezvous, &shrunk, 1, "q", "stage", 0).unwrap(),
            r1
        );
        // More tasks than workers wrap around.
        let many =
            route_tasks(RoutingStrategy::Rendezvous, &urls(&[1, 2]), 5, "q", "s", 0).unwrap();
        assert_eq!(many.len(), 5);
    }
}
