//! Reading beads: one by ID (telling "no such bead" from a failure), or several at once.

use std::collections::HashMap;

use super::run::{require_complete, require_success};
use super::{Bead, BeadId, Error, GasTown, argv, beads};

impl GasTown {
    /// Reads a bead (`bd show --json -- <id>`). `Ok(None)` when the bead does not exist.
    ///
    /// "Does not exist" is decided narrowly: `bd` printed an empty array, or it exited
    /// non-zero **and** a line of its output names this ID and says "not found" / "no issue
    /// found" (real `bd` prints `Error fetching <id>: no issue found matching "<id>"`). Any
    /// other failure is an error, so a broken town is never taken for a missing bead. A
    /// deleted bead may also come back with status [`super::BeadStatus::Tombstone`].
    pub async fn show_bead(&self, id: &BeadId) -> Result<Option<Bead>, Error> {
        let command = argv::show_bead(id);
        self.run(&command, |out| {
            if out.exit_code != Some(0) {
                if beads::says_not_found(id, &out.stderr, &out.stdout) {
                    return Ok(None);
                }
                return Err(Error::exit(&command, out.exit_code, &out.stderr, &out.stdout));
            }
            require_complete(&command, &out)?;
            beads::parse_show(&out.stdout, id).map_err(|m| Error::parse(&command, m))
        })
        .await
    }

    /// Reads several beads with one `bd show --json -- <id>...`, by ID. Beads missing from the
    /// answer are missing from the map: real `bd` (beads `cmd/bd/show.go`, since v0.50.0)
    /// reports an unknown ID on stderr and exits 0 with the beads it found, non-zero only when
    /// it found none. Read the missing ones with [`Self::show_bead`], which tells "no such
    /// bead" from a failure.
    pub async fn show_beads(&self, ids: &[BeadId]) -> Result<HashMap<String, Bead>, Error> {
        let command = argv::show_beads(ids);
        self.run(&command, |out| {
            require_success(&command, &out)?;
            require_complete(&command, &out)?;
            beads::parse_show_many(&out.stdout).map_err(|m| Error::parse(&command, m))
        })
        .await
    }
}
