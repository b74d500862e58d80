//! A request load for failover tests: workers sending `GET /` with one of a list of bearer tokens,
//! recording every request's start, end and status.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::StatusCode;

use super::http::{client, send};

/// One request of a load: who sent it, when it started and ended, and its status.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub token: usize,
    pub started: Instant,
    pub ended: Instant,
    pub status: StatusCode,
}

/// Workers sending `GET /` with `bearers[i]` (round robin) until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(addrs: &[SocketAddr], bearers: &[String], workers: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let bearers = Arc::new(bearers.to_vec());
        let workers = (0..workers)
            .map(|w| {
                let (stop, samples, bearers) = (Arc::clone(&stop), Arc::clone(&samples), Arc::clone(&bearers));
                let addr = addrs[w % addrs.len()];
                tokio::spawn(async move {
                    let http = client();
                    let mut i = w;
                    while !stop.load(Ordering::SeqCst) {
                        let token = i % bearers.len();
                        i += workers_stride();
                        let started = Instant::now();
                        let status = send(&http, addr, "GET", "/", Some(&bearers[token])).await.status;
                        samples.lock().unwrap().push(Sample { token, started, ended: Instant::now(), status });
                    }
                })
            })
            .collect();
        Self { stop, samples, workers }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    pub async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::SeqCst);
        for worker in self.workers {
            worker.await.unwrap();
        }
        let samples = self.samples.lock().unwrap().clone();
        samples
    }
}

/// Each worker walks the tokens with a stride prime to any token count used here.
pub fn workers_stride() -> usize {
    7
}
