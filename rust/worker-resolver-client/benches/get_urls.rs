//! `get_urls()` cost per call at 1 / 100 / 1 000 / 10 000 workers: this crate's resolver
//! against the two a Rust user would otherwise write (the docs' static one that parses URLs on
//! every call, and a `RwLock<Vec<Url>>` clone as in the EC2 example), plus what an
//! `Arc<[Url]>`-returning trait would cost (this crate's `urls()`). Bytes per call are counted
//! by a counting global allocator. `WorkerResolver` below has the signature of
//! `datafusion_distributed::WorkerResolver::get_urls` (with a unit error instead of
//! `DataFusionError`, so the benchmark builds in release without DataFusion); this crate's impl
//! of the real trait is `WorkerReader::checked_urls()` with the error boxed.
//! Run: `cargo bench -p worker-resolver-client` (the `bench` profile: release). It prints the
//! machine, the profile and the load first: numbers from a debug build or a busy machine are
//! not comparable.

type DataFusionError = ();

trait WorkerResolver {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError>;
}

impl WorkerResolver for WorkerReader {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        self.checked_urls().map_err(|_| ())
    }
}
use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use url::Url;
use worker_resolver_client::WorkerReader;

struct Counting;
static BYTES: AtomicU64 = AtomicU64::new(0);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The docs' static resolver: formats and parses each URL on every call.
struct ParsingResolver {
    ports: Vec<u16>,
}
impl WorkerResolver for ParsingResolver {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self
            .ports
            .iter()
            .map(|p| Url::parse(&format!("http://localhost:{p}")).unwrap())
            .collect())
    }
}

/// The EC2 example's shape: a background task writes, `get_urls` clones under a read lock.
struct RwLockResolver {
    urls: RwLock<Vec<Url>>,
}
impl WorkerResolver for RwLockResolver {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.urls.read().unwrap().clone())
    }
}

/// Nanoseconds per call, bytes and allocations per call.
fn measure(name: &str, n: usize, mut f: impl FnMut() -> usize) -> f64 {
    // Calibrate to roughly 40 ms per round.
    let mut iters = 1u64;
    loop {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        if t.elapsed() > Duration::from_millis(20) || iters > 1 << 24 {
            break;
        }
        iters *= 2;
    }
    iters *= 2;
    // Five timed rounds; the median is reported (robust to a busy machine's pauses).
    let (b0, a0) = (
        BYTES.load(Ordering::Relaxed),
        ALLOCS.load(Ordering::Relaxed),
    );
    let mut rounds = Vec::with_capacity(5);
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..iters {
            black_box(f());
        }
        rounds.push(t.elapsed().as_nanos() as f64 / iters as f64);
    }
    rounds.sort_by(f64::total_cmp);
    let ns = rounds[2];
    let calls = (iters * 5) as f64;
    let bytes = (BYTES.load(Ordering::Relaxed) - b0) as f64 / calls;
    let allocs = (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / calls;
    println!("| {name} | {n} | {ns:.1} | {bytes:.0} | {allocs:.0} |");
    ns
}

/// The machine, the profile and the load, printed above the table.
fn describe_run() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let profile = if cfg!(debug_assertions) {
        "debug (numbers not representative: build with `cargo bench`)"
    } else {
        "release (optimized, no debug assertions)"
    };
    println!("machine: {cpu}, {cores} cores available, load average {load}");
    println!(
        "profile: {profile}; {} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    println!();
}

fn main() {
    describe_run();
    println!("| resolver | workers | ns/call | bytes/call | allocations/call |");
    println!("|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for n in [1usize, 100, 1_000, 10_000] {
        let ports: Vec<u16> = (0..n).map(|i| 20_000 + i as u16).collect();
        let urls: Vec<Url> = ports
            .iter()
            .map(|p| Url::parse(&format!("http://localhost:{p}")).unwrap())
            .collect();
        let ours = WorkerReader::fixed(urls.clone());
        let parsing = ParsingResolver { ports };
        let rwlock = RwLockResolver {
            urls: RwLock::new(urls),
        };
        let get_urls = measure("worker-resolver-client get_urls()", n, || {
            ours.get_urls().unwrap().len()
        });
        measure("static, parse per call (docs)", n, || {
            parsing.get_urls().unwrap().len()
        });
        let baseline = measure("RwLock<Vec<Url>> clone (upstream EC2 example)", n, || {
            rwlock.get_urls().unwrap().len()
        });
        measure("worker-resolver-client urls() (Arc<[Url]>)", n, || {
            ours.urls().len()
        });
        ratios.push((n, get_urls / baseline));
    }
    println!();
    println!(
        "get_urls() / RwLock<Vec<Url>> clone (the Vec<Url> every planning call pays upstream):"
    );
    for (n, r) in ratios {
        println!("  {n:>6} workers: {r:.2}x");
    }
}
