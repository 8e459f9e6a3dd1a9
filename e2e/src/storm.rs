//! A storm of shoppers, each looping on its own task until told to stop, recording what it
//! saw in one shared place: the scaffolding behind the crash tests.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;

use crate::Api;

/// What a shopper's loop holds: whether to go on, and where to record.
pub struct Shopper<T> {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<T>>,
}

impl<T> Shopper<T> {
    pub fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    pub fn record(&self, f: impl FnOnce(&mut T)) {
        f(&mut self.seen.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

pub struct Storm<T> {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<T>>,
    tasks: Vec<JoinHandle<()>>,
}

impl<T: Default + Send + 'static> Storm<T> {
    /// Starts `shop(api, index, shopper)` for every shopper.
    pub fn start<F, Fut>(shoppers: &[Api], shop: F) -> Storm<T>
    where
        F: Fn(Api, usize, Shopper<T>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(T::default()));
        let tasks = shoppers
            .iter()
            .enumerate()
            .map(|(i, api)| {
                let shopper = Shopper {
                    stop: Arc::clone(&stop),
                    seen: Arc::clone(&seen),
                };
                tokio::spawn(shop(api.clone(), i, shopper))
            })
            .collect();
        Storm { stop, seen, tasks }
    }

    /// A look at what was recorded so far.
    pub fn seen<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Waits until what was recorded satisfies `enough` (or `patience` runs out): a crash test
    /// kills then, while writes are in flight, rather than after a fixed time by which the
    /// storm may have sold out and only reads.
    pub async fn until(&self, enough: impl Fn(&T) -> bool, patience: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        while !self.seen(&enough) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Tells every loop to stop, waits for them, and hands over what they recorded.
    pub async fn stop(self) -> T {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("a shopper's loop panicked");
        }
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
