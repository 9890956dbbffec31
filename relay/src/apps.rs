//! The apps (accounts) a relay serves, by key and by id.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::AppConfig;
use crate::hub::{Hub, HubOptions};
use crate::limits::Limiters;
use crate::metrics::{AppMetrics, Metrics};
use crate::tokens::Verifier;

/// One app: its configuration, its fan-out core and its metric handles.
pub struct App {
    pub config: AppConfig,
    pub hub: Hub,
    pub metrics: AppMetrics,
    pub tokens: Verifier,
    pub limiters: Limiters,
}

impl App {
    pub fn new(config: AppConfig, metrics: &Metrics) -> Self {
        let hub = Hub::new(HubOptions {
            subscription_count: config.subscription_count,
            max_presence_members: config.limits.max_presence_members,
            cache_ttl: Duration::from_secs(config.limits.cache_ttl_s),
        });
        let metrics = metrics.for_app(&config.id);
        // Keys were checked by `Config::validate`.
        let tokens = Verifier::new(&config).expect("validated config");
        let limiters = Limiters::new(&config.limits);
        Self { config, hub, metrics, tokens, limiters }
    }

    pub fn id(&self) -> &str {
        &self.config.id
    }
}

#[derive(Default)]
pub struct Apps {
    by_key: HashMap<String, Arc<App>>,
    by_id: HashMap<String, Arc<App>>,
}

impl Apps {
    pub fn new(configs: &[AppConfig], metrics: &Metrics) -> Self {
        let mut apps = Self::default();
        for c in configs {
            let app = Arc::new(App::new(c.clone(), metrics));
            apps.by_key.insert(c.key.clone(), app.clone());
            apps.by_id.insert(c.id.clone(), app);
        }
        apps
    }

    pub fn by_key(&self, key: &str) -> Option<&Arc<App>> {
        self.by_key.get(key)
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<App>> {
        self.by_id.get(id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<App>> {
        self.by_id.values()
    }
}
