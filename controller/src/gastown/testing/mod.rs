//! Test helpers (feature `test-support`): a fake gt-proxy-server speaking mutual TLS, a
//! throw-away PKI, temporary directories and stand-in executables.
//!
//! The fake server behaves like gt-proxy-server as the contract describes it: TLS 1.3 with a
//! required client certificate signed by the given CA, `POST /v1/exec` with `{"argv": [...]}`,
//! 400 for a malformed body, 403 for commands outside its allow-list (by default the
//! contract's: `gt sling|mail|hook|convoy|status|nudge`, `bd create|update|show|list|close`),
//! otherwise HTTP 200 with `{"stdout","stderr","exitCode"}` from an [`ExecHandler`]. It never
//! runs a shell; [`TownExecHandler`] execs stand-in `gt`/`bd` binaries in a town directory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gastown_controller::gastown::testing::BoxError> {
//! use std::sync::Arc;
//! use gastown_controller::gastown::testing::{FakeProxyServer, TestPki, TownExecHandler};
//! let pki = TestPki::new("test CA")?;
//! let server = pki.server_cert()?;
//! let handler = TownExecHandler::new("/tmp/town", "/tmp/bin/gt", "/tmp/bin/bd");
//! let (addr, handle) =
//!     FakeProxyServer::start(pki.ca_pem(), &server.cert_pem, &server.key_pem, Arc::new(handler)).await?;
//! // Point a `Transport::Proxy` at `handle.url()` with `pki.client_cert("gt-ops-controller")?`.
//! # let _ = (addr, handle); Ok(()) }
//! ```

mod fake_proxy;
mod files;
mod handlers;
mod pki;

pub use fake_proxy::{AllowList, FakeProxyHandle, FakeProxyServer, RecordedExec};
pub use files::{StandInTown, TempDir};
pub use handlers::{EchoHandler, ExecHandler, ExecReply, TableHandler, TownExecHandler};
pub use pki::{CertKeyPem, TestPki};

/// Errors of the test helpers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
