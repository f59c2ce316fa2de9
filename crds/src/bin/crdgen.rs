//! Prints the Automaton CRD as YAML (`make crds` writes it to `crds/automaton.yaml`).

use std::io::Write;

fn main() -> std::process::ExitCode {
    match gastown_crds::crd_yaml() {
        Ok(yaml) => {
            let mut out = std::io::stdout().lock();
            if out.write_all(yaml.as_bytes()).is_err() {
                return std::process::ExitCode::FAILURE;
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crdgen: cannot render the CRD: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
