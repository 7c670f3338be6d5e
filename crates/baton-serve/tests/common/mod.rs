//! What the service tests on the in-memory backend share: a manual clock at 08:00 in New
//! York on 2024-03-10, the reference pipeline, the day before as the date, and a `serve`
//! that records landings and completions but runs nothing (no phase runner, no periodic
//! reconcile), so a test sees what was recorded.

use baton_core::clock::ManualClock;
use baton_core::config::Pipeline;
use baton_core::model::Partition;
use baton_serve::service::{Identity, Ports, ServeOptions, Service};
use baton_sim::mem::MemBackend;
use std::sync::Arc;

/// The pipeline, the clock, the backend (store, warehouse and bus) and the date under test.
pub struct Env {
    pub pipeline: Arc<Pipeline>,
    pub clock: Arc<ManualClock>,
    pub backend: Arc<MemBackend>,
    pub date: Partition,
}

/// A fresh environment.
pub fn env() -> Env {
    let clock = Arc::new(ManualClock::new("2024-03-10T12:00:00Z".parse().unwrap()));
    Env {
        pipeline: Arc::new(Pipeline::reference().unwrap()),
        backend: Arc::new(MemBackend::new(clock.clone())),
        clock,
        date: Partition::parse("2024-03-09").unwrap(),
    }
}

impl Env {
    /// A service that records landings and completions and leaves the requested runs owed
    /// (no phase runner), so the test sees what was recorded and requested.
    pub fn service(&self) -> Service {
        let ports = Ports {
            pipeline: self.pipeline.clone(),
            store: self.backend.clone(),
            warehouse: self.backend.clone(),
            bus: self.backend.clone(),
            clock: self.clock.clone(),
        };
        let identity = Identity {
            role: "serve".into(),
            host: "h1".into(),
            pid: 7,
            version: "0.1.0".into(),
            commit: "abc".into(),
        };
        let options = ServeOptions {
            phase_runner: false,
            reconcile_every: None,
            ..ServeOptions::default()
        };
        Service::new(options, ports, identity).unwrap()
    }
}
