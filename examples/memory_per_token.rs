//! How much memory `MemoryStore` needs per token, measured at 1,000,000 tokens.
//!
//! Run it with:
//!
//! ```text
//! cargo run --release --example memory_per_token
//! ```
//!
//! A counting global allocator adds up the bytes the store keeps allocated (the bytes asked of the
//! allocator; the allocator's own bookkeeping, typically 8 to 16 bytes per allocation, comes on top, and
//! is included in the resident-memory figure printed next to it). Tokens are issued the normal way,
//! through `TokenStoreExt::issue`, into a `MemoryStore::new()`; the plain-text tokens handed back are
//! dropped, as a server drops them once sent.

use std::alloc::{GlobalAlloc, Layout, System};
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tower_token_auth::{MemoryStore, NewToken, TokenStoreExt};

const TOKENS: u64 = 1_000_000;

/// Bytes currently allocated by the whole process.
static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

struct CountingAllocator;

fn size(layout: Layout) -> isize {
    isize::try_from(layout.size()).expect("allocation sizes fit in isize")
}

// SAFETY: every call is forwarded unchanged to the system allocator; only an atomic counter is updated.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` has too.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(size(layout), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            LIVE_BYTES.fetch_add(size(layout), Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            let grown = isize::try_from(new_size).expect("allocation sizes fit in isize") - size(layout);
            LIVE_BYTES.fetch_add(grown, Ordering::Relaxed);
        }
        new
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(size(layout), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Resident memory of this process in bytes (Linux), if it can be read.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

/// Polls a future that completes at once (every `MemoryStore` operation does).
fn complete<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(output) => output,
        Poll::Pending => unreachable!("MemoryStore answers at once"),
    }
}

/// How to issue token `i` of `TOKENS`.
type Issue = fn(u64) -> NewToken;

/// The measured cases: a label and how to issue the tokens.
const CASES: [(&str, Issue); 3] = [
    ("one token per user, expiring, no name", |i| NewToken::access(i).expires_in(A_YEAR)),
    ("ten tokens per user, expiring, no name", |i| NewToken::access(i / 10).expires_in(A_YEAR)),
    ("one per user, named \"iPhone 15\", 2 abilities", |i| {
        NewToken::access(i).name("iPhone 15").abilities(["posts:read", "posts:write"]).expires_in(A_YEAR)
    }),
];

const A_YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// Issues `TOKENS` tokens with `token` and prints the cost per token.
fn measure(label: &str, token: Issue) {
    let (bytes_before, resident_before) = (LIVE_BYTES.load(Ordering::SeqCst), resident_bytes());
    let store = MemoryStore::new();
    for i in 0..TOKENS {
        complete(store.issue(token(i))).expect("issue");
    }
    assert_eq!(store.len() as u64, TOKENS);
    let per_token = (LIVE_BYTES.load(Ordering::SeqCst) - bytes_before) as f64 / TOKENS as f64;
    let resident = match (resident_before, resident_bytes()) {
        (Some(before), Some(after)) => format!("{:.0}", after.saturating_sub(before) as f64 / TOKENS as f64),
        _ => "?".to_owned(),
    };
    println!("{label:<46} {per_token:>5.0} bytes allocated, {resident:>5} bytes resident per token");
}

fn main() {
    // Each case runs in a fresh process, so that memory freed by one case does not hide the next
    // one's growth in the resident size.
    if let Some(case) = std::env::args().nth(1) {
        let (label, token) = CASES[case.parse::<usize>().expect("case number")];
        measure(label, token);
        return;
    }
    println!("MemoryStore::new(), {TOKENS} tokens issued with TokenStoreExt::issue:");
    let this = std::env::current_exe().expect("path of this example");
    for case in 0..CASES.len() {
        let status = std::process::Command::new(&this).arg(case.to_string()).status().expect("run a case");
        assert!(status.success(), "case {case} failed");
    }
}
