//! `cargo bench --bench index_memory`: bytes the sync keeps between syncs for 10,000 tests
//! (the repository snapshot, the parsed index, a catalog), counted by a counting allocator,
//! so the daemon's idle memory can be attributed.

mod generate;

use perfsync::config::{Config, Layout};
use perfsync::source::Tree;
use perfsync::spec::catalog::Index;
use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: AllocLayout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: AllocLayout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const TESTS: usize = 10_000;

fn mib(b: isize) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    generate::write_repo(dir.path(), TESTS).unwrap();
    let policy = Config::parse("p", "policy:\n  allowedTargets: [http://127.0.0.1]\n")
        .unwrap()
        .policy;
    let base = LIVE.load(Ordering::Relaxed);
    let tree: Tree = perfsync::source::dir::load_dir(dir.path(), &["tests", "templates"]).unwrap();
    let after_tree = LIVE.load(Ordering::Relaxed);
    let content: usize = tree
        .iter()
        .map(|(_, e)| match e {
            perfsync::source::Entry::File(b) => b.len(),
            _ => 0,
        })
        .sum();
    let index = Index::build(&tree, Layout::default(), Some(policy));
    let after_index = LIVE.load(Ordering::Relaxed);
    let catalog = index.catalog();
    let after_catalog = LIVE.load(Ordering::Relaxed);
    println!(
        "{TESTS} tests: snapshot tree {:.1} MiB (of which file contents {:.1} MiB)",
        mib(after_tree - base),
        content as f64 / 1048576.0
    );
    println!(
        "{TESTS} tests: parsed index beyond the tree {:.1} MiB ({:.0} bytes per test)",
        mib(after_index - after_tree),
        (after_index - after_tree) as f64 / TESTS as f64
    );
    println!(
        "{TESTS} tests: one catalog {:.1} MiB",
        mib(after_catalog - after_index)
    );
    drop(tree);
    let without_tree = LIVE.load(Ordering::Relaxed);
    println!(
        "{TESTS} tests: index and catalog once the tree is dropped {:.1} MiB",
        mib(without_tree - base)
    );
    println!(
        "sizes: ResolvedTest {} B, PerfTest {} B, TestEntry {} B",
        std::mem::size_of::<perfsync::spec::catalog::ResolvedTest>(),
        std::mem::size_of::<perfsync::spec::model::PerfTest>(),
        std::mem::size_of::<perfsync::spec::catalog::TestEntry>()
    );
    std::hint::black_box((index, catalog));
}
