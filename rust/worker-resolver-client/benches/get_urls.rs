//! `get_urls()` cost per call at 1 / 100 / 1 000 / 10 000 workers: this crate's resolver
//! against the two a Rust user would otherwise write (the docs' static one that parses URLs on
//! every call, and a `RwLock<Vec<Url>>` clone as in the EC2 example), plus what an
//! `Arc<[Url]>`-returning trait would cost (this crate's `urls()`). Bytes per call are counted
//! by a counting global allocator. `WorkerResolver` below has the signature of
//! `datafusion_distributed::WorkerResolver::get_urls` (with a unit error instead of
//! `DataFusionError`, so the benchmark builds in release without DataFusion); this crate's impl
//! of the real trait is `WorkerReader::urls_vec()` behind an `is_known` check.
//! Run: `cargo bench -p worker-resolver-client`.

type DataFusionError = ();

trait WorkerResolver {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError>;
}

impl WorkerResolver for WorkerReader {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.urls_vec())
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

fn measure(name: &str, n: usize, mut f: impl FnMut() -> usize) {
    // Calibrate to roughly 200 ms per measurement.
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
    iters *= 10;
    let (b0, a0) = (
        BYTES.load(Ordering::Relaxed),
        ALLOCS.load(Ordering::Relaxed),
    );
    let t = Instant::now();
    for _ in 0..iters {
        black_box(f());
    }
    let ns = t.elapsed().as_nanos() as f64 / iters as f64;
    let bytes = (BYTES.load(Ordering::Relaxed) - b0) as f64 / iters as f64;
    let allocs = (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / iters as f64;
    println!("| {name} | {n} | {ns:.0} | {bytes:.0} | {allocs:.0} |");
}

fn main() {
    println!("| resolver | workers | ns/call | bytes/call | allocations/call |");
    println!("|---|---|---|---|---|");
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
        measure("worker-resolver-client get_urls()", n, || {
            ours.get_urls().unwrap().len()
        });
        measure("static, parse per call (docs)", n, || {
            parsing.get_urls().unwrap().len()
        });
        measure("RwLock<Vec<Url>> clone (EC2 example)", n, || {
            rwlock.get_urls().unwrap().len()
        });
        measure("worker-resolver-client urls() (Arc<[Url]>)", n, || {
            ours.urls().len()
        });
    }
}
