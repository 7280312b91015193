//! A metrics recorder for tests: what a use case counted, read back by
//! name and labels (install it with `metrics::with_local_recorder`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, SharedString, Unit};

/// Keeps every counter, by key; histograms and gauges go nowhere.
#[derive(Default)]
pub struct Counters(Mutex<HashMap<Key, Arc<AtomicU64>>>);

impl Counters {
    /// The counter `name` with exactly `labels`; 0 if never counted.
    pub fn get(&self, name: &'static str, labels: &[(&'static str, &'static str)]) -> u64 {
        let labels: Vec<Label> = labels.iter().map(|&(k, v)| Label::new(k, v)).collect();
        let key = Key::from_parts(name, labels);
        let counters = self.0.lock().unwrap_or_else(|e| e.into_inner());
        counters.get(&key).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl metrics::Recorder for Counters {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Counter::from_arc(Arc::clone(counters.entry(key.clone()).or_default()))
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}
