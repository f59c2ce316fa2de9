//! Hostile and odd values the generator and the adversarial tests put into requests.

/// Values that must never reach Gas Town as a rig name, bead ID or other operand: shell syntax,
/// option look-alikes, path traversal, control characters and unicode look-alikes.
pub const INJECTIONS: &[&str] = &[
    "gas;town",
    "gastown; rm -rf /",
    "$(id)",
    "gas$(id)town",
    "`id`",
    "gas`id`town",
    "gas\ntown",
    "gastown\n",
    "-rf",
    "--help",
    "-",
    "..",
    "../etc/passwd",
    "gas/../town",
    "g\u{430}stown",                       // Cyrillic а
    "\u{ff47}\u{ff41}\u{ff53}\u{ff54}own", // full-width ｇａｓｔ
    "gastown\u{200b}",                     // zero-width space
    "\u{202e}nwotsag",                     // right-to-left override
    "gas town",
    "gas|town",
    "gas&town",
    "gas>town",
    "gas\u{0}town",
    "gastown'",
    "gas\"town",
    "gas\\town",
    "gas\ttown",
    "gas\rtown",
    "%24(id)",
    "gas{a,b}",
    "*",
    "~",
    "hq",
    "HQ",
];

/// Bead IDs that must be refused (shell syntax, options, traversal, look-alikes).
pub const BEAD_ID_INJECTIONS: &[&str] = &[
    "go-7xq;id",
    "go-$(id)",
    "go-`id`",
    "-go-7xq",
    "--go-7xq",
    "go-7xq\n",
    "go-7xq\nrm",
    "../go-7xq",
    "go-7xq/../x",
    "g\u{43e}-7xq", // Cyrillic о
    "go-7xq..1",
    "go-7xq.",
    "go 7xq",
    "go-7xq|x",
    "go-7xq\u{200b}",
    "go-",
    "go",
    "",
];

/// Spellings of the controller identity that are NOT the controller (each one character or
/// case away from `contract::DEFAULT_CONTROLLER_USER`, so spelled out here on purpose).
pub const CONTROLLER_LOOKALIKES: &[&str] = &[
    "System:serviceaccount:gastown-system:gastown-operator",
    "SYSTEM:SERVICEACCOUNT:GASTOWN-SYSTEM:GASTOWN-OPERATOR",
    "system:serviceaccount:gastown-system:Gastown-Operator",
    " system:serviceaccount:gastown-system:gastown-operator",
    "system:serviceaccount:gastown-system:gastown-operator ",
    "system:serviceaccount:gastown-system:gastown-operator\n",
    "system:serviceaccount:gastown-system:gastown-operator\t",
    "system:serviceaccount:gastown-system:gastown-operator\u{200b}",
    "\u{feff}system:serviceaccount:gastown-system:gastown-operator",
    "system:serviceaccount:gastown-system:gastown-\u{43e}perator", // Cyrillic о
    "system:serviceaccount:gastown-system:gastown-operator\u{0}",
    "system:serviceaccount:gastown-system:gastown-operator2",
    "system:serviceaccount:gastown-system",
    "system:serviceaccount:other:gastown-operator",
    "system:serviceaccount:gastown-system:gastown-operator:x",
    "gastown-operator",
];

/// Unicode strings used as values anywhere.
pub(super) const UNICODE: &[&str] = &[
    "l\u{43e}cal", // Cyrillic о
    "ĺocal",
    "lo\u{301}cal", // combining accent
    "local\u{200b}",
    "\u{feff}local",
    "\u{24db}\u{24de}\u{24d2}\u{24d0}\u{24db}", // circled letters
    "🚀🔥",
    "\u{202e}lacol",
    "\u{130}stanbul", // dotted capital I
    "\u{10ffff}",
    "日本語のタスク",
    "\u{1f}\u{7f}\u{85}",
];

/// Phases to draw from: the CRD's seven and three it does not know (hand-written, since the
/// draw order is part of every seed's case).
pub(super) const PHASES: &[&str] = &[
    "Pending",
    "Claimed",
    "Dispatched",
    "Running",
    "Succeeded",
    "Failed",
    "Released",
    "running",
    "Unknown",
    "",
];

/// Floats that serde_json parses back exactly even without `float_roundtrip`.
pub(super) const SAFE_FLOATS: &[f64] = &[0.5, 1.5, -2.25, 2.71, 1e300, 6.02e23, 1e-7, -0.0, 0.1, 0.0025];
