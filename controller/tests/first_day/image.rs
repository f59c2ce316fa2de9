//! Step 1: the image, exactly as a user builds it: `make image`, default name = the chart's.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{IMAGE_SIZE_LIMIT, run};

/// The image `make image` built, as docker describes it.
pub(crate) struct Image {
    /// `<repository>:<tag>`.
    pub(crate) name: String,
    pub(crate) size: u64,
    /// `docker image inspect`.
    pub(crate) inspect: Value,
    pub(crate) build_time: Duration,
}

/// Builds the image with `make image` and checks it: small, one layer, non-root, labelled with
/// the version, licence, source and revision.
pub(crate) fn built_by_make_image() -> Image {
    let image_name = run("bash", &["scripts/image.sh", "repository"], &[]).trim().to_owned();
    let tag = run("bash", &["scripts/image.sh", "tag"], &[]).trim().to_owned();
    let image = format!("{image_name}:{tag}");
    let build_started = Instant::now();
    run("make", &["-s", "image"], &[]);
    let build_time = build_started.elapsed();
    let inspect: Value = serde_json::from_str(&run("docker", &["image", "inspect", &image], &[])).unwrap();
    let inspect = inspect[0].clone();
    let image_size = inspect["Size"].as_u64().unwrap();
    assert!(
        image_size <= IMAGE_SIZE_LIMIT,
        "{image} is {image_size} bytes, over {IMAGE_SIZE_LIMIT}"
    );
    assert_eq!(inspect["Config"]["User"], "65532:65532");
    assert_eq!(inspect["Config"]["Entrypoint"], json!(["/gastown-controller"]));
    let labels = &inspect["Config"]["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], json!(tag));
    assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
    assert_eq!(
        labels["org.opencontainers.image.source"],
        "https://github.com/gastown-operator/gastown-operator"
    );
    let revision = run("git", &["rev-parse", "HEAD"], &[]);
    assert!(
        labels["org.opencontainers.image.revision"]
            .as_str()
            .is_some_and(|r| r.starts_with(revision.trim())),
        "revision label {} vs HEAD {revision}",
        labels["org.opencontainers.image.revision"]
    );
    assert_eq!(
        inspect["RootFS"]["Layers"].as_array().map(Vec::len),
        Some(1),
        "one layer: the binary"
    );
    Image {
        name: image,
        size: image_size,
        inspect,
        build_time,
    }
}
