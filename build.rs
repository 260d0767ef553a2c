//! Builds the C++ glue in cpp/ against libwebrtc (Debian's tg_owt) and links
//! it, with flags and libraries taken from the package's CMake metadata.

#[path = "build/cmake_targets.rs"]
mod cmake_targets;

use std::path::{Path, PathBuf};

#[derive(serde::Deserialize)]
struct Manifest {
    cmake_dir: String,
    target: String,
}

const BRIDGES: &[&str] = &["src/rtc/sys.rs"];
const CPP: &[&str] = &[
    "cpp/src/audio_device.cc",
    "cpp/src/bench.cc",
    "cpp/src/call_apm.cc",
    "cpp/src/call_audio.cc",
    "cpp/src/codecs.cc",
    "cpp/src/dtmf_tap.cc",
    "cpp/src/legacy_audio.cc",
    "cpp/src/media_stats.cc",
    "cpp/src/network.cc",
    "cpp/src/peer_connection.cc",
    "cpp/src/runtime.cc",
    "cpp/src/srtp.cc",
    "cpp/src/task_queue_pool.cc",
];

fn missing(what: &str) -> ! {
    eprintln!("error: libwebrtc not found ({what}): run scripts/fetch-libwebrtc");
    println!("cargo:warning=libwebrtc not found ({what}): run scripts/fetch-libwebrtc");
    std::process::exit(1);
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/cmake_targets.rs");
    println!("cargo:rerun-if-changed=third_party/libwebrtc.toml");
    println!("cargo:rerun-if-changed=cpp");
    println!("cargo:rerun-if-env-changed=RTCGW_LIBWEBRTC_CMAKE_DIR");
    println!("cargo:rerun-if-env-changed=RTCGW_ABSL_CMAKE_DIR");

    let manifest: Manifest = toml::from_str(
        &std::fs::read_to_string("third_party/libwebrtc.toml").expect("third_party/libwebrtc.toml"),
    )
    .expect("third_party/libwebrtc.toml is not valid");
    let cmake_dir =
        PathBuf::from(std::env::var("RTCGW_LIBWEBRTC_CMAKE_DIR").unwrap_or(manifest.cmake_dir));
    if !cmake_dir.is_dir() {
        missing(&format!("{} does not exist", cmake_dir.display()));
    }
    // tg_owt's config calls find_dependency(absl): absl's CMake package sits
    // beside it unless overridden.
    let absl_dir = std::env::var("RTCGW_ABSL_CMAKE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| cmake_dir.parent().unwrap_or(Path::new("/")).join("absl"));

    let mut reg = cmake_targets::Registry::default();
    if reg.load_dir(&cmake_dir).unwrap_or(0) == 0 || !reg.has(&manifest.target) {
        missing(&format!(
            "no {} in {}",
            manifest.target,
            cmake_dir.display()
        ));
    }
    if reg.load_dir(&absl_dir).unwrap_or(0) == 0 {
        missing(&format!(
            "abseil's CMake package not in {}",
            absl_dir.display()
        ));
    }
    let resolved = reg
        .resolve(&manifest.target)
        .unwrap_or_else(|e| missing(&e));

    let mut build = cxx_build::bridges(BRIDGES);
    build
        .files(CPP)
        .include("cpp/include")
        .std("c++20")
        // Must match the library's release build: RTC_DCHECK_IS_ON changes
        // class layouts.
        .define("NDEBUG", None)
        .flag_if_supported("-Wno-deprecated-declarations")
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-copy")
        .flag_if_supported("-Wno-missing-field-initializers");
    for dir in &resolved.include_dirs {
        build.include(dir);
    }
    for def in &resolved.definitions {
        match def.split_once('=') {
            Some((k, v)) => build.define(k, Some(v)),
            None => build.define(def, None),
        };
    }
    build.compile("rtcgw-glue");

    // Link line: the static library first, its shared dependencies after it.
    for item in &resolved.link {
        let path = Path::new(item);
        if item.starts_with("-Wl,") {
            continue; // absl's --as-needed bracket around -latomic
        } else if let Some(lib) = item.strip_prefix("-l") {
            println!("cargo:rustc-link-lib=dylib={lib}");
        } else if item.ends_with(".a") {
            let dir = path.parent().unwrap();
            let name = path.file_stem().unwrap().to_string_lossy();
            println!("cargo:rustc-link-search=native={}", dir.display());
            println!(
                "cargo:rustc-link-lib=static:-bundle={}",
                name.trim_start_matches("lib")
            );
        } else if path.is_absolute() {
            if !path.exists() {
                missing(&format!("{item} listed by the package does not exist"));
            }
            println!("cargo:rustc-link-arg={item}");
        }
    }
    println!("cargo:rustc-link-lib=dylib=stdc++");
}
