//! Client and exec-transport tests with small `#!/bin/sh` stand-ins for `gt` and `bd`, one
//! module per topic.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::testing::StandInTown;
use super::*;

mod batch;
mod config;
mod create;
mod exec;
mod reads;
mod run;

/// A [`StandInTown`] whose clients are set up for quick tests.
struct Town(StandInTown);

impl Deref for Town {
    type Target = StandInTown;
    fn deref(&self) -> &StandInTown {
        &self.0
    }
}

impl Town {
    fn new(gt_script: &str, bd_script: &str) -> Town {
        Town(StandInTown::new("gastown-exec-test", gt_script, bd_script).unwrap())
    }

    fn config(&self) -> GasTownConfig {
        let mut config = GasTownConfig::new(self.transport(Some("gastown-operator")));
        config.command_timeout = Duration::from_secs(10);
        config.backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(50),
            multiplier: 2,
        };
        config
    }

    /// A town and a client with the defaults of [`Self::config`].
    fn started(gt_script: &str, bd_script: &str) -> (Town, GasTown, Arc<Recorder>) {
        let town = Town::new(gt_script, bd_script);
        let (client, recorder) = town.client(|_| {});
        (town, client, recorder)
    }

    fn client(&self, change: impl FnOnce(&mut GasTownConfig)) -> (GasTown, Arc<Recorder>) {
        let mut config = self.config();
        change(&mut config);
        let recorder = Arc::new(Recorder::default());
        (GasTown::new(config).unwrap().with_observer(recorder.clone()), recorder)
    }
}

/// A client change: `timeout` per attempt and `retries` retries.
fn timeouts(timeout: Duration, retries: u32) -> impl FnOnce(&mut GasTownConfig) {
    move |c| {
        c.command_timeout = timeout;
        c.retries = retries;
    }
}

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

impl CommandObserver for Recorder {
    fn observe(&self, tool: &str, verb: &str, result: &str, _duration: Duration) {
        self.0.lock().unwrap().push(format!("{tool} {verb} {result}"));
    }
}

impl Recorder {
    fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn id(s: &str) -> BeadId {
    BeadId::parse(s).unwrap()
}

fn reference() -> ExternalRef {
    ExternalRef::parse("automaton:ns/a/u1").unwrap()
}

const RECORD_GT: &str = "#!/bin/sh\nprintf '%s\\n' \"$@\" > gt.args\npwd > gt.pwd\nenv > gt.env\n";
const OK_BD: &str = "#!/bin/sh\nexit 0\n";

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap()
}
