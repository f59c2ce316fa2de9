//! Which Gas Town a claim goes to: the town asked for, else the first rule that matches
//! (the rig's town, the requester's one town, `defaultTown`).

use gastown_crds::contract::CLAIM_REQUEST_ANNOTATION;
use gastown_crds::validate::validate_rig_name;

use super::view::Asked;
use super::{Decision, code, reject};
use crate::settings::{Settings, Town};

/// The town of a claim. `rig` is the claim's rig when it resolved to a valid name.
pub(super) fn route<'s, G: AsRef<str>>(
    settings: &'s Settings,
    asked: Asked<'_>,
    rig: Option<&str>,
    user: &str,
    groups: &[G],
) -> Result<&'s Town, Decision> {
    if let Asked::Town(name) = asked {
        // `View::claim_request` only returns names of towns in the settings.
        return settings
            .town(name)
            .ok_or_else(|| reject(code::BAD_REQUEST, format!("no Gas Town {name:?} in the settings")));
    }
    let rig = rig.filter(|r| validate_rig_name(r).is_ok());
    if let Some(town) = rig.and_then(|r| settings.home_of(r)) {
        return Ok(town);
    }
    let listing: Vec<&Town> = settings
        .towns()
        .iter()
        .filter(|t| t.lists_requester(user, groups))
        .collect();
    if let [town] = listing[..] {
        return Ok(town);
    }
    settings
        .default_town()
        .ok_or_else(|| reject(code::BAD_REQUEST, no_town_message(rig, user, &listing)))
}

/// The refusal of a claim that no rule routes: what each rule lacked.
fn no_town_message(rig: Option<&str>, user: &str, listing: &[&Town]) -> String {
    let rig = match rig {
        Some(rig) => format!("rig {rig:?} is in no town's rigs"),
        None => "the claim has no valid rig".to_string(),
    };
    let requester = match listing {
        [] => format!("user {user:?} is in no town's allowedUsers or allowedGroups"),
        towns => format!(
            "user {user:?} is allowed in {} towns ({})",
            towns.len(),
            towns.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    format!(
        "no Gas Town for this claim: {rig}, {requester}, and the settings set no defaultTown; ask for a town \
         with {CLAIM_REQUEST_ANNOTATION}: <town>"
    )
}

/// Refuses a claim asked for `town` whose rig lives in another town (a rig lives in exactly
/// one town; a rig no town lists may go to any).
pub(super) fn check_rig_home(settings: &Settings, town: &Town, rig: &str) -> Result<(), Decision> {
    match settings.home_of(rig) {
        Some(home) if home.name != town.name => Err(reject(
            code::BAD_REQUEST,
            format!(
                "spec.rig: rig {rig:?} lives in Gas Town {:?}, not in {:?} asked for with {CLAIM_REQUEST_ANNOTATION}: \
                 {}; ask for {:?} (or for local), or use a rig of {:?}",
                home.name, town.name, town.name, home.name, town.name
            ),
        )),
        _ => Ok(()),
    }
}
